"""Virtual machines (domains) and their virtual CPUs."""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING, Any

import numpy as np

from vframework.guest.os import Then
from vframework.hv.metrics import new_vm_counters
from vframework.machine.cpu import GuestCPU

if TYPE_CHECKING:
    import numpy.typing as npt

    from vframework.api.contract import Device, Mode
    from vframework.api.params import Params
    from vframework.guest.os import GuestOS, GuestProcess
    from vframework.guest.runahead import RunAhead
    from vframework.hv.devices import VMIO
    from vframework.hv.monitor import Monitor

__all__ = ["UNBACKED", "VCPU", "VM", "VCPUState"]

#: P2M value of a guest-physical page with no machine frame behind it.
UNBACKED = -1


class VCPUState(IntEnum):
    """The four states of a vCPU."""

    RUNNING = 0
    RUNNABLE = 1
    BLOCKED = 2
    HALTED = 3


class VCPU:
    """One virtual CPU. Its guest process supplies work; the hypervisor gives it CPU time."""

    __slots__ = (
        "after",
        "cpu",
        "ctx",
        "held",
        "index",
        "io_flush",
        "io_outstanding",
        "last_cpu",
        "name",
        "pending_device",
        "pending_timer",
        "plan",
        "process",
        "ready_since",
        "remaining_ns",
        "run_start",
        "sched",
        "slice_end",
        "state",
        "vm",
        "wait_ns",
        "woke_at",
    )

    def __init__(self, vm: VM, index: int) -> None:
        self.vm = vm
        self.index = index
        self.name = f"{vm.name}/vcpu{index}"
        self.state = VCPUState.BLOCKED
        #: The physical CPU it is running on, or None; and the one it last ran on (None: never ran).
        self.cpu: int | None = None
        self.last_cpu: int | None = None
        self.process: GuestProcess | None = None
        #: ns left of the operation in progress (it resumes there after a preemption), or of
        #: the planned run while :attr:`plan` is set.
        self.remaining_ns = 0
        #: The operations it is running ahead (:class:`~vframework.guest.runahead.RunAhead`), or None.
        self.plan: RunAhead | None = None
        self.ready_since = 0
        self.slice_end = 0
        #: What happens when ``remaining_ns`` reaches 0.
        self.after = Then.NEXT
        #: When it was last dispatched (to charge the scheduler for the whole stay on a CPU).
        self.run_start = 0
        #: Virtual interrupts waiting to be delivered when the vCPU next runs.
        self.pending_device = 0
        self.pending_timer = 0
        #: When it last woke (for wake-up latency), or None once it has run.
        self.woke_at: int | None = None
        #: How long it blocks: the sleep, or the device time of the I/O request it waits on
        #: (-1: until its device completes every request in :attr:`io_outstanding`).
        self.wait_ns = 0
        #: Requests submitted to a device plugin and not completed yet, and the device that
        #: publishes them once the driver's code has run (see GuestOS.submit_io).
        self.io_outstanding = 0
        self.io_flush: Any = None
        #: The guest-visible CPU state (registers, flags, virtual privileged registers).
        self.ctx = GuestCPU()
        #: Blocked because its VM is held (it runs again when the VM is let go).
        self.held = False
        #: Free slot for the scheduler's per-vCPU state (any object: only the scheduler reads it).
        self.sched: Any = None

    def __repr__(self) -> str:
        return f"<VCPU {self.name} {self.state.name}>"


