"""``emulated-nic``: an e1000-like NIC the guest drives register by register.

Sending a packet is the guest's network stack and driver (``disk_request``'s path through the
kernel and its first device access) plus ``registers`` more register writes, each followed by a
status read (descriptor tail, length, command); posting a receive costs ``rx_registers`` of
them. Every access is an ``OUT``/``IN`` the VM's mode traps, exits on or translates. The device
model copies each packet between guest memory and its own buffers (``io_bytes_copied``): on
send before the packet goes to the host's NIC, on receive into the guest's buffer, then raises
an interrupt. Packets leave through the same host NIC and bridge as ``ring-net``'s
(:mod:`vframework_devices.net`); from outside they arrive at ``rx_rate`` per second.
"""

from __future__ import annotations

from collections import deque
from functools import partial

import numpy as np
import numpy.typing as npt
from pydantic import Field

from vframework.api import Device, DeviceContext, IORequest, VCPUView

from .disk import pages_of
from .net import NIC, WIRE, Packet
from .ring_net import RX_PACKET_BYTES, RingNetParams

__all__ = ["EmulatedNIC", "EmulatedNICParams"]


class EmulatedNICParams(RingNetParams):
    registers: int = Field(8, ge=0, le=64, description="register writes (each with a status read) per packet sent")
    rx_registers: int = Field(4, ge=0, le=64, description="register writes (each with a status read) per receive")


class EmulatedNIC(Device[EmulatedNICParams]):
    """An emulated NIC: register accesses trap or exit; every packet is copied."""

    name = "emulated-nic"
    description = "e1000-like NIC: each register access traps or exits to a device model; packets copied"
    params_model = EmulatedNICParams
    serves = "net"

    def __init__(self, params: EmulatedNICParams, context: DeviceContext) -> None:
        super().__init__(params, context)
        self.nic = context.host_shared("nic", lambda: NIC(context.after, params.bandwidth, params.latency))
        self.vif = self.nic.attach(context.vm.name, self._deliver)
        self._pages: npt.NDArray[np.int64] | None = None
        self._receives: deque[IORequest] = deque()
        self._sends: list[IORequest] = []

    def submit(self, vcpu: VCPUView, request: IORequest) -> int:
        ctx = self.context
        p = self.params
        if self._pages is None:
            self._pages = ctx.buffer_pages(p.buffer_pages)
            if p.rx_rate:
                ctx.after(1_000_000_000 // p.rx_rate, self._arrival)
        if request.write:
            cycles = ctx.guest_routine(vcpu, "disk_request")
            cycles += ctx.guest_routine(vcpu, "device_register", p.registers)
            ctx.counters["io_register_accesses"] += 2 + 2 * p.registers
            cycles += request.nbytes * ctx.costs.byte_copy  # into the model's buffer
            ctx.counters["io_bytes_copied"] += request.nbytes
            self._sends.append(request)
            return cycles
        self._receives.append(request)
        ctx.counters["io_register_accesses"] += 2 * p.rx_registers
        return ctx.guest_routine(vcpu, "device_register", p.rx_registers)

    def flush(self, vcpu: VCPUView) -> int:
        # The transmit command has been written: the queued packets go out.
        assert self._pages is not None
        sends, self._sends = self._sends, []
        peer = self.params.peer
        destination = self.nic.vif(peer) if peer else WIRE
        for request in sends:
            if destination not in self.nic.graph:
                request.error = f"no VM {peer!r} with a net device on the bridge"
                self.context.complete(request)
                continue
            ppns = self._pages[: min(pages_of(request.nbytes), self._pages.size)]
            tokens = self.context.read_pages(ppns)
            self.nic.send(Packet(self.vif, destination, request.nbytes, tokens, partial(self._sent, request)))
        return 0

    def _sent(self, request: IORequest) -> None:
        ctx = self.context
        ctx.counters["net_packets_sent"] += 1
        ctx.counters["net_bytes_sent"] += request.nbytes
        ctx.raise_irq(ctx.costs.interrupt, lambda: ctx.complete(request))

    def _arrival(self) -> None:
        self.nic.receive(self.context.vm.name, Packet(WIRE, self.vif, RX_PACKET_BYTES, np.zeros(1, dtype=np.uint64)))
        self.context.after(1_000_000_000 // self.params.rx_rate, self._arrival)

    def _deliver(self, packet: Packet) -> None:
        ctx = self.context
        if not self._receives or self._pages is None:
            ctx.counters["net_rx_dropped"] += 1
            return
        request = self._receives.popleft()
        pages = min(int(packet.tokens.size), pages_of(request.nbytes), int(self._pages.size))
        ctx.write_pages(self._pages[:pages], packet.tokens[:pages])  # the model's copy into guest memory
        nbytes = min(packet.nbytes, request.nbytes)
        ctx.counters["io_bytes_copied"] += nbytes
        ctx.counters["net_packets_received"] += 1
        ctx.counters["net_bytes_received"] += nbytes
        if packet.source != WIRE:
            ctx.counters["net_bridge_bytes"] += nbytes
        ctx.raise_irq(ctx.costs.interrupt, lambda: ctx.complete(request))
