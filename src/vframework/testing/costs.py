"""State machine for a virtualization mode's costs and counters.

*Costs*: Hypothesis writes a guest program (kernel blocks, run once and again; user blocks;
system calls; interrupts; page and hidden faults; disk I/O; back-end notifications; context
switches) and runs each operation on the bare-metal reference :class:`NativeCosts` and under
the mode (on the *ported* program if para-virtual). Virtualization never makes work cheaper:
each operation, and each discontinuity, hidden fault, copy and notification the mode charges
in it, costs at least its native cost.

*Counters*: none decreases; each instruction handed to the hypervisor counts once, in its
action's counter; each VM exit has one reason; each call into the mode counts its events once
each, or not at all (they did not enter the hypervisor).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, rule

from vframework.api.contract import Mode
from vframework.api.params import Params
from vframework.api.views import VCPUView
from vframework.guest.kernel import paravirtualize
from vframework.guest.os import GuestOS
from vframework.hv.hypervisor import Hypervisor
from vframework.hv.metrics import HOST_METRICS, VM_METRICS
from vframework.hv.monitor import Monitor
from vframework.hv.vm import VCPU, VM
from vframework.machine.cpu import EOI_PORT, Action, GuestCPU
from vframework.machine.hardware import Machine
from vframework.machine.isa import Block, Instruction, Op
from vframework.sim.engine import Engine
from vframework.sim.units import PAGE_SIZE
from vframework.testing.doubles import FifoScheduler, FixedPolicy, Native
from vframework.testing.equivalence import instructions, kernel_code

__all__ = ["CostMachine", "NativeCosts"]

#: Entries into the hypervisor (an event that enters it counts in one of them), each with the
#: action the monitor counts in it itself; hypercalls are counted within the mode's call.
_ENTRIES = {"traps": Action.TRAP, "vm_exits": Action.EXIT, "bt_callouts": Action.CALLOUT, "hypercalls": None}
#: Translation-cache lookups: a block a translator sees is a miss or a hit, not both.
_LOOKUPS = ("bt_translations", "bt_cache_hits")
#: The mode's methods that charge (and may count) work: observed on both sides.
_CALLBACKS = ("deliver", "hidden_fault", "notify_backend", "io", "hypercall", "before_block")
#: Those bare metal has too, one for one: their costs compare call by call.
_PAIRED = frozenset({"deliver", "hidden_fault", "notify_backend", "io"})


class NativeCosts(Native):
    """Bare metal at the native costs the ``bare-metal`` plugin charges (the kernel imports no plugin)."""

    name = "kit-native-costs"

    def deliver(self, vcpu: VCPUView, kind: str, count: int) -> int:
        costs = self.costs
        return count * {"syscall": costs.syscall, "page_fault": costs.page_fault}.get(kind, costs.interrupt)

    def hidden_fault(self, vcpu: VCPUView, count: int) -> int:
        return count * self.costs.page_fault

    def notify_backend(self, vcpu: VCPUView) -> int:
        return self.costs.port_io


@dataclass(frozen=True)
class _Call:
    """One call into the mode: what it charged and what it counted meanwhile."""

    method: str
    args: tuple[Any, ...]
    cycles: int
    counted: dict[str, int]
    #: How many events the call stands for (a batch of discontinuities or hidden faults).
    events: int

    def __str__(self) -> str:
        shown = (repr(a) if isinstance(a, int | str) else getattr(a, "name", type(a).__name__) for a in self.args)
        return f"{self.method}({', '.join(shown)})"


def _observed(mode_cls: type[Mode[Params]]) -> type[Mode[Params]]:
    """``mode_cls`` with its callbacks recorded in its monitor (a :class:`_Tally`)."""

    def observe(name: str) -> Callable[..., int]:
        method = getattr(mode_cls, name)

        def observed(self: Mode[Params], vcpu: VCPUView, *args: Any) -> int:
            monitor = cast(_Tally, self.context)
            before = dict(monitor.counters)
            monitor.depth += 1
            cycles = int(method(self, vcpu, *args))
            monitor.depth -= 1
            # A call made within another (a fault raised by a hypercall) is part of that one's work.
            if not monitor.depth:
                counted = {k: v - before.get(k, 0) for k, v in monitor.counters.items() if v != before.get(k, 0)}
                events = int(args[0] if name == "hidden_fault" else args[1] if name == "deliver" else 1)
                monitor.calls.append(_Call(name, args, cycles, counted, events))
            return cycles

        return observed

    return cast("type[Mode[Params]]", type(mode_cls.__name__, (mode_cls,), {n: observe(n) for n in _CALLBACKS}))


class _Tally(Monitor):
    """A VM's monitor also recording the work its counters must agree with: actions handed to it, mode calls."""

    def __init__(self, vm: VM, hypervisor: Hypervisor, mode_cls: type[Mode[Params]], params: Params) -> None:
        self.tally, self.calls, self.depth = Counter[int](), list[_Call](), 0
        super().__init__(vm, hypervisor, _observed(mode_cls), params)

    def special(self, ctx: GuestCPU, action: int, op: int, a: int, b: int) -> int:
        if not self.depth:
            self.tally[action] += 1
        return super().special(ctx, action, op, a, b)

    def drain(self, vcpu: VCPU) -> int:
        ctx, cycles = vcpu.ctx, 0
        self._vcpu = vcpu
        while ctx.pending and ctx.interrupts_enabled:
            cycles += self.interrupt(ctx)
        self._vcpu = None
        return cycles


