"""State machines for the virtualization modes: Popek & Goldberg's equivalence and resource control.

*Equivalence*: Hypothesis writes a guest program (kernel blocks mixing ordinary, privileged and
sensitive instructions; user blocks; system calls; external interrupts; context switches) and
runs it twice: on the bare-metal reference, and under the mode being checked (for a
para-virtual mode, the *ported* program). After every step the guest-visible state must be
identical. User blocks contain no PUSHF/SGDT/SIDT/SMSW: at user level these reveal the real
machine under every software VMM (the "red pill"), a known limit of equivalence that no mode
in this model claims to hide.

*Resource control*: two VMs share a hypervisor; Hypothesis runs hostile kernel code and, for
para-virtual modes, arbitrary hypercalls (invalid numbers and arguments, mapping another VM's
frame, mapping a page table writable, ballooning a page-table frame) in one of them. The real
CPU state, the other VM, and the frame table's ownership never change; a hypercall that returns
an error changes nothing at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from vframework.api.contract import Mode
from vframework.api.params import Params
from vframework.guest.kernel import HC, pack, paravirtualize
from vframework.guest.os import GuestOS
from vframework.hv.hypercalls import DEVICE_PORTS, MAX_BATCH, PT_ENTRIES
from vframework.hv.hypervisor import Hypervisor
from vframework.hv.vm import VM
from vframework.machine.cpu import EOI_PORT, HOST_GDTR, HOST_IDTR, HOST_MSW, GuestCPU
from vframework.machine.hardware import Machine
from vframework.machine.isa import IF_FLAG, NREGS, Block, Instruction, Op
from vframework.sim.engine import Engine
from vframework.sim.units import PAGE_SIZE
from vframework.testing.doubles import FifoScheduler, FixedPolicy, Native
from vframework.testing.memory import assert_owns_its_frames

if TYPE_CHECKING:
    import numpy.typing as npt

    #: What :meth:`ResourceControlMachine._snapshot` records: the guest-visible CPU state, the
    #: P2M, the para-virtual page tables, the frame table's states and owners, the balloon.
    _Snapshot = tuple[
        tuple[object, ...],
        npt.NDArray[np.int32],
        dict[int, npt.NDArray[np.int64]],
        npt.NDArray[np.uint8],
        npt.NDArray[np.int16],
        int,
    ]

#: Whose frames a PV guest's MMU_UPDATE names (its own, another VM's, a page table, none).
_WHOSE = ("own", "victim", "page_table", "garbage")

__all__ = ["EquivalenceMachine", "ResourceControlMachine", "instructions", "kernel_code"]

_REG = st.integers(0, NREGS - 1)
_ORDINARY = st.one_of(
    st.tuples(st.just(Op.MOVI), _REG, st.sampled_from([0, 1, 2, 7, IF_FLAG, IF_FLAG | 2, 0x3000, 0xFFFF])),
    st.tuples(st.sampled_from([Op.ADD, Op.SUB, Op.XOR, Op.DIV]), _REG, _REG),
    st.tuples(st.just(Op.LOAD), _REG, st.integers(0, 7)),
    st.tuples(st.just(Op.STORE), st.integers(0, 7), _REG),
    st.tuples(st.just(Op.CALL), st.just(0), st.just(0)),
)
# Sensitive-but-unprivileged first, so shrinking favours them (POPF is the classic culprit).
_SENSITIVE = st.one_of(
    st.tuples(st.sampled_from([Op.POPF, Op.PUSHF, Op.SGDT, Op.SIDT, Op.SMSW]), _REG, st.just(0)),
    st.tuples(st.sampled_from([Op.CLI, Op.STI, Op.HLT]), st.just(0), st.just(0)),
    st.tuples(
        st.sampled_from([Op.MOV_TO_CR3, Op.MOV_FROM_CR3, Op.MOV_TO_CR8, Op.LGDT, Op.LIDT, Op.INVLPG]), _REG, st.just(0)
    ),
    st.tuples(st.just(Op.IN), _REG, st.sampled_from(sorted(DEVICE_PORTS))),
    st.tuples(st.just(Op.OUT), st.sampled_from(sorted(DEVICE_PORTS)), _REG),
)


def instructions(sensitive: bool = True) -> st.SearchStrategy[Instruction]:
    """Strategy for one instruction (kernel code when ``sensitive``)."""
    return (
        st.one_of(_SENSITIVE, _ORDINARY)
        if sensitive
        else st.one_of(
            _ORDINARY,
            st.tuples(st.just(Op.POPF), _REG, st.just(0)),
            st.tuples(st.sampled_from([Op.CLI, Op.STI, Op.MOV_TO_CR3, Op.LGDT]), _REG, st.just(0)),
        )
    )


def kernel_code(max_size: int = 8) -> st.SearchStrategy[tuple[Instruction, ...]]:
    """Strategy for a kernel block's code."""
    return st.lists(instructions(True), min_size=1, max_size=max_size).map(tuple)


