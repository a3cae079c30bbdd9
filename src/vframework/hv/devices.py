"""What the hypervisor gives a device plugin: a :class:`~vframework.api.DeviceContext` per
attached device, and the VM's I/O state it works on (event channels, grant table, pins).

A request's life: the guest OS gives it an id and hands it to the device
(:meth:`~vframework.api.Device.submit`); the vCPU blocks once the operation's requests are
submitted; the device does its work in simulated time (:meth:`DeviceHost.after`) and calls
:meth:`DeviceHost.complete` for each request, exactly once. When the last request of the
vCPU completes, the vCPU wakes with one device interrupt to handle: requests completed
together cost one interrupt, which is how batching and event coalescing pay off.

Event-channel upcalls run their port handlers at once (the guest's handler is modelled by
what the handler does, typically taking ring responses and completing requests; its cost is
the device interrupt the woken vCPU then handles). A VM whose guest does not use event
channels (``event_channels = false``) gets each notification as an interrupt instead, serviced
as it occurs, with no pending bit, mask or coalescing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from vframework.errors import HostOutOfMemory, OutOfMemory
from vframework.guest.kernel import DRIVER_ROUTINES
from vframework.guest.os import DEVICE_WAIT
from vframework.hv.vm import VCPUState
from vframework.io.events import EventChannels
from vframework.io.grants import GrantTable
from vframework.machine.hardware import SHARED

if TYPE_CHECKING:
    import numpy.typing as npt

    from vframework.api.views import VCPUView
    from vframework.guest.ops import IORequest
    from vframework.hv.hypervisor import Hypervisor
    from vframework.hv.vm import VM
    from vframework.machine.costs import CostModel

__all__ = ["BACKEND_DOMID", "VMIO", "DeviceHost"]

_T = TypeVar("_T")

#: The domain the hypervisor's back ends run as (a driver domain: grants name it).
BACKEND_DOMID = 0x7FF0
#: Event-channel ports and grant entries per VM.
EVENT_PORTS, GRANT_ENTRIES = 64, 4096


def _call(callback: Callable[[], None]) -> None:
    callback()


class VMIO:
    """One VM's device I/O state, created when its first device needs it."""

    def __init__(self, memory_pages: int) -> None:
        self.events = EventChannels(EVENT_PORTS)
        self.grants = GrantTable(GRANT_ENTRIES)
        #: How many in-flight I/Os pin each guest-physical page (uint16 per PPN).
        self.pins = np.zeros(memory_pages, dtype=np.uint16)
        self.handlers: dict[int, Callable[[], None]] = {}


