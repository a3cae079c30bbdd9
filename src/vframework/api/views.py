"""What each plugin kind may see and do: narrow views of the kernel's objects and the
contexts the kernel hands to components. Components never receive the hypervisor itself.

The kernel's own classes satisfy these protocols structurally; a plugin types its arguments
with them, so that it depends on the contract only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NotRequired, Protocol, TypedDict, TypeVar

import numpy as np

from vframework.guest.ops import IORequest
from vframework.io.events import EventChannels
from vframework.io.grants import GrantTable
from vframework.machine.costs import CostModel
from vframework.machine.cpu import GuestCPU
from vframework.machine.isa import Architecture
from vframework.sim.engine import Engine

if TYPE_CHECKING:
    import numpy.typing as npt

_T = TypeVar("_T")

__all__ = [
    "ComponentsSummary",
    "DeviceContext",
    "MemoryContext",
    "ModeContext",
    "ScenarioView",
    "SimulationView",
    "Summary",
    "TimeseriesRow",
    "VCPUView",
    "VMComponents",
    "VMView",
    "WorkloadContext",
]


class VMView(Protocol):
    """What a component may read of a VM (a domain)."""

    #: The VM's number on its host (0, 1, ...; Xen's domain id).
    id: int
    #: Its name in the scenario.
    name: str
    #: Guest-physical memory, in pages.
    memory_pages: int
    #: Its counters (metric name -> value); a mode adds to its virtualization counters.
    counters: dict[str, int]
    #: Its parameters for the memory policy (the policy's ``vm_params_model``), or None.
    policy_params: Any
    #: Whether a page-sharing service may share its pages (``[[vm]] share_pages``; libvirt's
    #: ``nosharepages`` turns it off): a sharing service leaves a VM without it alone.
    share_pages: bool
    #: The memory it is guaranteed and the most it may hold, in pages (the memory policy's
    #: :meth:`~vframework.api.MemoryPolicy.bounds`; 0 and ``memory_pages`` unless it sets them).
    mem_min: int
    mem_max: int

    @property
    def vcpus(self) -> Sequence[VCPUView]:
        """The VM's vCPUs."""
        ...


class VCPUView(Protocol):
    """What a scheduler or mode may see of a virtual CPU."""

    #: ``"vmname/vcpuN"``.
    name: str
    #: N in ``vcpuN``: its index within its VM.
    index: int
    #: A free slot for the scheduler's own per-vCPU state (whatever object the scheduler keeps
    #: there: only it reads the slot back).
    sched: Any

    @property
    def vm(self) -> VMView:
        """The VM this vCPU belongs to."""
        ...


class ModeContext(Protocol):
    """What a virtualization mode is given: the machine it models and the hypervisor's entry
    points a mode may call. One per VM."""

    #: The CPU architecture the VM runs on: which instructions are privileged, sensitive,
    #: sensitive but unprivileged, and which cause VM exits.
    arch: Architecture
    #: The host's cost model (cycles per mechanism).
    costs: CostModel
    #: Whether the hypervisor is hosted (runs on a host OS: device access crosses worlds).
    hosted: bool
    #: The VM's counters: a mode adds what it does (``traps``, ``hypercalls``, ``vm_exits``...).
    counters: dict[str, int]

    def hypercall(self, vcpu: VCPUView, ctx: GuestCPU, number: int, arg: int) -> int:
        """Enter the hypervisor with an explicit hypercall (validated, performed or refused;
        the result lands in the guest's ``hcr`` register). Returns cycles."""
        ...

    def fault(self, ctx: GuestCPU, name: str) -> int:
        """Raise processor exception ``name`` into the guest (vectored to its handler). Returns
        cycles."""
        ...


