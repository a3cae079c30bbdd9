"""The plugin contract: one abstract base class per plugin kind.

A component is a class with a registered ``name``, a one-line ``description`` and a pydantic
``params_model`` for the parameters a scenario may give it (``scheduler = { name = "credit",
tslice = "30ms" }``). Host-level kinds (scheduler, memory policy) may also declare a
``vm_params_model``: the per-VM scenario keys they understand (``shares``, ``weight``...); a VM
key that no chosen component understands is a validation error naming the component.

Each base is generic over its parameter model (``class Credit(Scheduler[CreditParams])`` gives
``self.params: CreditParams``). What a kind must implement is an ``@abstractmethod``: a class
that leaves one out is refused when its plugin registers. The kernel calls these methods
directly on hot paths; pluggy is used only to find the classes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Generator, Sequence
from decimal import Decimal
from fractions import Fraction
from typing import ClassVar, Generic, TypeVar

from vframework.api.params import Params
from vframework.api.pricing import LedgerLine
from vframework.api.views import (
    DeviceContext,
    MemoryContext,
    ModeContext,
    VCPUView,
    VMView,
    WorkloadContext,
)
from vframework.guest.mm import ContentLayout
from vframework.guest.ops import IORequest, Operation
from vframework.machine.costs import CostModel
from vframework.machine.cpu import Action, GuestCPU
from vframework.machine.isa import Architecture, Block

__all__ = [
    "DISCONTINUITIES",
    "KINDS",
    "PAGING",
    "Billing",
    "Component",
    "Device",
    "MemoryPolicy",
    "MemoryService",
    "Mode",
    "Scheduler",
    "Workload",
]

#: The plugin kinds, in the order they are listed everywhere.
KINDS = ("scheduler", "memory_policy", "memory_service", "mode", "device", "workload", "billing")

#: Program discontinuities the hypervisor fields and delivers to a guest as virtual interrupts.
DISCONTINUITIES = ("syscall", "page_fault", "exception", "device", "timer")

#: How the hardware translates a VM's addresses: the guest's own table (bare metal,
#: para-virtual direct paging), hypervisor-kept VPN -> MPN shadow tables, or nested paging.
PAGING = ("native", "shadow", "nested")

#: A component's parameter model. Covariant: parameters are frozen once validated, so a
#: ``Scheduler[CreditParams]`` is a ``Scheduler[Params]`` (what the kernel holds).
P_co = TypeVar("P_co", bound=Params, covariant=True)


class Component(ABC, Generic[P_co]):
    """What every component class declares."""

    #: The registered name a scenario uses (``"fair"``, ``"memory"``...).
    name: ClassVar[str] = ""
    #: One of :data:`KINDS`; set by the kind's base class.
    kind: ClassVar[str] = ""
    #: One line for ``vframework plugins`` and the docs.
    description: ClassVar[str] = ""
    #: The model of the parameters accepted from the scenario's component table.
    params_model: ClassVar[type[Params]] = Params
    #: The model of the per-VM scenario keys this component understands (host-level kinds).
    vm_params_model: ClassVar[type[Params] | None] = None
    #: Conformance properties this component is known to fail, by property name, with the
    #: reason (``{"fairness": "Xen's credit bounds discard credit"}``): ``vframework check`` and
    #: the pytest plugin report them as known limitations (xfail), not as failures.
    known_limitations: ClassVar[dict[str, str]] = {}

    params: P_co


class Scheduler(Component[P_co]):
    """Decides which vCPU runs on which physical CPU, for how long, and charges the time.

    The hypervisor calls :meth:`attach` once per vCPU, then :meth:`wake` / :meth:`block` as
    vCPUs become runnable or not, :meth:`pick` whenever a physical CPU needs work, and
    :meth:`charge` with the ns a vCPU ran when it leaves the CPU. :meth:`tick` runs every
    :attr:`tick_ns` if that is non-zero.
    """

    kind = "scheduler"
    #: Whether the scheduler promises never to idle a CPU while an uncapped vCPU waits.
    work_conserving: ClassVar[bool] = True
    #: The ``vm_params_model`` field that carries a VM's share (``"shares"``, ``"weight"``), so
    #: the conformance kit can vary it; None when shares are not configurable.
    share_param: ClassVar[str | None] = None
    #: The ``vm_params_model`` field that caps a VM's CPU, in percent of one physical CPU (0 =
    #: no cap): ``"cap"``, ``"limit"``; None when the scheduler has no caps.
    cap_param: ClassVar[str | None] = None
    #: The ``vm_params_model`` field that guarantees a VM's CPU, in percent of one physical CPU
    #: (0 = none): ``"reservation"``; None when the scheduler has no reservations.
    reservation_param: ClassVar[str | None] = None
    #: Whether VMs of equal weight get equal CPU time; False says the scheduler promises no
    #: fairness (the kit then shows fairness as not applicable instead of checking it).
    fair: ClassVar[bool] = True
    #: Period of :meth:`tick` in ns (0: no tick).
    tick_ns: int = 0

    def __init__(self, params: P_co, cpus: int) -> None:
        self.params = params
        self.cpus = cpus

    @abstractmethod
    def attach(self, vcpu: VCPUView, vm_params: Params | None) -> None:
        """A new vCPU exists (not yet runnable); ``vm_params`` are its VM's per-VM keys."""

    @abstractmethod
    def detach(self, vcpu: VCPUView) -> None:
        """A vCPU is gone for good (its VM was destroyed or halted)."""

    @abstractmethod
    def wake(self, vcpu: VCPUView, now: int) -> Sequence[int]:
        """``vcpu`` became runnable; return the physical CPUs that should be preempted now."""

    @abstractmethod
    def block(self, vcpu: VCPUView, now: int) -> None:
        """``vcpu`` stopped being runnable (it blocked, halted or left the CPU for good)."""

    @abstractmethod
    def pick(self, cpu: int, now: int) -> tuple[VCPUView | None, int]:
        """The runnable vCPU to run next on physical CPU ``cpu`` and its slice in ns.

        The vCPU (one of those attached) is removed from the run queue; return ``(None, 0)``
        to leave the CPU idle.
        """

    @abstractmethod
    def charge(self, vcpu: VCPUView, ran_ns: int, now: int, runnable: bool) -> None:
        """``vcpu`` ran ``ran_ns`` and left its CPU; when ``runnable`` it goes back to the queue."""

    def tick(self, now: int) -> Sequence[int]:
        """Periodic accounting; return the physical CPUs to preempt."""
        return ()

    def capped(self, vcpu: VCPUView) -> bool:
        """Whether the vCPU may be kept off idle CPUs on purpose (a cap or limit applies)."""
        return False

    def set_vm_params(self, vcpu: VCPUView, vm_params: Params | None) -> None:
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

    def liveness_bound_ns(self, vcpus: int) -> int | None:
        """How long (ns) a runnable vCPU of an uncapped VM may wait before it runs, with ``vcpus``
        vCPUs on the host; None: the conformance kit's default (one simulated second)."""
        return None

    def cap_window_ns(self) -> int:
        """The window (ns) over which caps and reservations hold: in every window of this length
        a capped VM runs at most ``cap`` percent of it (plus :meth:`cap_slack_ns`), and a VM that
        stays runnable runs at least its ``reservation`` (less the slack)."""
        return 1_000_000_000

    def cap_slack_ns(self, vcpus: int) -> int:
        """How far (ns) a VM of ``vcpus`` vCPUs may pass its cap, or fall short of its reservation,
        within one :meth:`cap_window_ns` (what one accounting period lets through)."""
        return vcpus * self.cap_window_ns() // 10

    def accounted_ns(self, vcpu: VCPUView) -> int | None:
        """The CPU time the scheduler's own accounting has charged ``vcpu`` so far (credits
        debited, virtual time advanced, converted to ns); None when it keeps no such account.
        The kit checks it equals the time the vCPU ran."""
        return None


