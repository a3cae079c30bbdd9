"""The interfaces plugins implement: one base class per plugin kind.

A component is a class with a registered ``name``, a one-line ``description`` and a pydantic
``Params`` model for the parameters a scenario may give it (``scheduler = { name = "credit",
tslice = "30ms" }``). Host-level components (scheduler, memory policy) may also declare
``VMParams``: the per-VM scenario keys they understand (``shares``, ``weight``...); a VM key
that no chosen component understands is a validation error naming the component.

The kernel calls these methods directly on hot paths; pluggy is used only to *find* the classes.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from vframework.guest.ops import Operation
from vframework.machine.mmu import ShadowTables, asid, walk_references

if TYPE_CHECKING:
    from vframework.hv.hypervisor import Hypervisor
    from vframework.hv.vm import VCPU, VM

__all__ = [
    "KINDS", "DISCONTINUITIES", "Params", "Component", "Scheduler", "MemoryPolicy", "MemoryService", "Mode",
    "Device", "Workload", "WorkloadContext",
]

#: The plugin kinds, in the order they are listed everywhere.
KINDS = ("scheduler", "memory_policy", "memory_service", "mode", "device", "workload")

#: Program discontinuities the hypervisor fields and delivers to a guest as virtual interrupts.
DISCONTINUITIES = ("syscall", "page_fault", "exception", "device", "timer")


class Params(BaseModel):
    """Base of every component's parameter model: unknown keys are errors, values are typed."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Component:
    """What every component class declares."""

    #: The registered name a scenario uses (``"fair"``, ``"memory"``...).
    name: ClassVar[str] = ""
    #: One of :data:`KINDS`; set by the kind's base class.
    kind: ClassVar[str] = ""
    #: One line for ``vframework plugins`` and the docs.
    description: ClassVar[str] = ""
    #: Parameters accepted from the scenario's component table.
    Params: ClassVar[type[BaseModel]] = Params
    #: Per-VM scenario keys this component understands (host-level kinds only).
    VMParams: ClassVar[type[BaseModel] | None] = None


class Scheduler(Component):
    """Decides which vCPU runs on which physical CPU, for how long, and charges the time.

    The hypervisor calls :meth:`attach` once per vCPU, then :meth:`wake` / :meth:`block` as
    vCPUs become runnable or not, :meth:`pick` whenever a physical CPU needs work, and
    :meth:`charge` with the ns a vCPU ran when it leaves the CPU. :meth:`tick` runs every
    :attr:`tick_ns` if that is non-zero.
    """

    kind = "scheduler"
    #: Whether the scheduler promises never to idle a CPU while an uncapped vCPU waits.
    work_conserving: ClassVar[bool] = True
    #: Period of :meth:`tick` in ns (0: no tick).
    tick_ns: int = 0
    #: The ``VMParams`` field that carries a VM's share (``"shares"``, ``"weight"``), so the
    #: conformance kit can vary it; None when shares are not configurable.
    share_param: ClassVar[str | None] = None

    def __init__(self, params: Params, cpus: int) -> None:
        self.params = params
        self.cpus = cpus

    def attach(self, vcpu: VCPU, vm_params: Params | None) -> None:
        """A new vCPU exists (not yet runnable)."""
        raise NotImplementedError

    def detach(self, vcpu: VCPU) -> None:
        """A vCPU is gone for good (its VM was destroyed or halted)."""
        raise NotImplementedError

    def wake(self, vcpu: VCPU, now: int) -> Sequence[int]:
        """``vcpu`` became runnable; return the physical CPUs that should be preempted now."""
        raise NotImplementedError

    def block(self, vcpu: VCPU, now: int) -> None:
        """``vcpu`` stopped being runnable (it blocked, halted or left the CPU for good)."""
        raise NotImplementedError

    def pick(self, cpu: int, now: int) -> tuple[VCPU | None, int]:
        """The runnable vCPU to run next on physical CPU ``cpu`` and its slice in ns.

        The vCPU is removed from the run queue; return ``(None, 0)`` to leave the CPU idle.
        """
        raise NotImplementedError

    def charge(self, vcpu: VCPU, ran_ns: int, now: int, runnable: bool) -> None:
        """``vcpu`` ran ``ran_ns`` and left its CPU; when ``runnable`` it goes back to the queue."""
        raise NotImplementedError

    def tick(self, now: int) -> Sequence[int]:
        """Periodic accounting; return the physical CPUs to preempt."""
        return ()

    def capped(self, vcpu: VCPU) -> bool:
        """Whether the vCPU may be kept off idle CPUs on purpose (a cap or limit applies)."""
        return False

    def set_vm_params(self, vcpu: VCPU, vm_params: Params | None) -> None:
        """Change a vCPU's per-VM parameters (shares, weight...) while it exists."""
        raise NotImplementedError(f"scheduler {self.name!r} cannot change parameters at run time")

    def share_weight(self, vm_params: Params | None) -> float | None:
        """The VM's weight in the proportional-share promise, or None for no such promise.

        Schedulers that return weights are checked by the conformance kit: every VM's CPU time
        stays within :meth:`share_error_bound_ns` of its fluid (GPS) entitlement.
        """
        return None

    def share_error_bound_ns(self, vms: int) -> int | None:
        """How far (ns) a VM's CPU time may lag or lead its entitlement with ``vms`` VMs."""
        return None