class VM:
    """A virtual machine: its configuration, vCPUs, guest OS, mode, P2M and counters."""

    def __init__(
        self,
        vm_id: int,
        name: str,
        vcpus: int,
        memory_pages: int,
        scheduler_params: Params | None = None,
        policy_params: Params | None = None,
        swap_pages: int = 0,
        image: str = "linux",
    ) -> None:
        self.id = vm_id
        self.name = name
        self.memory_pages = memory_pages
        #: Pages of swap area on the guest's virtual disk.
        self.swap_pages = swap_pages
        #: The disk image it boots from: VMs with the same image hold identical image pages.
        self.image = image
        self.scheduler_params = scheduler_params
        self.policy_params = policy_params
        self.vcpus = [VCPU(self, i) for i in range(vcpus)]
        #: PPN -> MPN; UNBACKED where no machine frame backs the page (int32: MPNs < 2**31, 8 TiB
        #: of 4 KiB frames).
        self.p2m: npt.NDArray[np.int32] = np.full(memory_pages, UNBACKED, dtype=np.int32)
        self.counters = new_vm_counters()
        self.counters["mem_target"] = memory_pages
        #: Pages guaranteed and the most it may hold (the memory policy's bounds, set when the
        #: VM is added): swap and balloon never take it below its min.
        self.mem_min = 0
        self.mem_max = memory_pages
        #: The VM's virtualization mode (policy) and the monitor that runs it.
        self.mode: Mode[Params] | None = None
        self.monitor: Monitor | None = None
        self.guest: GuestOS | None = None
        self.devices: dict[str, Device[Params]] = {}
        #: Statistical sampling of active memory (ESX): pages whose next reference the
        #: hypervisor sees (their mappings invalidated), and those referenced since. None until
        #: a memory policy samples this VM.
        self.watch: npt.NDArray[np.bool_] | None = None
        self.touched: npt.NDArray[np.bool_] | None = None
        #: The hardware accessed bit of each page (set by every reference), once a memory
        #: service reads them; None until then, so that nobody pays for them unasked.
        self.accessed: npt.NDArray[np.bool_] | None = None
        #: Hypervisor swap: the pages whose frames the hypervisor paged out (None until one is),
        #: their contents, what reading one back costs, and the stall the VM owes for reads.
        self.host_swapped: npt.NDArray[np.bool_] | None = None
        self.host_swap_content: npt.NDArray[np.uint64] | None = None
        self.host_swap_read_ns = 0
        self.stall_ns = 0
        #: Whether its guest runs a balloon driver: "on", "slow" (a tenth of the rate) or "off".
        self.balloon_driver = "on"
        #: Bytes its guest kernel sets aside per page of memory for its page frame table.
        self.page_struct_bytes = 0
        #: Its guest kernel's timer: ticks per second on each vCPU (0: no timer, as a bare test
        #: kernel; a scenario's VMs default to 250), and whether the kernel is tickless (no ticks
        #: while a vCPU is idle, as Linux's NO_HZ_IDLE).
        self.hz = 0
        self.tickless = False
        #: Whether page-sharing services may share its pages (libvirt's nosharepages: False).
        self.share_pages = True
        #: Since when the hypervisor holds the VM (its vCPUs may not run: ESX's low memory
        #: state blocks VMs above target), or None.
        self.held_since: int | None = None
        #: Para-virtual page tables registered by create_page_table: table PPN -> entries.
        self.pv_tables: dict[int, npt.NDArray[np.int64]] = {}
        #: Device I/O (see :mod:`vframework.hv.devices`): event channels, grant table, pins
        #: of pages under I/O; None until a device plugin uses them.
        self.io: VMIO | None = None
        #: Whether its guest uses event channels (else device notifications are plain interrupts).
        self.event_channels = True
        #: Requests submitted to devices so far (the next request's id), and those not completed.
        self.io_submitted = 0
        self.io_open: set[int] = set()

    @property
    def above_min(self) -> int:
        """Pages it holds beyond its ``mem_min``: the most swap or reclaim may take."""
        return max(self.counters["mem_granted"] - self.mem_min, 0)

    @property
    def io_pinned(self) -> npt.NDArray[np.int64]:
        """PPNs pinned by device I/O in flight: their frames stay put, and the guest does
        not swap them out."""
        if self.io is None:
            return np.empty(0, dtype=np.int64)
        return np.flatnonzero(self.io.pins)

    def __repr__(self) -> str:
        return f"<VM {self.id} {self.name!r}>"