class MemoryPolicy(Component[P_co]):
    """Decides each VM's memory target (pages) from its configuration and activity."""

    kind = "memory_policy"
    #: Whether the sum of VM memory may exceed the host's (needs reclamation to work).
    can_overcommit: ClassVar[bool] = False
    #: How often :meth:`targets` runs, in ns (0: only at start).
    period_ns: int = 0
    #: Whether the policy estimates each VM's active memory itself (it then sets ``mem_active``;
    #: otherwise the sampler counts the pages referenced between samples).
    estimates_active: ClassVar[bool] = False

    def __init__(self, params: P_co) -> None:
        self.params = params

    @abstractmethod
    def targets(self, memory: MemoryContext, now: int) -> dict[int, int]:
        """VM id -> target in pages."""

    def bounds(self, vm: VMView) -> tuple[int, int]:
        """The VM's ``mem_min`` and ``mem_max``, in pages: the memory it is guaranteed and the
        most it may hold. Asked once, when the VM is added. The kernel keeps the guarantee for
        every service: hypervisor swap and reclaim never take a VM's pages below its min, and
        its balloon never holds more than its memory less its min. A service that enforces
        limits (``host-swap``) pages a VM above its max down to it. ``(0, vm.memory_pages)``
        by default."""
        return 0, vm.memory_pages

    @classmethod
    def admit(cls, params: Params, host_pages: int, vms: list[tuple[str, int, Params | None]]) -> list[str]:
        """Admission control, before a run starts: problems with starting these VMs (name,
        memory pages, the VM's policy parameters) on a host with ``host_pages`` pages for VMs;
        each a message naming the VM. None by default."""
        return []