class MemoryPolicy(Component):
    """Decides each VM's memory target (pages) from its configuration and activity."""

    kind = "memory_policy"
    #: Whether the sum of VM memory may exceed the host's (needs reclamation to work).
    can_overcommit: ClassVar[bool] = False
    #: How often :meth:`targets` runs, in ns (0: only at start).
    period_ns: int = 0

    def __init__(self, params: Params) -> None:
        self.params = params

    def targets(self, hypervisor: Hypervisor, now: int) -> dict[int, int]:
        """VM id -> target in pages."""
        raise NotImplementedError


class MemoryService(Component):
    """Reclaims or saves machine frames (ballooning, page sharing, swap); runs periodically."""

    kind = "memory_service"
    period_ns: int = 1_000_000_000

    def __init__(self, params: Params) -> None:
        self.params = params

    def run(self, hypervisor: Hypervisor, now: int) -> int:
        """Do one period's work; return the cycles of hypervisor time it took."""
        raise NotImplementedError


class Mode(Component):
    """How one VM's privileged operations, memory and I/O reach the hypervisor (or hardware).

    One instance per VM, so modes mix freely on a host. A mode classifies every opcode once
    (:meth:`classify`, for kernel and for user code); the kernel's interpreter
    (:func:`vframework.machine.cpu.execute`) then runs guest blocks and calls back here only for the
    instructions that leave direct execution. Every method returns cycles and updates the
    VM's counters.
    """

    kind = "mode"
    #: Back every guest-physical page with a machine frame when the VM is created (no
    #: hypervisor to do it lazily); otherwise frames are allocated on first touch.
    preallocate: ClassVar[bool] = False
    #: The guest runs the para-virtual port of its kernel.
    paravirtual: ClassVar[bool] = False
    #: Architectures the mode runs on; the first is the one ``vframework check`` uses by default.
    architectures: ClassVar[tuple[str, ...]] = ("x86", "classic", "x86-vt")
    #: Whether this is the no-hypervisor baseline (not a virtualization mode).
    baseline: ClassVar[bool] = False

    def __init__(self, params: Params, vm: VM, hypervisor: Hypervisor) -> None:
        from vframework.machine.cpu import Action
        from vframework.machine.isa import ARCHITECTURES, Op

        self.params = params
        self.vm = vm
        self.hypervisor = hypervisor
        self.arch = ARCHITECTURES[getattr(hypervisor, "arch", "x86")]
        self.costs = hypervisor.machine.costs
        self.hosted = getattr(hypervisor, "hosted", False)
        self.kernel: Any = None  # the guest kernel build, set by the guest OS
        size = max(Op) + 1
        self._actions = {
            kernel: [int(self.classify(op, kernel)) if op in Op._value2member_map_ else int(Action.FAULT)
                     for op in range(size)]
            for kernel in (True, False)
        }
        self._vcpu: VCPU | None = None
        # What privileged instructions cost the hardware when they do run directly.
        self._direct_cost = [0] * size
        self._direct_cost[Op.IN] = self._direct_cost[Op.OUT] = self.costs.port_io
        self._direct_cost[Op.MOV_TO_CR3] = self.costs.tlb_flush
        self._direct_cost[Op.INVLPG] = self.costs.page_walk_level

    # -- what a mode decides ----------------------------------------------------------
    def classify(self, op: int, kernel: bool) -> int:
        """The :class:`~vframework.machine.cpu.Action` for opcode ``op`` in kernel (or user) code."""
        raise NotImplementedError

    def deliver(self, vcpu: VCPU, kind: str, count: int) -> int:
        """``count`` program discontinuities of ``kind`` (one of :data:`DISCONTINUITIES`)
        vectored into the guest kernel: the cost of getting there and back (the handler's own
        instructions are executed and costed separately)."""
        raise NotImplementedError

    def hidden_fault(self, vcpu: VCPU, count: int) -> int:
        """``count`` accesses found no machine frame behind their PPN; the hypervisor backed them."""
        raise NotImplementedError

    def pte_write_cycles(self, count: int) -> int:
        """What ``count`` guest page-table-entry writes cost beyond the stores themselves: a trap
        or exit per write (shadow paging), a validated batch (para-virtual), or nothing."""
        return 0

    # -- the memory half every mode shares --------------------------------------------
    #: How the hardware translates for this VM: "native" (the guest's table; bare metal and
    #: para-virtual direct paging), "shadow" (hypervisor-kept VPN -> MPN tables) or
    #: "nested" (EPT / NPT two-dimensional walks).
    paging: ClassVar[str] = "native"

    def translate(
        self, vcpu: VCPU, proc: Any, vpns: np.ndarray, write: bool, walked: np.ndarray | None = None
    ) -> tuple[int, np.ndarray]:
        """Memory references to ``vpns`` of guest process ``proc`` (all mapped by the guest and
        backed by the hypervisor). Returns ``(cycles, mpns)``: the TLB / page-walk cost and the
        machine frame each reference reached (through the TLB: a stale entry would show).
        ``walked``, if given, is ``p2m[page_table[vpns]]`` already looked up by the caller (a
        fresh array: it is reused for the result)."""
        costs = self.costs
        counters = self.vm.counters
        n = int(vpns.size)
        cycles = n * costs.memory_access
        if self.paging == "shadow":
            fill, faults = self._shadow_walk(proc, vpns)
            if faults:
                counters["shadow_faults"] += faults
                cycles += faults * (costs.trap + costs.emulate)
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
                cycles += int(clean.size) * (costs.trap + costs.shadow_update)
        counters["tlb_hits"] += hits
        counters["tlb_misses"] += misses
        counters["page_walk_refs"] += refs
        return cycles + refs * costs.page_walk_level, mpns

    def _shadow_walk(self, proc: Any, vpns: np.ndarray) -> tuple[np.ndarray, int]:
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
    def shadows(self) -> Any:
        """The VM's shadow page tables (created on first use)."""
        tables = self.__dict__.get("_shadows")
        if tables is None:
            tables = self.__dict__["_shadows"] = ShadowTables()
        return tables

    def pt_write(self, vcpu: VCPU, proc: Any, vpns: np.ndarray) -> int:
        """The guest changed the entries of ``vpns`` in ``proc``'s page table (already written).
        Keeps shadows and TLBs coherent; returns the cycles of the writes."""
        count = int(vpns.size)
        if count == 0:
            return 0
        if self.paging == "shadow":
            # The write trapped (or was translated into a callout): update the shadow entry now.
            shadow = self.shadows.table(proc.pid, proc.page_table.size)
            ppns = proc.page_table[vpns]
            shadow[vpns] = np.where(ppns >= 0, self.vm.p2m[np.maximum(ppns, 0)], -1)
            self.vm.counters["shadow_pt_updates"] += count
        # The guest invalidates what it changed (INVLPG), on the CPU it runs on.
        tlb = self.hypervisor.tlb_for(vcpu)
        tlb.flush_keys(tlb.key(asid(self.vm.id, proc.pid), vpns))
        return count * self.costs.instruction + self.pte_write_cycles(count)

    def address_space_gone(self, proc: Any) -> None:
        """A guest process exited: drop its shadow table."""
        if self.paging == "shadow":
            self.shadows.drop(proc.pid)

    def frames_taken(self, mpns: np.ndarray) -> None:
        """The hypervisor took these frames from the VM: no shadow entry may point at them."""
        if self.paging == "shadow":
            self.shadows.invalidate_mpns(mpns)

    def io(self, vcpu: VCPU, device: str, nbytes: int, write: bool) -> int:
        """Moving one request's data between the guest and the device (copies, if any)."""
        raise NotImplementedError

    def before_block(self, vcpu: VCPU, block: Any) -> int:
        """Work before a block runs (a binary translator translates it here on first sight)."""
        return 0

    def hypercall(self, vcpu: VCPU, ctx: Any, number: int, arg: int) -> int:
        """An explicit hypercall (para-virtual modes); elsewhere it is an invalid instruction."""
        return self._fault(ctx, "invalid_opcode")

    # -- the machinery every mode shares --------------------------------------------
    def execute(self, vcpu: VCPU, block: Any) -> int:
        """Run a guest block on the vCPU's state; returns its cycles."""
        from vframework.machine.cpu import execute

        previous, self._vcpu = self._vcpu, vcpu
        try:
            cycles = self.before_block(vcpu, block)
            direct, extra = execute(vcpu.ctx, block, self._actions[block.kernel], self, self._direct_cost)
        finally:
            self._vcpu = previous
        self.vm.counters["instructions_direct"] += direct
        return cycles + direct * self.costs.instruction + extra

    def execute_many(self, vcpu: VCPU, block: Any, count: int) -> int:
        """Run a kernel routine ``count`` times. The first two runs are interpreted (the first
        may translate or warm up); the rest repeat the second's cycles and counters, which is
        exact for routines without data-dependent control (the kernel's own routines)."""
        if count <= 0:
            return 0
        first = self.execute(vcpu, block)
        if count == 1:
            return first
        counters = self.vm.counters
        before = dict(counters)
        second = self.execute(vcpu, block)
        if count > 2:
            for key, value in counters.items():
                if value != before[key]:
                    counters[key] = value + (value - before[key]) * (count - 2)
        return first + second * (count - 1)

    def emulation_cycles(self, op: int) -> int:
        """The hypervisor's work to emulate one instruction; a hosted VMM crosses into the host
        OS and back for device access (a world switch each way)."""
        from vframework.machine.isa import Op

        cycles = self.costs.emulate
        if self.hosted and op in (Op.IN, Op.OUT):
            cycles += 2 * self.costs.world_switch
            self.vm.counters["world_switches"] += 2
        return cycles

    def special(self, ctx: Any, action: int, op: int, a: int, b: int) -> int:
        """Called by the interpreter for every instruction that is not executed directly."""
        from vframework.machine.cpu import Action, emulate
        from vframework.machine.isa import Op

        counters = self.vm.counters
        if action == Action.FAULT:
            name = "divide_error" if op == Op.DIV else ("invalid_opcode" if op == Op.HYPERCALL
                                                         else "general_protection")
            return self._fault(ctx, name)
        if action == Action.HYPERCALL:
            assert self._vcpu is not None
            return self.hypercall(self._vcpu, ctx, a, b)
        emulate(ctx, op, a, b)
        counters["instructions_emulated"] += 1
        if action == Action.TRAP:
            counters["traps"] += 1
            return self.costs.trap + self.emulation_cycles(op)
        if action == Action.EXIT:
            reason = self.arch.exits.get(op, "exception")
            counters["vm_exits"] += 1
            counters[f"vm_exits_{reason}"] += 1
            return self.costs.vm_exit + self.emulation_cycles(op)
        if action == Action.CALLOUT:
            counters["bt_callouts"] += 1
            if op in (Op.CLI, Op.STI, Op.POPF, Op.PUSHF, Op.SGDT, Op.SIDT, Op.SMSW):
                return self.costs.bt_inline  # rewritten as a few instructions on the virtual CPU
            cycles = self.costs.bt_call
            if op in (Op.IN, Op.OUT):  # device emulation still has to happen
                cycles += self.emulation_cycles(op)
            return cycles
        raise ValueError(f"mode {self.name!r}: unknown action {action} for {Op(op).name}")

    def _fault(self, ctx: Any, name: str) -> int:
        """A processor exception raised by guest code: vectored to the guest's handler."""
        assert self._vcpu is not None
        ctx.log.append(("fault", name))
        cycles = self.hypervisor.deliver(self._vcpu, "exception", 1)
        if self.kernel is not None:
            cycles += self.execute(self._vcpu, self.kernel.exception_handler)
        return cycles

    def interrupt(self, ctx: Any) -> int:
        """Deliver the oldest pending external interrupt to the guest (its IF is set)."""
        from vframework.machine.cpu import EOI_PORT
        from vframework.machine.isa import IF_FLAG

        assert self._vcpu is not None
        vector = ctx.pending.pop(0)
        ctx.log.append(("irq", vector))
        timer = vector == EOI_PORT
        cycles = self.hypervisor.deliver(self._vcpu, "timer" if timer else "device", 1)
        saved = ctx.flags
        ctx.flags &= ~IF_FLAG  # interrupt gates clear IF on entry...
        if self.kernel is not None:
            cycles += self.execute(self._vcpu, self.kernel.timer_handler if timer else self.kernel.device_handler)
        ctx.flags = saved  # ...and IRET restores it (the deliverer emulates the return)
        return cycles