class _Side:
    """One guest: a VM with a mode on a one-CPU hypervisor of the given architecture."""

    def __init__(self, mode_cls: type[Mode[Params]], arch: str, vm_id: int = 0, hv: Hypervisor | None = None) -> None:
        if hv is None:
            engine = Engine(seed=0)
            hv = Hypervisor(engine, Machine(1, 256 * PAGE_SIZE), FifoScheduler(None, 1), FixedPolicy(None), arch=arch)
        self.hv = hv
        self.vm = VM(vm_id, f"vm{vm_id}", 1, 32)
        self.mode = hv.attach_mode(self.vm, mode_cls, mode_cls.params_model())
        self.vm.guest = GuestOS(self.vm, hv)
        hv.add_vm(self.vm)
        if not self.mode.mode.preallocate:
            hv.back_pages(self.vm, np.arange(32, dtype=np.int64), hidden=False)
        self.vcpu = self.vm.vcpus[0]
        self.ported = self.mode.paravirtual

    @property
    def ctx(self) -> GuestCPU:
        return self.vcpu.ctx

    def run(self, block: Block) -> None:
        self.mode.execute(self.vcpu, paravirtualize(block) if self.ported else block)
        self.drain()

    def drain(self) -> None:
        ctx = self.ctx
        self.mode._vcpu = self.vcpu
        while ctx.pending and ctx.flags & IF_FLAG:
            self.mode.interrupt(ctx)
        self.mode._vcpu = None

    def syscall(self) -> None:
        self.hv.deliver(self.vcpu, "syscall", 1)
        assert self.vm.guest is not None  # booted in __init__
        self.mode.execute(self.vcpu, self.vm.guest.kernel.syscall)
        self.drain()


class EquivalenceMachine(RuleBasedStateMachine):
    """Parametrize with :meth:`for_component` (and an architecture)."""

    #: The mode under test, set by :meth:`for_component` (None on this unparametrized base).
    mode_cls: Any = None
    arch = "x86"

    @classmethod
    def for_component(cls, mode_cls: type[Mode[Params]], arch: str | None = None) -> type[EquivalenceMachine]:
        arch = arch or mode_cls.architectures[0]
        return type(f"{cls.__name__}[{mode_cls.name}@{arch}]", (cls,), {"mode_cls": mode_cls, "arch": arch})

    @initialize()
    def boot(self) -> None:
        self.reference = _Side(Native, self.arch)
        self.guest = _Side(self.mode_cls, self.arch)

    @rule(code=kernel_code())
    def kernel_block(self, code: tuple[Instruction, ...]) -> None:
        block = Block("generated", code, kernel=True)
        self.reference.run(block)
        self.guest.run(block)

    @rule(code=st.lists(instructions(False), min_size=1, max_size=6).map(tuple))
    def user_block(self, code: tuple[Instruction, ...]) -> None:
        block = Block("generated-user", code, kernel=False)
        self.reference.run(block)
        self.guest.run(block)

    @rule()
    def system_call(self) -> None:
        self.reference.syscall()
        self.guest.syscall()

    @rule(vector=st.sampled_from([EOI_PORT, 0x21]))
    def interrupt(self, vector: int) -> None:
        for side in (self.reference, self.guest):
            side.ctx.pending.append(vector)
            side.drain()

    @rule(cr3=st.sampled_from([0x3000, 0x4000, 0x5000]))
    def context_switch(self, cr3: int) -> None:
        block = Block(
            "switch", ((Op.PUSHF, 7, 0), (Op.CLI, 0, 0), (Op.MOVI, 6, cr3), (Op.MOV_TO_CR3, 6, 0), (Op.POPF, 7, 0))
        )
        self.reference.run(block)
        self.guest.run(block)

    @invariant()
    def same_guest_visible_state(self) -> None:
        if not hasattr(self, "guest"):
            return
        ref, got = self.reference.ctx.visible(), self.guest.ctx.visible()
        names = ("regs", "flags", "cr3", "gdtr", "idtr", "msw", "memory", "ports", "pending", "events", "halts", "tpr")
        diffs = [
            f"{n}: bare metal {a!r}, {self.mode_cls.name} {b!r}"
            for n, a, b in zip(names, ref, got, strict=True)
            if a != b
        ]
        if (ref[1] ^ got[1]) & IF_FLAG:
            diffs.append(
                "the interrupt flag differs: on x86 a POPF (or PUSHF) run deprivileged neither traps "
                "nor changes IF; binary translation or hardware assist exists for exactly this"
            )
        assert not diffs, "guest-visible state differs from bare metal: " + "; ".join(diffs)