class MemoryService(Component[P_co]):
    """Reclaims or saves machine frames (ballooning, page sharing, swap); runs periodically."""

    kind = "memory_service"
    #: How often :meth:`run` runs, in ns.
    period_ns: int = 1_000_000_000
    #: Whether each :meth:`run` pages every VM holding more than its ``mem_max`` down to it
    #: (``host-swap`` does): the kit then checks that a run leaves no VM above its max with a
    #: page it could have taken (private, not pinned).
    holds_limits: ClassVar[bool] = False

    def __init__(self, params: P_co) -> None:
        self.params = params

    @abstractmethod
    def run(self, memory: MemoryContext, now: int) -> int:
        """Do one period's work; return the cycles of hypervisor time it took."""

    def reclaim_now(self, memory: MemoryContext, pages: int, exclude: int) -> int:
        """A page fault found no free frame: free at least ``pages`` frames now if this service
        can (hypervisor swap can; a balloon cannot, it waits for its guest), taking none from
        VM ``exclude`` (the one faulting, whose reference is in flight). Returns frames freed."""
        return 0

    @classmethod
    def kit_params(cls) -> P_co:
        """The parameters the conformance kit runs the service with: its defaults, unless they
        make a few calls of :meth:`run` do nothing (a scanner that covers memory in an hour)."""
        return cls.params_model()  # type: ignore[return-value]


class Mode(Component[P_co]):
    """How one VM's privileged operations, memory and I/O reach the hypervisor (or hardware).

    A mode is policy: it classifies every opcode once (:meth:`classify`, for kernel and for
    user code), says what each program discontinuity, hidden fault, page-table write and I/O
    request costs, and which :data:`PAGING` the hardware uses. The kernel's monitor does the
    rest (interpreting guest blocks, emulation, shadow tables, TLBs) and calls back here only
    for what leaves direct execution. Every method returns cycles; a mode counts what it does
    in ``self.context.counters``. One instance per VM, so modes mix freely on a host.
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
    #: One of :data:`PAGING`; a mode may also choose it from its parameters in ``__init__``.
    paging: str = "native"

    def __init__(self, params: P_co, context: ModeContext) -> None:
        self.params = params
        self.context = context

    @property
    def costs(self) -> CostModel:
        """The host's cost model (shorthand for ``self.context.costs``)."""
        return self.context.costs

    @property
    def arch(self) -> Architecture:
        """The VM's architecture (shorthand for ``self.context.arch``)."""
        return self.context.arch

    @abstractmethod
    def classify(self, op: int, kernel: bool) -> Action:
        """The :class:`~vframework.api.Action` for opcode ``op`` in kernel (or user) code."""

    @abstractmethod
    def deliver(self, vcpu: VCPUView, kind: str, count: int) -> int:
        """``count`` program discontinuities of ``kind`` (one of :data:`DISCONTINUITIES`)
        vectored into the guest kernel: the cost of getting there and back (the handler's own
        instructions are executed and costed separately)."""

    @abstractmethod
    def hidden_fault(self, vcpu: VCPUView, count: int) -> int:
        """``count`` accesses found no machine frame behind their PPN; the hypervisor backed them."""

    @abstractmethod
    def io(self, vcpu: VCPUView, device: str, nbytes: int, write: bool) -> int:
        """Moving one request's data between the guest and the device (copies, if any)."""

    def shadow_fault_cycles(self, count: int, dirty: bool) -> int:
        """What ``count`` faults the shadow MMU takes for itself cost (shadow paging only): a
        reference whose shadow entry is missing (the hypervisor fills it from the guest's page
        table, unseen by the guest), or with ``dirty`` a first write to a clean page (the
        hypervisor sets the dirty bit in the guest's entry). By default a trap each, as a
        software hypervisor takes them."""
        costs = self.costs
        return count * (costs.trap + (costs.shadow_update if dirty else costs.emulate))

    def pte_write_cycles(self, count: int) -> int:
        """What ``count`` guest page-table-entry writes cost beyond the stores themselves: a trap
        or exit per write (shadow paging), a validated batch (para-virtual), or nothing."""
        return 0

    def address_space_cycles(self, table_pages: int) -> int:
        """What a guest address space's life costs the mode beyond its faults and page-table
        writes, charged once when it goes: ``table_pages`` is how many page-table pages it had
        (one top-level table and a leaf table per 4 MiB it mapped). Xen pins them when the
        address space is made and unpins them when it goes, validating every entry each time."""
        return 0

    def before_block(self, vcpu: VCPUView, block: Block) -> int:
        """Work before a block runs (a binary translator translates it here on first sight)."""
        return 0

    def notify_backend(self, vcpu: VCPUView) -> int:
        """A guest driver tells its device's back end that requests wait (an event-channel send
        to the driver domain). By default a hypercall; a hardware-assisted mode exits, bare
        metal writes a doorbell register."""
        self.context.counters["hypercalls"] += 1
        return self.costs.hypercall

    def hypercall(self, vcpu: VCPUView, ctx: GuestCPU, number: int, arg: int) -> int:
        """An explicit hypercall (para-virtual modes); elsewhere it is an invalid instruction."""
        return self.context.fault(ctx, "invalid_opcode")


