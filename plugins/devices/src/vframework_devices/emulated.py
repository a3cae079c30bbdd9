"""``emulated-disk``: an IDE-like disk the guest programs register by register.

Every request is the guest's block layer (``disk_request``, which already starts the command
with a port write and a status read) plus ``registers`` more register writes, each followed by
a status read (sector count, the LBA bytes, the drive, the command). Each access is a real
``OUT``/``IN`` executed by the VM's mode: a trap and an emulation under full virtualization, an
exit under hardware assist, a device hypercall in a para-virtual kernel, a port access on bare
metal; a hosted hypervisor also crosses to the host OS and back for each.

The device model in the hypervisor moves the data by copying it between guest memory and its
own buffer (``io_bytes_copied``), one command at a time in arrival order (no queue, no
reordering), and raises an interrupt when a command completes.
"""

from __future__ import annotations

from collections import deque
from functools import partial

import numpy as np
import numpy.typing as npt
from pydantic import Field

from vframework.api import Device, DeviceContext, IORequest, VCPUView

from .disk import SECTOR, Disk, DiskParams, pages_of

__all__ = ["EmulatedDisk", "EmulatedDiskParams"]


class EmulatedDiskParams(DiskParams):
    registers: int = Field(6, ge=0, le=64, description="register writes (each with a status read) per request")


class EmulatedDisk(Device[EmulatedDiskParams]):
    """An emulated IDE-style disk: register accesses trap or exit; data are copied."""

    name = "emulated-disk"
    description = "IDE-like disk: each register access traps or exits to a device model; data copied"
    params_model = EmulatedDiskParams
    serves = "disk"

    def __init__(self, params: EmulatedDiskParams, context: DeviceContext) -> None:
        super().__init__(params, context)
        self.disk = Disk(params)
        self._pages: npt.NDArray[np.int64] | None = None  # the driver's buffer pages
        self._queue: deque[IORequest] = deque()
        self._busy: IORequest | None = None
        self._next_sector: dict[int, int] = {}

    def storage_bytes(self) -> int:
        return self.disk.sectors * SECTOR

    def submit(self, vcpu: VCPUView, request: IORequest) -> int:
        ctx = self.context
        if self._pages is None:
            self._pages = ctx.buffer_pages(self.params.buffer_pages)
        if request.sector < 0:  # sequential: where this vCPU's previous request ended
            request.sector = self._next_sector.get(request.vcpu, request.vcpu * (self.disk.sectors // 16))
        self._next_sector[request.vcpu] = request.sector + -(-request.nbytes // 512)
        cycles = ctx.guest_routine(vcpu, "disk_request")
        cycles += ctx.guest_routine(vcpu, "device_register", self.params.registers)
        ctx.counters["io_register_accesses"] += 2 + 2 * self.params.registers
        # The device model copies the data between guest memory and its buffer, on the
        # vCPU's time (the VMM runs in the VM's context).
        cycles += request.nbytes * ctx.costs.byte_copy
        ctx.counters["io_bytes_copied"] += request.nbytes
        self._queue.append(request)
        return cycles

    def flush(self, vcpu: VCPUView) -> int:
        # The command register has been written: the disk starts (if it is idle).
        if self._busy is None:
            self._start()
        return 0

    def _start(self) -> None:
        while self._queue:
            request = self._queue.popleft()
            problem = self.disk.check(request.sector, request.nbytes)
            if problem is not None:
                request.error = problem
                self.context.complete(request)
                continue
            self._busy = request
            self.context.after(self.disk.service_ns(request.sector, request.nbytes), partial(self._done, request))
            return
        self._busy = None

    def _done(self, request: IORequest) -> None:
        self.context.raise_irq(self.context.costs.interrupt, then=lambda: self._finish(request))
        self._start()

    def _finish(self, request: IORequest) -> None:
        ctx = self.context
        assert self._pages is not None
        # The model copies the data at completion (it has its own buffer meanwhile), so the
        # guest's buffer pages are never under DMA: nothing to pin.
        ppns = self._pages[: min(pages_of(request.nbytes), self._pages.size)]
        if request.write:
            self.disk.write(request.sector, ctx.read_pages(ppns))
        else:
            ctx.write_pages(ppns, self.disk.read(request.sector, int(ppns.size)))
        ctx.complete(request)