class DeviceHost:
    """A :class:`~vframework.api.DeviceContext` for one VM's device."""

    backend_domid = BACKEND_DOMID

    def __init__(self, hypervisor: Hypervisor, vm: VM) -> None:
        self._hv = hypervisor
        self._vm = vm
        self.costs: CostModel = hypervisor.machine.costs

    @property
    def vm(self) -> VM:
        return self._vm

    @property
    def now(self) -> int:
        return self._hv.engine.now

    @property
    def counters(self) -> dict[str, int]:
        return self._vm.counters

    @property
    def _io(self) -> VMIO:
        vm = self._vm
        if vm.io is None:
            vm.io = VMIO(vm.memory_pages)
        return vm.io

    @property
    def events(self) -> EventChannels:
        return self._io.events

    @property
    def grants(self) -> GrantTable:
        return self._io.grants

    def after(self, delay_ns: int, callback: Callable[[], None]) -> None:
        if delay_ns < 0:
            raise ValueError(f"a device cannot act {delay_ns} ns in the past")
        self._hv.engine.schedule(int(delay_ns), _call, callback)

    def raise_irq(self, cycles: int, then: Callable[[], None] | None = None) -> None:
        self._hv.raise_irq(self._vm, cycles, then=then)

    def complete(self, request: IORequest) -> None:
        vm = self._vm
        if request.id not in vm.io_open:
            raise ValueError(f"VM {vm.name!r}: request {request.id} completed twice, or never submitted")
        vm.io_open.discard(request.id)
        vm.counters["io_completed"] += 1
        if request.error is not None:
            vm.counters["io_errors"] += 1
        vcpu = vm.vcpus[request.vcpu]
        vcpu.io_outstanding -= 1
        if vcpu.io_outstanding == 0 and vcpu.wait_ns == DEVICE_WAIT and vcpu.state == VCPUState.BLOCKED:
            self._hv.io_done(vcpu)

    def guest_routine(self, vcpu: VCPUView, routine: str, count: int = 1) -> int:
        vm = self._vm
        assert vm.monitor is not None
        assert vm.guest is not None
        block = DRIVER_ROUTINES.get(routine) or vm.guest.kernel.routines().get(routine)
        if block is None:
            raise ValueError(f"VM {vm.name!r}: the guest kernel has no routine {routine!r}")
        return vm.monitor.execute_many(vcpu, block, count)  # type: ignore[arg-type]

    def notify_backend(self, vcpu: VCPUView) -> int:
        assert self._vm.mode is not None
        return self._vm.mode.notify_backend(vcpu)

    def bind_event(self, handler: Callable[[], None]) -> int:
        io = self._io
        port = io.events.bind()
        io.handlers[port] = handler
        return port

    def notify_guest(self, port: int) -> None:
        io = self._io
        counters = self._vm.counters
        counters["events_sent"] += 1
        if not self._vm.event_channels:
            # No event channels: the notification is an interrupt, delivered as it occurs.
            if not io.events.bound(port):
                raise ValueError(f"event-channel port {port} is not bound")
            counters["events_delivered"] += 1
            self._hv.raise_irq(self._vm, self.costs.interrupt, then=io.handlers[port])
            return
        if io.events.notify(port):
            self._upcall(io)

    def mask_event(self, port: int, masked: bool) -> None:
        io = self._io
        if not self._vm.event_channels:
            return  # interrupts delivered as they occur have no mask
        if masked:
            io.events.mask(port)
        elif io.events.unmask(port):
            self._upcall(io)

    def _upcall(self, io: VMIO) -> None:
        ports = io.events.take()
        self._vm.counters["events_delivered"] += len(ports)
        for port in ports:
            io.handlers[port]()

    def host_shared(self, key: str, factory: Callable[[], _T]) -> _T:
        shared = self._hv.device_shared
        if key not in shared:
            shared[key] = factory()
        return shared[key]  # type: ignore[return-value]

    def buffer_pages(self, count: int) -> npt.NDArray[np.int64]:
        vm = self._vm
        assert vm.guest is not None
        ppns = vm.guest.kernel_pages(count)
        self._hv.back_pages(vm, ppns, hidden=False)
        return ppns

    def _ppns(self, ppns: npt.ArrayLike) -> npt.NDArray[np.int64]:
        ppns = np.asarray(ppns, dtype=np.int64)
        if ppns.size and (int(ppns.min()) < 0 or int(ppns.max()) >= self._vm.memory_pages):
            raise ValueError(f"VM {self._vm.name!r} has no page {ppns.tolist()} (it has {self._vm.memory_pages})")
        return ppns

    def pin(self, ppns: npt.NDArray[np.int64]) -> None:
        ppns = self._ppns(ppns)
        self._hv.back_pages(self._vm, ppns, hidden=False)  # DMA needs a frame where it lands
        # A page on a shared frame gets its private copy now, as Linux's pin for DMA breaks
        # copy-on-write first: a device writing the shared frame would reach every sharer, and
        # breaking it later (the guest's next write) would move the page while the I/O is in flight.
        if self._vm.counters["mem_shared"]:
            self._hv.break_sharing(self._vm, ppns)
        np.add.at(self._io.pins, ppns, self._io.pins.dtype.type(1))

    def unpin(self, ppns: npt.NDArray[np.int64]) -> None:
        ppns = self._ppns(ppns)
        pins = self._io.pins
        if np.any(pins[ppns] == 0):
            raise ValueError(f"VM {self._vm.name!r}: unpinning pages that are not pinned")
        np.subtract.at(pins, ppns, pins.dtype.type(1))

    def read_pages(self, ppns: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
        ppns = self._ppns(ppns)
        self._hv.back_pages(self._vm, ppns, hidden=False)
        return self._hv.machine.memory.content[self._vm.p2m[ppns]].copy()

    def flip(self, ppns: npt.NDArray[np.int64], tokens: npt.NDArray[np.uint64]) -> None:
        ppns = self._ppns(ppns)
        vm = self._vm
        if vm.io is not None and np.any(vm.io.pins[ppns]):
            raise ValueError(f"VM {vm.name!r}: cannot flip pages under I/O (pinned)")
        hv = self._hv
        memory = hv.machine.memory
        hv.back_pages(vm, ppns, hidden=False)  # a page offered for transfer has a frame
        hv.settle(vm)
        try:
            fresh = memory.allocate(int(ppns.size), vm.id)  # the driver domain's pages, data in
        except OutOfMemory as exc:
            raise HostOutOfMemory(f"VM {vm.name!r}: no free frame to flip a received page into ({exc})") from None
        memory.content[fresh] = tokens
        # The old frames go back to the host, every cached translation to them shot down: as
        # many frames in as out, so the VM's granted and consumed pages do not change.
        old = vm.p2m[ppns].astype(np.int64)
        hv.shoot_down(vm, old)
        if vm.counters["mem_shared"]:
            vm.counters["mem_shared"] -= int(np.count_nonzero(memory.state[old] == SHARED))
        vm.p2m[ppns] = fresh
        memory.release(old)

    def write_pages(self, ppns: npt.NDArray[np.int64], tokens: npt.NDArray[np.uint64]) -> None:
        ppns = self._ppns(ppns)
        vm = self._vm
        self._hv.back_pages(vm, ppns, hidden=False)
        self._hv.break_sharing(vm, ppns)
        self._hv.machine.memory.content[vm.p2m[ppns]] = tokens