class Device(Component[P_co]):
    """A virtual device: the guest's driver (front end) and the hypervisor's model of the
    device (back end), attached to one VM.

    A VM attaches devices in the scenario (``devices = ["ring-block"]``); a workload's
    :class:`~vframework.guest.ops.IO` operations for ``device = "disk"`` go to the attached
    device that :attr:`serves` ``"disk"``. For each request the guest OS enters its kernel (a
    system call) and calls :meth:`submit`, which returns the cycles the driver spends on the
    vCPU (its code, the traps or exits it causes, copies); the vCPU then blocks until the
    device has called ``context.complete`` for every request of the operation. Everything a
    device may do to its VM goes through its :class:`~vframework.api.DeviceContext`: timers,
    interrupts, event channels, grants, pinning, and reading or writing guest pages.
    """

    kind = "device"
    #: The name workloads use for it (``IO(device=...)``): ``"disk"`` or ``"net"``.
    serves: ClassVar[str] = "disk"
    #: Data moves by grants (mapped by the back end), never by copies: the conformance kit
    #: checks ``io_bytes_copied`` stays 0.
    zero_copy: ClassVar[bool] = False

    def __init__(self, params: P_co, context: DeviceContext) -> None:
        self.params = params
        self.context = context

    @abstractmethod
    def submit(self, vcpu: VCPUView, request: IORequest) -> int:
        """The guest's driver queues ``request`` on the vCPU; returns the cycles it costs the
        vCPU now. The device completes it later with ``context.complete(request)``, exactly
        once."""

    def storage_bytes(self) -> int:
        """Bytes of storage the device provisions for its VM (a disk's capacity; 0 for a NIC):
        what the meter bills as storage over time."""
        return 0

    def flush(self, vcpu: VCPUView) -> int:
        """The driver has queued an operation's requests: publish them (a ring push and its
        notification); returns the cycles. Called once per operation, after its submits."""
        return 0

    @classmethod
    def kit_params(cls) -> P_co:
        """The parameters the conformance kit runs the device with (its defaults unless they
        need more guest memory than the kit's small VMs have)."""
        return cls.params_model()  # type: ignore[return-value]


class Workload(Component[P_co]):
    """What runs inside a guest: a generator of :mod:`vframework.guest.ops` operations.

    One instance runs per vCPU. The generator receives nothing back; it ends when the work
    is done (the vCPU then halts).
    """

    kind = "workload"

    def __init__(self, params: P_co, context: WorkloadContext) -> None:
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

    def content_layout(self) -> ContentLayout | None:
        """What the process's pages hold when first touched: image, zero, private and volatile
        regions (see :class:`~vframework.api.ContentLayout`). None: every page starts zero."""
        return None

    @abstractmethod
    def run(self) -> Generator[Operation, None, None]:
        """Yield operations until the work is done."""


class Billing(Component[P_co]):
    """How metered use becomes money: an amount for each line of the ledger.

    The kernel meters every VM's use of each resource of
    :data:`~vframework.api.pricing.RESOURCES` per billing interval, in integer base units, and
    hands each (interval, VM, resource) line to :meth:`charge` in order: interval by interval,
    VM by VM. The line carries the price sheet's rate (``[billing.prices]``), so the simplest
    pricing returns ``line.list_amount``; tiered or reserved pricing uses ``line.used_before``
    and its own parameters. The kernel rounds each amount half-even to the scenario's
    ``billing.decimals`` places once, and every total is a sum of rounded lines, so invoices
    add up to the cent.
    """

    kind = "billing"

    def __init__(self, params: P_co) -> None:
        self.params = params

    @classmethod
    def kit_params(cls) -> P_co:
        """The parameters the conformance kit prices with (its defaults; a pricing whose defaults
        do nothing special should return parameters that exercise it)."""
        return cls.params_model()  # type: ignore[return-value]

    @abstractmethod
    def charge(self, line: LedgerLine) -> Decimal | Fraction | int:
        """The amount for ``line``: a finite, non-negative Decimal, Fraction or int (never a
        float). A zero quantity should cost nothing, unless the pricing bills a flat fee."""
