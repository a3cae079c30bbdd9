"""The monitor of one VM: the machinery every virtualization mode shares.

A :class:`~vframework.api.Mode` plugin is policy (how each instruction class and discontinuity
is handled, and what it costs). The monitor does the work: it runs guest blocks through the
interpreter with the mode's classification, emulates what traps, exits or is called out,
vectors faults and interrupts into the guest kernel, translates memory references through the
paging the mode declares (native, shadow or nested) and the physical CPU's TLB, and keeps
shadow tables and TLBs coherent when the guest writes its page tables. It is also the mode's
:class:`~vframework.api.ModeContext`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from vframework.api.contract import Mode
from vframework.api.params import Params
from vframework.guest.kernel import GuestKernel
from vframework.machine.cpu import EOI_PORT, Action, GuestCPU, emulate, execute
from vframework.machine.isa import ARCHITECTURES, IF_FLAG, Block, Op
from vframework.machine.mmu import ShadowTables, asid, walk_references

if TYPE_CHECKING:
    import numpy.typing as npt

    from vframework.guest.mm import GuestProcess
    from vframework.hv.hypervisor import Hypervisor
    from vframework.hv.vm import VCPU, VM
    from vframework.machine.translate import TranslationCache

__all__ = ["Monitor"]

#: Sensitive instructions a binary translator rewrites into a few inline instructions.
_INLINE = frozenset({Op.CLI, Op.STI, Op.POPF, Op.PUSHF, Op.SGDT, Op.SIDT, Op.SMSW, Op.MOV_TO_CR8})


class Monitor:
    """Runs one VM's guest code and memory references under its mode."""

    def __init__(self, vm: VM, hypervisor: Hypervisor, mode_cls: type[Mode[Params]], params: Params) -> None:
        self.vm = vm
        self.hypervisor = hypervisor
        self.arch = ARCHITECTURES[hypervisor.arch]
        self.costs = hypervisor.machine.costs
        self.hosted = hypervisor.hosted
        self.counters = vm.counters
        #: The guest kernel build, set by the guest OS when it boots.
        self.kernel: GuestKernel | None = None
        self._vcpu: VCPU | None = None
        self._shadows: ShadowTables | None = None
        self.mode = mode_cls(params, self)
        self.paging = self.mode.paging
        #: The guest runs the para-virtual port of its kernel.
        self.paravirtual = self.mode.paravirtual
        #: Blocks run often, translated (exactly what the interpreter does, faster); the
        #: host's cache, shared with every VM whose mode classifies instructions alike.
        self.translations: TranslationCache = hypervisor.translations
        size = max(Op) + 1
        self._actions = {
            kernel: self.translations.intern(
                [
                    int(self.mode.classify(op, kernel)) if op in Op._value2member_map_ else int(Action.FAULT)
                    for op in range(size)
                ]
            )
            for kernel in (True, False)
        }
        # What privileged instructions cost the hardware when they do run directly.
        self._direct_cost = [0] * size
        self._direct_cost[Op.IN] = self._direct_cost[Op.OUT] = self.costs.port_io
        self._direct_cost[Op.MOV_TO_CR3] = self.costs.tlb_flush
        self._direct_cost[Op.INVLPG] = self.costs.page_walk_level
        # A %cr8 write and a call/return pair count one direct instruction; the rest of their
        # measured cost is here.
        self._direct_cost[Op.MOV_TO_CR8] = max(0, self.costs.cr8_write - self.costs.instruction)
        self._direct_cost[Op.CALL] = max(0, self.costs.call_ret - self.costs.instruction)

    # -- the mode's context ------------------------------------------------------------
    def hypercall(self, vcpu: Any, ctx: GuestCPU, number: int, arg: int) -> int:
        """Enter the hypervisor with an explicit hypercall. (``vcpu`` is one of this VM's
        :class:`~vframework.hv.vm.VCPU`, passed back by the mode, which sees it as a
        :class:`~vframework.api.VCPUView`: hence Any.)"""
        return self.hypervisor.hypercall(vcpu, ctx, number, arg)

    def fault(self, ctx: GuestCPU, name: str) -> int:
        """A processor exception raised by guest code: vectored to the guest's handler."""
        vcpu = self._vcpu
        assert vcpu is not None
        ctx.log.append(("fault", name))
        cycles = self.hypervisor.deliver(vcpu, "exception", 1)
        if self.kernel is not None:
            cycles += self.execute(vcpu, self.kernel.exception_handler)
        return cycles

    # -- what the guest's memory manager calls -------------------------------------------
    def translate(
        self,
        vcpu: VCPU,
        proc: GuestProcess,
        vpns: npt.NDArray[np.int64],
        write: bool,
        walked: npt.NDArray[np.int32] | None = None,
        shadowed: bool = False,
    ) -> tuple[int, npt.NDArray[np.integer]]:
        """Memory references to ``vpns`` of guest process ``proc`` (all mapped by the guest and
        backed by the hypervisor). Returns ``(cycles, mpns)``: the TLB / page-walk cost and the
        machine frame each reference reached (through the TLB: a stale entry would show).
        ``walked``, if given, is ``p2m[page_table[vpns]]`` already looked up by the caller (a
        fresh array: it is reused for the result); ``shadowed`` says it came from
        :meth:`complete_shadow` (so no shadow entry is missing)."""
        costs = self.costs
        counters = self.counters
        n = int(vpns.size)
        cycles = n * costs.memory_access
        if self.paging == "shadow" and shadowed and walked is not None:
            fill = walked
        elif self.paging == "shadow":
            fill, faults = self._shadow_walk(proc, vpns)
            if faults:
                counters["shadow_faults"] += faults
                cycles += self.mode.shadow_fault_cycles(faults, dirty=False)
        else:
            fill = self.vm.p2m[proc.page_table[vpns]] if walked is None else walked
        tlb = self.hypervisor.tlb_for(vcpu)
        hits, mpns = tlb.access(tlb.key(asid(self.vm.id, proc.pid), vpns), fill)
        misses = n - hits
        refs = misses * walk_references(self.hypervisor.page_levels, self.paging == "nested")
        if self.paging == "shadow" and write:
            # Dirty bits: shadows map clean pages read-only, so a page's first write traps and
            # the hypervisor sets D in the guest's entry.
            clean = np.unique(vpns[(proc.pte_flags[vpns] & 16) == 0])
            if clean.size:
                counters["shadow_pt_updates"] += int(clean.size)
                cycles += self.mode.shadow_fault_cycles(int(clean.size), dirty=True)
        counters["tlb_hits"] += hits
        counters["tlb_misses"] += misses
        counters["page_walk_refs"] += refs
        return cycles + refs * costs.page_walk_level, mpns

    def complete_shadow(self, proc: GuestProcess, vpns: npt.NDArray[np.int64]) -> npt.NDArray[np.int32] | None:
        """Under shadow paging, the shadow entries of ``vpns`` when none is missing (a fresh
        array), else None. A valid shadow entry is guest page table o P2M (the invariant the
        kit checks), so such pages are backed and this is what a walk would give: the caller
        need not look at the P2M."""
        if self.paging != "shadow":
            return None
        values = self.shadows.table(proc.pid, proc.page_table.size)[vpns]
        return None if (values < 0).any() else values

    def run_fill(
        self, proc: GuestProcess, vpns: npt.NDArray[np.int64], walked: npt.NDArray[np.int32]
    ) -> npt.NDArray[np.int32]:
        """What a TLB miss on each of ``vpns`` loads, without any fault: the shadow entry (-1
        where missing: that reference would fault to the hypervisor) or ``walked``."""
        if self.paging == "shadow":
            return self.shadows.table(proc.pid, proc.page_table.size)[vpns]
        return walked

    @property
    def miss_refs(self) -> int:
        """Memory references of one TLB miss's page walk under this mode's paging."""
        return walk_references(self.hypervisor.page_levels, self.paging == "nested")

    def _shadow_walk(self, proc: GuestProcess, vpns: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int32], int]:
        shadow = self.shadows.table(proc.pid, proc.page_table.size)
        values = shadow[vpns]
        missing = values < 0
        if not missing.any():
            return values, 0
        # Hidden shadow faults: fill from guest page table o P2M, unseen by the guest.
        fill_vpns = np.unique(vpns[missing])
        shadow[fill_vpns] = self.vm.p2m[proc.page_table[fill_vpns]]
        return shadow[vpns], int(fill_vpns.size)

    @property
    def shadows(self) -> ShadowTables:
        """The VM's shadow page tables (created on first use)."""
        if self._shadows is None:
            self._shadows = ShadowTables()
        return self._shadows

    def pt_write(self, vcpu: VCPU, proc: GuestProcess, vpns: npt.NDArray[np.int64]) -> int:
        """The guest changed the entries of ``vpns`` in ``proc``'s page table (already written).
        Keeps shadows and TLBs coherent; returns the cycles of the writes."""
        count = int(vpns.size)
        if count == 0:
            return 0
        traced = count
        if self.paging == "shadow":
            # Only page-table pages the hypervisor shadows are write-protected (traced): a write
            # to one traps (or was translated into a callout) and updates the shadow entry now.
            # A page table no shadow is built from yet (a fresh child's) is written at full
            # speed; its entries are filled on demand, by hidden faults, once it is used.
            shadow = self.shadows.table(proc.pid, proc.page_table.size)
            hit = vpns[self.shadows.traced(proc.pid, vpns)]
            traced = int(hit.size)
            if traced:
                ppns = proc.page_table[hit]
                shadow[hit] = np.where(ppns >= 0, self.vm.p2m[np.maximum(ppns, 0)], -1)
                self.counters["shadow_pt_updates"] += traced
        # The guest invalidates what it changed (INVLPG), on the CPU it runs on.
        tlb = self.hypervisor.tlb_for(vcpu)
        tlb.flush_keys(tlb.key(asid(self.vm.id, proc.pid), vpns))
        cycles = count * self.costs.instruction
        return cycles + self.mode.pte_write_cycles(traced) if traced else cycles

    def address_space_gone(self, proc: GuestProcess) -> int:
        """A guest process exited: drop its shadow table. Returns the cycles the hypervisor
        spent on the address space's shadows beyond faults and traced writes (building its
        roots, unprotecting its traced pages, freeing them), charged once, here."""
        cycles = self.mode.address_space_cycles(proc.table_pages)
        if self.paging != "shadow":
            return cycles
        built = proc.pid in self.shadows.tables
        self.shadows.drop(proc.pid)
        return cycles + (self.costs.shadow_address_space if built else 0)

    def frames_taken(self, mpns: npt.NDArray[np.integer]) -> None:
        """The hypervisor took these frames from the VM: no shadow entry may point at them."""
        if self.paging == "shadow":
            self.shadows.invalidate_mpns(mpns)

    def hidden_fault(self, vcpu: VCPU, count: int) -> int:
        """``count`` pages were backed behind the guest's back: what the mode says it costs."""
        return self.mode.hidden_fault(vcpu, count)

    def io(self, vcpu: VCPU, device: str, nbytes: int, write: bool) -> int:
        """Moving one I/O request's data: what the mode says it costs."""
        return self.mode.io(vcpu, device, nbytes, write)

    # -- guest code ------------------------------------------------------------------
    def execute(self, vcpu: VCPU, block: Block) -> int:
        """Run a guest block on the vCPU's state; returns its cycles."""
        previous, self._vcpu = self._vcpu, vcpu
        try:
            cycles = self.mode.before_block(vcpu, block)
            actions = self._actions[block.kernel]
            translated = self.translations.lookup(block, actions)
            if translated is None:
                direct, extra = execute(vcpu.ctx, block, actions, self, self._direct_cost)
            else:
                direct, extra = translated(vcpu.ctx, self, self._direct_cost)
        finally:
            self._vcpu = previous
        self.counters["instructions_direct"] += direct
        return cycles + direct * self.costs.instruction + extra

    def execute_many(self, vcpu: VCPU, block: Block, count: int) -> int:
        """Run a kernel routine ``count`` times. The first two runs are executed (the first may
        translate or warm up); the rest repeat the second's cycles and counters, which is exact
        for routines without data-dependent control (the kernel's own routines)."""
        if count <= 0:
            return 0
        first = self.execute(vcpu, block)
        if count == 1:
            return first
        counters = self.counters
        before = dict(counters)
        second = self.execute(vcpu, block)
        repeats = count - 2
        if repeats > 0:
            for key, value in counters.items():
                if value != before[key]:
                    counters[key] = value + (value - before[key]) * repeats
        return first + second * (count - 1)

    def emulation_cycles(self, op: int, emulate: int | None = None) -> int:
        """The hypervisor's work to emulate one instruction (``emulate`` cycles, the cost
        model's ``emulate`` unless given); a hosted VMM crosses into the host OS and back for
        device access (a world switch each way)."""
        cycles = self.costs.emulate if emulate is None else emulate
        if self.hosted and op in (Op.IN, Op.OUT):
            cycles += 2 * self.costs.world_switch
            self.counters["world_switches"] += 2
        return cycles

    def special(self, ctx: GuestCPU, action: int, op: int, a: int, b: int) -> int:
        """Called by the interpreter for every instruction that is not executed directly."""
        counters = self.counters
        if action == Action.FAULT:
            name = (
                "divide_error" if op == Op.DIV else ("invalid_opcode" if op == Op.HYPERCALL else "general_protection")
            )
            return self.fault(ctx, name)
        if action == Action.HYPERCALL:
            assert self._vcpu is not None
            return self.mode.hypercall(self._vcpu, ctx, a, b)
        emulate(ctx, op, a, b)
        counters["instructions_emulated"] += 1
        if action == Action.TRAP:
            counters["traps"] += 1
            return self.costs.trap + self.emulation_cycles(op)
        if action == Action.EXIT:
            reason = self.arch.exits.get(op, "exception")
            counters["vm_exits"] += 1
            counters[f"vm_exits_{reason}"] += 1
            return self.costs.vm_exit + self.emulation_cycles(op, self.costs.exit_emulate)
        if action == Action.CALLOUT:
            counters["bt_callouts"] += 1
            if op == Op.CALL:
                # The return is an indirect branch: its target is looked up among translations.
                return self.costs.call_ret + self.costs.bt_indirect
            if op in _INLINE:
                return self.costs.bt_inline  # rewritten as a few instructions on the virtual CPU
            cycles = self.costs.bt_call
            if op in (Op.IN, Op.OUT):  # device emulation still has to happen
                cycles += self.emulation_cycles(op)
            return cycles
        raise ValueError(f"mode {self.mode.name!r}: unknown action {action} for {Op(op).name}")

    def interrupt(self, ctx: GuestCPU) -> int:
        """Deliver the oldest pending external interrupt to the guest (its IF is set)."""
        vcpu = self._vcpu
        assert vcpu is not None
        vector = ctx.pending.pop(0)
        ctx.log.append(("irq", vector))
        timer = vector == EOI_PORT
        cycles = self.hypervisor.deliver(vcpu, "timer" if timer else "device", 1)
        saved = ctx.flags
        ctx.flags &= ~IF_FLAG  # interrupt gates clear IF on entry...
        if self.kernel is not None:
            cycles += self.execute(vcpu, self.kernel.timer_handler if timer else self.kernel.device_handler)
        ctx.flags = saved  # ...and IRET restores it (the deliverer emulates the return)
        return cycles
