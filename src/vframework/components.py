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

from .ops import Operation

if TYPE_CHECKING:
    from .hypervisor import Hypervisor
    from .vm import VCPU, VM

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

    One instance per VM, so modes mix freely on a host. Each method returns the cycles the
    operation cost and updates the VM's counters.
    """

    kind = "mode"
    #: Back every guest-physical page with a machine frame when the VM is created (no
    #: hypervisor to do it lazily); otherwise frames are allocated on first touch.
    preallocate: ClassVar[bool] = False

    def __init__(self, params: Params, vm: VM, hypervisor: Hypervisor) -> None:
        self.params = params
        self.vm = vm
        self.hypervisor = hypervisor

    def deliver(self, vcpu: VCPU, kind: str, count: int) -> int:
        """``count`` program discontinuities of ``kind`` (one of :data:`DISCONTINUITIES`)
        delivered to the guest kernel and handled by it: the cost of getting there and back."""
        raise NotImplementedError

    def hidden_fault(self, vcpu: VCPU, count: int) -> int:
        """``count`` accesses found no machine frame behind their PPN; the hypervisor backed them."""
        raise NotImplementedError

    def translate(self, vcpu: VCPU, vpns: np.ndarray, ppns: np.ndarray, write: bool) -> int:
        """Memory references to ``vpns`` (already mapped to ``ppns`` by the guest)."""
        raise NotImplementedError

    def io(self, vcpu: VCPU, device: str, nbytes: int, write: bool) -> int:
        """The guest driver submitting one I/O request (the device time is separate)."""
        raise NotImplementedError


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
    """What runs inside a guest: a generator of :mod:`vframework.ops` operations.

    One instance runs per vCPU. The generator receives nothing back; it ends when the work
    is done (the vCPU then halts).
    """

    kind = "workload"

    def __init__(self, params: Params, context: WorkloadContext) -> None:
        self.params = params
        self.context = context

    @classmethod
    def check(cls, params: Params, vm_memory_pages: int) -> list[tuple[str, str]]:
        """Problems with these parameters for a VM of this size: (key, message) pairs."""
        return []

    def address_space_pages(self) -> int:
        """Virtual pages the process needs (its page table's size)."""
        return 0

    def run(self) -> Generator[Operation, Any, None]:
        """Yield operations until the work is done."""
        raise NotImplementedError