class ResourceControlMachine(RuleBasedStateMachine):
    """Parametrize with :meth:`for_component`."""

    #: The mode under test, set by :meth:`for_component` (None on this unparametrized base).
    mode_cls: Any = None
    arch = "x86"

    @classmethod
    def for_component(cls, mode_cls: type[Mode[Params]], arch: str | None = None) -> type[ResourceControlMachine]:
        arch = arch or mode_cls.architectures[0]
        return type(f"{cls.__name__}[{mode_cls.name}@{arch}]", (cls,), {"mode_cls": mode_cls, "arch": arch})

    @initialize()
    def boot(self) -> None:
        engine = Engine(seed=0)
        self.hv = Hypervisor(
            engine, Machine(2, 256 * PAGE_SIZE), FifoScheduler(None, 2), FixedPolicy(None), arch=self.arch
        )
        self.attacker = _Side(self.mode_cls, self.arch, 0, self.hv)
        self.victim = _Side(self.mode_cls, self.arch, 1, self.hv)
        self.victim_state = self.victim.ctx.visible()
        self.victim_p2m = self.victim.vm.p2m.copy()

    def _snapshot(self) -> _Snapshot:
        vm, memory = self.attacker.vm, self.hv.machine.memory
        tables = {k: v.copy() for k, v in vm.pv_tables.items()}
        return (
            self.attacker.ctx.visible(),
            vm.p2m.copy(),
            tables,
            memory.state.copy(),
            memory.owner.copy(),
            vm.counters["mem_balloon"],
        )

    def _same(self, before: _Snapshot, after: _Snapshot) -> bool:
        return (
            before[0] == after[0]
            and np.array_equal(before[1], after[1])
            and before[2].keys() == after[2].keys()
            and all(np.array_equal(before[2][k], after[2][k]) for k in before[2])
            and np.array_equal(before[3], after[3])
            and np.array_equal(before[4], after[4])
            and before[5] == after[5]
        )

    @rule(code=kernel_code(10))
    def hostile_kernel_code(self, code: tuple[Instruction, ...]) -> None:
        self.attacker.run(Block("hostile", code))

    def _hypercall(self, number: int, arg: int) -> None:
        before = self._snapshot()
        self.attacker.run(Block("hc", ((Op.HYPERCALL, number, arg),)))
        if self.attacker.ctx.hcr < 0:
            after = self._snapshot()
            # The register file and event log may differ only by what the fault path wrote.
            assert self._same(before, after), (
                f"hypercall {number}({arg}) failed with {self.attacker.ctx.hcr} but changed state"
            )

    @precondition(lambda self: self.mode_cls.paravirtual)
    @rule(
        number=st.integers(-2, 15),
        arg=st.one_of(
            st.integers(0, 8),
            st.integers(-(2**40), 2**40),
            st.builds(pack, st.integers(0, 4), st.integers(0, 9), st.integers(0, 0x200)),
        ),
    )
    def arbitrary_hypercall(self, number: int, arg: int) -> None:
        self._hypercall(number, arg)

    @precondition(lambda self: self.mode_cls.paravirtual)
    @rule(
        reg=st.integers(0, NREGS - 1),
        value=st.integers(-4, 80),
        number=st.sampled_from([HC.CREATE_PAGE_TABLE, HC.BALLOON_INFLATE, HC.BALLOON_DEFLATE, HC.SWITCH_TO_PAGE_TABLE]),
    )
    def frame_hypercall(self, reg: int, value: int, number: int) -> None:
        self.attacker.ctx.regs[reg] = value
        self._hypercall(number, reg)

    @precondition(lambda self: self.mode_cls.paravirtual)
    @rule(
        data=st.data(),
        count=st.integers(1, 4),
        writable=st.booleans(),
        # Drawn by index: sampling the names would hash strings into the strategy's label, which
        # varies with PYTHONHASHSEED and so changes what a fixed seed draws.
        which=st.integers(0, len(_WHOSE) - 1),
    )
    def map_frames(self, data: st.DataObject, count: int, writable: bool, which: int) -> None:
        whose = _WHOSE[which]
        vm, ctx = self.attacker.vm, self.attacker.ctx
        tables = sorted(vm.pv_tables) or [data.draw(st.integers(0, 40), label="table")]
        base = 0x40
        for i in range(count):
            if whose == "own":
                mpn = int(vm.p2m[data.draw(st.integers(0, 31), label="ppn")])
            elif whose == "victim":
                mpn = int(self.victim.vm.p2m[data.draw(st.integers(0, 31), label="ppn")])
            elif whose == "page_table" and vm.pv_tables:
                mpn = int(vm.p2m[data.draw(st.sampled_from(sorted(vm.pv_tables)), label="pt")])
            else:
                mpn = data.draw(st.integers(-3, 10**6), label="mpn")
            ctx.mem[base + 3 * i] = data.draw(st.sampled_from(tables), label="table")
            ctx.mem[base + 3 * i + 1] = data.draw(st.integers(-1, PT_ENTRIES), label="index")
            ctx.mem[base + 3 * i + 2] = (mpn << 1) | int(writable)
        ctx.regs[0] = base
        self._hypercall(HC.UPDATE_PAGE_TABLE, pack(0, min(count, MAX_BATCH + 1)))

    @invariant()
    def real_cpu_state_untouched(self) -> None:
        for cpu in self.hv.machine.cpus:
            assert (cpu.gdtr, cpu.idtr, cpu.msw) == (HOST_GDTR, HOST_IDTR, HOST_MSW), "real CPU state changed"

    @invariant()
    def other_vm_untouched(self) -> None:
        if not hasattr(self, "victim"):
            return
        assert self.victim.ctx.visible() == self.victim_state, "the other VM's CPU state changed"
        assert np.array_equal(self.victim.vm.p2m, self.victim_p2m), "the other VM's P2M changed"

    @invariant()
    def frames_owned_and_typed(self) -> None:
        if not hasattr(self, "attacker"):
            return
        memory = self.hv.machine.memory
        memory.check()
        vm = self.attacker.vm
        assert_owns_its_frames(memory, vm, "the attacker")
        table_mpns = {int(vm.p2m[p]) for p in vm.pv_tables}
        for entries in vm.pv_tables.values():
            for entry in entries[entries >= 0].tolist():
                assert (entry >> 1) < memory.frames, f"a page table maps frame {entry >> 1}, which does not exist"
                assert memory.owner[entry >> 1] == vm.id, (
                    f"a page table maps frame {entry >> 1}, owned by VM {int(memory.owner[entry >> 1])}, not {vm.name}"
                )
                assert not (entry & 1 and (entry >> 1) in table_mpns), "a page-table frame is mapped writable"
