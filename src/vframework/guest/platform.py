"""What the guest OS runs on, as the guest sees it: its virtual machine, its virtual CPUs,
the monitor that runs its code and memory references, and the platform's few entry points
(deliver a discontinuity, the TLB of the CPU it runs on, back pages behind its back).

The hypervisor's classes satisfy these protocols; the guest depends on nothing above it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from vframework.guest.kernel import GuestKernel
from vframework.guest.mm import GuestProcess
from vframework.guest.ops import IORequest
from vframework.machine.cpu import GuestCPU
from vframework.machine.hardware import Machine
from vframework.machine.isa import Block
from vframework.machine.mmu import TLB

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["GuestDevice", "GuestMonitor", "GuestVCPU", "GuestVM", "Platform"]


class GuestVCPU(Protocol):
    """A virtual CPU the guest kernel runs on."""

    #: The guest-visible CPU state.
    ctx: GuestCPU
    #: The guest process it runs.
    process: GuestProcess | None
    #: Its index in its VM.
    index: int
    #: How long it blocks after the operation in progress (a sleep, or I/O device time; -1:
    #: until its device has completed its requests).
    wait_ns: int
    #: Requests it submitted to a device that have not completed yet.
    io_outstanding: int
    #: The device whose submitted requests wait to be published when the driver's code has run.
    io_flush: GuestDevice | None


class GuestDevice(Protocol):
    """A device the VM has attached (a device plugin): the guest's driver submits to it."""

    def submit(self, vcpu: Any, request: IORequest) -> int: ...

    def flush(self, vcpu: Any) -> int: ...


class GuestMonitor(Protocol):
    """The machinery that runs the guest's code and memory references under its mode.

    ``vcpu`` is one of the VM's own vCPUs, passed back to the platform that made it: typed Any
    because the platform's methods take its own vCPU class, which the guest cannot name.
    """

    #: The guest runs the para-virtual port of its kernel.
    paravirtual: bool
    #: The kernel build the guest booted.
    kernel: GuestKernel | None

    def execute(self, vcpu: Any, block: Block) -> int: ...

    def execute_many(self, vcpu: Any, block: Block, count: int) -> int: ...

    def translate(
        self,
        vcpu: Any,
        proc: GuestProcess,
        vpns: npt.NDArray[np.int64],
        write: bool,
        walked: npt.NDArray[np.int32] | None = None,
        shadowed: bool = False,
    ) -> tuple[int, npt.NDArray[np.integer]]: ...

    def complete_shadow(self, proc: GuestProcess, vpns: npt.NDArray[np.int64]) -> npt.NDArray[np.int32] | None: ...

    def run_fill(
        self, proc: GuestProcess, vpns: npt.NDArray[np.int64], walked: npt.NDArray[np.int32]
    ) -> npt.NDArray[np.int32]: ...

    @property
    def miss_refs(self) -> int: ...

    #: ``"direct"``, ``"shadow"`` or ``"nested"``.
    paging: str

    def pt_write(self, vcpu: Any, proc: GuestProcess, vpns: npt.NDArray[np.int64]) -> int: ...

    def address_space_gone(self, proc: GuestProcess) -> int: ...

    def hidden_fault(self, vcpu: Any, count: int) -> int: ...

    def io(self, vcpu: Any, device: str, nbytes: int, write: bool) -> int: ...


class GuestVM(Protocol):
    """The virtual machine a guest OS runs in."""

    id: int
    name: str
    memory_pages: int
    swap_pages: int
    #: The disk image it booted from (VMs with the same image hold the same image pages).
    image: str
    #: Bytes the guest kernel sets aside per page of its memory for its page frame table.
    page_struct_bytes: int
    #: PPN -> MPN (-1: no machine frame behind the page).
    p2m: npt.NDArray[np.int32]
    counters: dict[str, int]
    #: Pages the hypervisor samples for activity (their next reference is seen), or None;
    #: and those referenced since sampling began.
    watch: npt.NDArray[np.bool_] | None
    touched: npt.NDArray[np.bool_] | None
    #: The hardware accessed bit of each page, set by every reference; None: not tracked.
    accessed: npt.NDArray[np.bool_] | None
    #: Pages the hypervisor paged out to its own swap (None: none yet), and their contents.
    host_swapped: npt.NDArray[np.bool_] | None
    host_swap_content: npt.NDArray[np.uint64] | None
    #: ns the VM must stall for pages the hypervisor read back from its swap (taken by the guest).
    stall_ns: int

    @property
    def io_pinned(self) -> npt.NDArray[np.int64]:
        """PPNs a device is reading or writing (pinned for DMA): never swapped out."""
        ...

    @property
    def devices(self) -> Mapping[str, GuestDevice]:
        """Devices attached by plugins, by the name workloads use (``"disk"``, ``"net"``)."""
        ...

    #: Requests submitted to devices so far (the next request's id), and those not completed.
    io_submitted: int
    io_open: set[int]

    @property
    def vcpus(self) -> Sequence[GuestVCPU]: ...

    @property
    def monitor(self) -> GuestMonitor | None: ...


class Platform(Protocol):
    """The hypervisor (or bare hardware) underneath.

    ``vcpu`` and ``vm`` are the guest's own, passed back to the platform that made them (typed
    Any, as in :class:`GuestMonitor`)."""

    machine: Machine

    def deliver(self, vcpu: Any, kind: str, count: int = 1) -> int: ...

    def tlb_for(self, vcpu: Any) -> TLB: ...

    def back_pages(self, vm: Any, ppns: npt.NDArray[np.integer], hidden: bool = True) -> int: ...

    def settle(self, vm: Any) -> None: ...

    def break_sharing(self, vm: Any, ppns: npt.NDArray[np.integer]) -> int: ...