class Device(Component):
    """A virtual device: a guest-facing model and a host backend."""

    kind = "device"

    def __init__(self, params: Params, vm: VM, hypervisor: Hypervisor) -> None:
        self.params = params
        self.vm = vm
        self.hypervisor = hypervisor


class WorkloadContext:
    """What a workload may know about where it runs."""

    def __init__(
        self, vm_name: str, vcpu: int, memory_pages: int, rng: np.random.Generator,
        clock_hz: int = 3_000_000_000,
    ) -> None:
        self.vm_name = vm_name
        #: The host clock, to turn durations into cycles.
        self.clock_hz = clock_hz
        self.vcpu = vcpu
        self.memory_pages = memory_pages
        #: The workload's own random stream (named after the VM and vCPU).
        self.rng = rng

    def cycles(self, ns: int) -> int:
        """Cycles in ``ns`` nanoseconds at the host clock (at least 1)."""
        return max(1, ns * self.clock_hz // 1_000_000_000)


class Workload(Component):
    """What runs inside a guest: a generator of :mod:`vframework.guest.ops` operations.

    One instance runs per vCPU. The generator receives nothing back; it ends when the work
    is done (the vCPU then halts).
    """

    kind = "workload"

    def __init__(self, params: Params, context: WorkloadContext) -> None:
        self.params = params
        self.context = context

    @classmethod
    def check(cls, params: Params, vm_memory_pages: int, swap_pages: int = 0) -> list[tuple[str, str]]:
        """Problems with these parameters for one process: (key, message) pairs.

        Each vCPU runs its own process, so ``vm_memory_pages`` and ``swap_pages`` are one
        vCPU's share of the VM's memory and swap (the whole VM's when it has one vCPU).
        """
        return []

    def address_space_pages(self) -> int:
        """Virtual pages the process needs (its page table's size)."""
        return 0

    def run(self) -> Generator[Operation, Any, None]:
        """Yield operations until the work is done."""
        raise NotImplementedError