class MemoryContext(Protocol):
    """What a memory policy or memory service is given: a read-only view of every VM's memory
    state and the operations it may perform on it."""

    #: Machine frames not owned by anyone.
    @property
    def free_frames(self) -> int:
        """Machine frames free now."""
        ...

    @property
    def vms(self) -> Sequence[VMView]:
        """The running VMs, in creation order."""
        ...

    def p2m(self, vm_id: int) -> npt.NDArray[np.int32]:
        """A read-only copy of VM ``vm_id``'s P2M (PPN -> MPN, -1 where unbacked)."""
        ...

    def grant(self, vm_id: int, ppns: npt.ArrayLike) -> int:
        """Back these guest-physical pages with machine frames; returns how many were backed."""
        ...

    def reclaim(self, vm_id: int, ppns: npt.ArrayLike) -> int:
        """Take the machine frames behind these pages back (TLBs and shadow entries to them
        are shot down first); returns how many were reclaimed. Pinned pages, and any that
        would take the VM below its ``mem_min``, are not."""
        ...

    def set_target(self, vm_id: int, pages: int) -> None:
        """Set the VM's memory target (``mem_target``; a balloon driver works towards it)."""
        ...

    @property
    def total_frames(self) -> int:
        """Machine frames the VMs may use (the host's, less the hypervisor's own)."""
        ...

    def watch(self, vm_id: int, ppns: npt.ArrayLike) -> None:
        """Sample these pages of the VM for activity (ESX's statistical sampling): their
        mappings are invalidated, so the next reference to each is seen. Replaces the
        previous sample."""
        ...

    def touched(self, vm_id: int, ppns: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Which of the sampled pages the VM referenced since :meth:`watch`."""
        ...

    def hold(self, vm_id: int, held: bool) -> None:
        """Block the VM's vCPUs (``held``) or let them run again: ESX's low memory state blocks
        the VMs above their targets until reclamation catches up. Time held is the VM's
        ``mem_blocked_ns``."""
        ...

    def referenced(self, vm_id: int) -> npt.NDArray[np.bool_]:
        """The hardware accessed bit of each of the VM's pages (nested paging's A bits, or the
        shadow tables'): set by every reference since the previous call, which clears them.
        Tracking starts at the first call (which returns no page referenced); what a hypervisor
        has to approximate LRU, since it cannot see which guest pages matter."""
        ...

    def balloon(self, vm_id: int, pages: int) -> int:
        """Ask the VM's balloon driver to inflate by ``pages`` (negative: deflate); returns the
        pages moved. Inflating frees the frames of the pages it takes (free guest pages first,
        then pages the guest swaps out); a VM with no driver moves none, a slow one a tenth.
        A balloon never grows past the VM's memory less its ``mem_min``."""
        ...

    def swap_out(self, vm_id: int, ppns: npt.ArrayLike, read_ns: int) -> int:
        """Page the VM's pages out to the host's swap device, behind the guest's back; returns
        how many. Unbacked, shared and pinned pages are skipped, and so are any that would take
        the VM below its ``mem_min``. The guest's next reference to one is a hidden fault that
        reads it back (content intact) and stalls the VM ``read_ns``."""
        ...

    @property
    def counters(self) -> dict[str, int]:
        """The host's counters: a service adds to those it reports (``pages_unshared``,
        ``pages_volatile``, ``full_scans``, ``pages_scanned``, ``hint_frames``)."""
        ...

    def rng(self, name: str) -> np.random.Generator:
        """The run's random stream ``name``: the same seed gives the same draws."""
        ...

    def backing(self, vm_id: int, ppns: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """The machine frame (MPN) behind each of the VM's pages, -1 where unbacked."""
        ...

    def content(self, mpns: npt.ArrayLike) -> npt.NDArray[np.uint64]:
        """Each frame's 64-bit content token: equal tokens are equal 4 KiB pages. Hash it for a
        table key; compare tokens for the full comparison."""
        ...

    def frame_state(self, mpns: npt.ArrayLike) -> npt.NDArray[np.uint8]:
        """Each frame's state: 0 free, 1 private, 2 shared copy-on-write, 3 the hypervisor's."""
        ...

    def refcount(self, mpns: npt.ArrayLike) -> npt.NDArray[np.int32]:
        """Each frame's mappings: 1 for a private frame, n for a frame shared n ways."""
        ...

    def pinned_frames(self, vm_id: int) -> npt.NDArray[np.int64]:
        """The VM's frames that must stay where they are (under I/O, or a para-virtual guest's
        page tables and the frames they name): swap, reclaim and sharing skip them."""
        ...

    def share(self, vm_id: int, ppns: npt.ArrayLike, mpns: npt.ArrayLike) -> int:
        """Map the VM's pages ``ppns`` onto frames ``mpns`` copy-on-write; returns how many.

        Each page's own frame is released; a private target frame becomes shared. Pinned pages
        (a para-virtual guest's page tables), unbacked pages and pages already on their target
        are skipped. Raises ValueError if a page's content differs from its target's: a hash
        match is only a hint, and the full comparison is the service's job."""
        ...


class DeviceContext(Protocol):
    """What a virtual device is given: its VM, time, interrupts, event channels, grants, and
    the guest pages its requests use. One per attached device."""

    #: The host's cost model.
    costs: CostModel
    #: The domain a back end runs as (the driver domain): the one the guest grants its pages to.
    backend_domid: int

    @property
    def vm(self) -> VMView:
        """The VM the device belongs to."""
        ...

    @property
    def now(self) -> int:
        """Simulated time, ns."""
        ...

    @property
    def counters(self) -> dict[str, int]:
        """The VM's counters (``io_bytes_copied``, ``io_errors``...)."""
        ...

    @property
    def events(self) -> EventChannels:
        """The VM's event channels (read their state; notify through :meth:`notify_guest`)."""
        ...

    @property
    def grants(self) -> GrantTable:
        """The VM's grant table: the guest's driver grants, the back end maps or copies."""
        ...

    def after(self, delay_ns: int, callback: Callable[[], None]) -> None:
        """Call ``callback()`` ``delay_ns`` from now (device time: seeks, transfers, wires)."""
        ...

    def raise_irq(self, cycles: int, then: Callable[[], None] | None = None) -> None:
        """A physical interrupt for this device's VM arrives now; servicing it takes ``cycles``;
        then ``then()`` runs."""
        ...

    def complete(self, request: IORequest) -> None:
        """``request`` is done: its vCPU wakes (with a device interrupt to handle) once every
        request of its operation is. Raises ValueError for a request completed twice."""
        ...

    def guest_routine(self, vcpu: VCPUView, routine: str, count: int = 1) -> int:
        """Run the guest kernel's ``routine`` (a :data:`~vframework.guest.ops.KERNEL_ROUTINES`
        name or ``"disk_request"``/``"ring_request"``) ``count`` times on the vCPU, as the
        VM's mode runs it (traps, exits, callouts); returns cycles."""
        ...

    def notify_backend(self, vcpu: VCPUView) -> int:
        """The driver kicks its back end (the mode decides the cost); returns cycles."""
        ...

    def bind_event(self, handler: Callable[[], None]) -> int:
        """Bind an event-channel port of the VM; ``handler()`` runs in the guest's upcall
        whenever the port's event is delivered. Returns the port."""
        ...

    def notify_guest(self, port: int) -> None:
        """Send an event to the guest on ``port`` (delivered now, coalesced or left pending
        while masked, by the event-channel rules)."""
        ...

    def mask_event(self, port: int, masked: bool) -> None:
        """The guest masks or unmasks ``port``; unmasking delivers a pending event."""
        ...

    def host_shared(self, key: str, factory: Callable[[], _T]) -> _T:
        """The host's one object under ``key`` (``factory()`` makes it on first use): what the
        devices of every VM share, such as the physical NIC and the software bridge."""
        ...

    def buffer_pages(self, count: int) -> npt.NDArray[np.int64]:
        """Reserve ``count`` guest-physical pages as the driver's I/O buffers (kernel memory,
        backed by frames); call once, at the device's first request."""
        ...

    def pin(self, ppns: npt.NDArray[np.int64]) -> None:
        """Pin the pages' frames while I/O is in flight: no memory service reclaims, shares or
        swaps them until :meth:`unpin`."""
        ...

    def unpin(self, ppns: npt.NDArray[np.int64]) -> None:
        """Undo one :meth:`pin` of each page."""
        ...

    def read_pages(self, ppns: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
        """The content tokens of guest pages (DMA from memory: a write request's data)."""
        ...

    def write_pages(self, ppns: npt.NDArray[np.int64], tokens: npt.NDArray[np.uint64]) -> None:
        """DMA into guest pages (a read request's data): each page gets its token; a shared
        page gets a private copy first."""
        ...

    def flip(self, ppns: npt.NDArray[np.int64], tokens: npt.NDArray[np.uint64]) -> None:
        """Page flipping: each page gets another machine frame, one already holding its token
        (the received data), and its old frame goes back to the host: frames are conserved and
        nothing is copied. The pages must not be pinned."""
        ...


class WorkloadContext:
    """What a workload may know about where it runs."""

    def __init__(
        self,
        vm_name: str,
        vcpu: int,
        memory_pages: int,
        rng: np.random.Generator,
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


class ScenarioView(Protocol):
    """What an observer may read of a validated scenario."""

    @property
    def name(self) -> str:
        """The scenario's name."""
        ...

    @property
    def config(self) -> Any:
        """The validated configuration (a :class:`vframework.run.scenario.ScenarioConfig`: the
        ``[host]`` table, the VMs, duration, seed...; the run layer's type, above this one)."""
        ...


#: One row of a run's time series: ``(time_ns, vm name, *metrics)``, the metrics in the order
#: of :data:`vframework.run.simulation.TIMESERIES_METRICS`.
TimeseriesRow = tuple[int, str, *tuple[int, ...]]


class VMComponents(TypedDict):
    """``summary["components"]["vms"][name]``: the components one VM was built from."""

    mode: str
    workload: str
    devices: list[str]


class ComponentsSummary(TypedDict):
    """``summary["components"]``: the registered names of every component of the run."""

    scheduler: str
    memory_policy: str
    memory_services: list[str]
    vms: dict[str, VMComponents]


class Summary(TypedDict):
    """A run's results as plain data, as written to summary.json."""

    scenario: str
    seed: int
    sim_time_ns: int
    #: ``{"name", "version"}`` of every installed plugin distribution (provenance).
    plugins: list[dict[str, str]]
    components: ComponentsSummary
    #: The host's counters (metric name -> value).
    host: dict[str, int]
    #: VM name -> its counters.
    vms: dict[str, dict[str, int]]
    #: Metering and billing (absent when ``billing.enabled`` is false): ``bill_*`` amounts as
    #: decimal strings and metered quantities per VM, the currency, interval and price sheet.
    billing: NotRequired[dict[str, Any]]


class SimulationView(Protocol):
    """What an observer may read of a run (lifecycle hooks receive it)."""

    #: The run's seed.
    seed: int
    #: The event engine: observers may schedule their own processes on it.
    engine: Engine
    #: The time series sampled so far: ``(time_ns, vm, *metrics)`` rows.
    timeseries: list[TimeseriesRow]
    #: The host's counters at each sample so far: ``(time_ns, *metrics)`` rows, the metrics in
    #: the order of :data:`vframework.run.simulation.HOST_TIMESERIES_METRICS`.
    host_timeseries: list[tuple[int, ...]]

    @property
    def scenario(self) -> ScenarioView:
        """The validated scenario."""
        ...

    @property
    def vms(self) -> Sequence[VMView]:
        """The VMs built from the scenario."""
        ...