class _Guest:
    """One VM with a mode on a one-CPU hypervisor; every operation returns the cycles it cost."""

    def __init__(self, mode_cls: type[Mode[Params]], arch: str, name: str) -> None:
        machine = Machine(1, 256 * PAGE_SIZE)
        self.hv = hv = Hypervisor(Engine(seed=0), machine, FifoScheduler(None, 1), FixedPolicy(None), arch=arch)
        self.vm = VM(0, name, 1, 32)
        # What Hypervisor.attach_mode does, with the recording monitor.
        self.monitor = _Tally(self.vm, hv, mode_cls, mode_cls.params_model())
        self.vm.monitor, self.vm.mode = self.monitor, self.monitor.mode
        self.vm.guest = GuestOS(self.vm, hv)
        self.kernel = self.vm.guest.kernel  # the para-virtual port under a para-virtual mode
        hv.add_vm(self.vm)
        if not self.monitor.mode.preallocate:
            hv.back_pages(self.vm, np.arange(32, dtype=np.int64), hidden=False)
        self.vcpu = self.vm.vcpus[0]

    def run(self, block: Block) -> int:
        # Generated kernel code is ported under a para-virtual mode, as the guest's own is.
        return self.routine(paravirtualize(block) if self.monitor.paravirtual and block.kernel else block)

    def routine(self, block: Block, count: int = 1) -> int:
        return sum(self.monitor.execute(self.vcpu, block) for _ in range(count)) + self.monitor.drain(self.vcpu)

    def discontinuity(self, kind: str, count: int, handler: Block) -> int:
        return self.hv.deliver(self.vcpu, kind, count) + self.routine(handler, count)

    def disk_io(self, nbytes: int, write: bool) -> int:
        # The generic driver's request as GuestOS runs it: a system call, port I/O, the copy.
        cycles = self.hv.deliver(self.vcpu, "syscall", 1) + self.routine(self.kernel.disk_request)
        return cycles + self.monitor.io(self.vcpu, "disk", nbytes, write)


def _cheaper(what: str, cycles: int, native: int) -> str:
    must = "expected a virtualized operation to cost at least its native cost"
    return f"{what} costs {cycles} cycles, less than the {native} it costs on bare metal; {must}"


def _listing(code: tuple[Instruction, ...]) -> str:
    return "[" + "; ".join(f"{Op(op).name} {a},{b}" for op, a, b in code) + "]"


class CostMachine(RuleBasedStateMachine):
    """Parametrize with :meth:`for_component` (and an architecture)."""

    #: The mode under test, set by :meth:`for_component` (None on this unparametrized base).
    mode_cls: Any = None
    arch = "x86"
    #: Compare costs with bare metal (off: the counters alone, so a known cost limitation
    #: cannot hide a counting bug).
    costs = True
    blocks = Bundle("blocks")

    @classmethod
    def for_component(
        cls, mode_cls: type[Mode[Params]], arch: str | None = None, costs: bool = True
    ) -> type[CostMachine]:
        arch = arch or mode_cls.architectures[0]
        label = f"{cls.__name__}[{mode_cls.name}@{arch}{'' if costs else ', counters'}]"
        return type(label, (cls,), {"mode_cls": mode_cls, "arch": arch, "costs": costs})

    @initialize()
    def boot(self) -> None:
        self.reference = _Guest(NativeCosts, self.arch, "native")
        self.guest = _Guest(self.mode_cls, self.arch, "guest")
        self.where = f"VM {self.guest.vm.name!r} under mode {self.mode_cls.name!r} ({self.arch})"
        self._settle()

    def _settle(self) -> None:
        # Each operation is checked on its own: forget the work and the counts before it.
        for side in (self.reference, self.guest):
            side.monitor.tally, side.monitor.calls = Counter(), []
        self.vm_counters = dict(self.guest.vm.counters)
        self.host_counters = dict(self.guest.hv.counters)

    def _both(self, operation: str, act: Callable[[_Guest], int]) -> None:
        native, cycles = act(self.reference), act(self.guest)
        self._check_counters(operation)
        self._check_costs(operation, native, cycles)
        self._settle()

    def _check_costs(self, operation: str, native: int, cycles: int) -> None:
        if not self.costs:
            return
        ref, got = ([c for c in side.monitor.calls if c.method in _PAIRED] for side in (self.reference, self.guest))
        # A guest that diverged from bare metal (see the equivalence property) took other events: compare totals.
        if [(c.method, *c.args) for c in ref] == [(c.method, *c.args) for c in got]:
            for r, g in zip(ref, got, strict=True):
                assert g.cycles >= r.cycles, _cheaper(
                    f"{operation} on {self.where}: the mode's {g}", g.cycles, r.cycles
                )
        assert cycles >= native, _cheaper(f"{operation} on {self.where}", cycles, native)

    def _check_counters(self, operation: str) -> None:
        vm, hv, monitor, where = self.guest.vm, self.guest.hv, self.guest.monitor, self.where
        for owner, now, was, metrics in (
            (where, vm.counters, self.vm_counters, VM_METRICS),
            (f"the host of {where}", hv.counters, self.host_counters, HOST_METRICS),
        ):
            gauges = {k for k, metric in metrics.items() if metric.kind == "gauge"}
            down = {k: f"{was.get(k, 0)} -> {v}" for k, v in now.items() if k not in gauges and v < was.get(k, 0)}
            assert not down, f"after {operation}: counters of {owner} went down: {down}; expected never to decrease"
        grew = Counter({k: v - self.vm_counters.get(k, 0) for k, v in vm.counters.items()})
        reasons = sum(grew[k] for k in vm.counters if k.startswith("vm_exits_"))
        assert reasons == grew["vm_exits"], (
            f"after {operation}: {where} counted {grew['vm_exits']} vm_exits but {reasons} vm_exits_<reason>; "
            "expected exactly one reason per exit"
        )
        inside = Counter[str]()
        for call in monitor.calls:
            inside.update(call.counted)
            for what, keys in (("hypervisor entries", tuple(_ENTRIES)), ("translation-cache lookups", _LOOKUPS)):
                detail = {k: call.counted[k] for k in keys if k in call.counted}
                n = sum(detail.values())
                assert n in (0, call.events), (
                    f"after {operation}: on {where}, the mode's {call} counted {n} {what} {detail} for "
                    f"{call.events} event(s); expected each event counted once ({call.events}), or none (0)"
                )
        # What the monitor counted itself must be exactly what the interpreter handed it.
        for key, action in _ENTRIES.items():
            counted, handed = grew[key] - inside[key], monitor.tally[action] if action is not None else 0
            how = f"one per instruction handled with {action.name}" if action is not None else "as hypercall() counts"
            assert counted == handed, (
                f"after {operation}: {where} counted {counted} {key} outside the mode's calls; expected {handed}, {how}"
            )

    @rule(target=blocks, code=kernel_code())
    def kernel_block(self, code: tuple[Instruction, ...]) -> Block:
        block = Block("generated", code, kernel=True)
        self._both(f"kernel block {_listing(code)}", lambda side: side.run(block))
        return block

    @rule(block=blocks)
    def kernel_block_again(self, block: Block) -> None:
        # A translator's second run is its cheap one (the translation is cached).
        self._both(f"kernel block {_listing(block.code)} run again", lambda side: side.run(block))

    @rule(code=st.lists(instructions(False), min_size=1, max_size=6).map(tuple))
    def user_block(self, code: tuple[Instruction, ...]) -> None:
        block = Block("generated-user", code, kernel=False)
        self._both(f"user block {_listing(code)}", lambda side: side.run(block))

    @rule()
    def system_call(self) -> None:
        self._both("system call", lambda side: side.discontinuity("syscall", 1, side.kernel.syscall))

    @rule(vector=st.sampled_from([EOI_PORT, 0x21]))
    def interrupt(self, vector: int) -> None:
        for side in (self.reference, self.guest):
            side.vcpu.ctx.pending.append(vector)
        self._both(f"interrupt {vector:#x}", lambda side: side.monitor.drain(side.vcpu))

    @rule(count=st.integers(1, 4))
    def page_faults(self, count: int) -> None:
        self._both(
            f"{count} page fault(s)", lambda s: s.discontinuity("page_fault", count, s.kernel.page_fault_handler)
        )

    @rule(count=st.integers(1, 8))
    def hidden_faults(self, count: int) -> None:
        self._both(f"{count} hidden fault(s)", lambda side: side.monitor.hidden_fault(side.vcpu, count))

    @rule(nbytes=st.sampled_from([0, 1, 512, 4096, 65536]), write=st.booleans())
    def disk_io(self, nbytes: int, write: bool) -> None:
        self._both(f"disk {'write' if write else 'read'} of {nbytes} bytes", lambda side: side.disk_io(nbytes, write))

    @rule()
    def notify_backend(self) -> None:
        self._both("back-end notification", lambda side: side.monitor.mode.notify_backend(side.vcpu))

    @rule(count=st.integers(1, 3))
    def context_switch(self, count: int) -> None:
        # The guest kernel's own routine: the same block every time, as a translator caches it.
        self._both(f"{count} context switch(es)", lambda side: side.routine(side.kernel.context_switch, count))
