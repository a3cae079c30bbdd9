"""``ring-net``: Xen's split network driver (netfront / netback) on two shared rings.

A request that writes is a packet to send; one that reads is a receive: the guest posts a
buffer and the request completes when a packet has landed in it.

**Transmit.** The front end grants the packet's pages read-only and puts the request on the TX
ring. The back end maps the grants, pins the pages and hands the packet to the host's
:class:`~vframework_devices.net.NIC`: to the wire (one queue per VM, served round robin) or,
for a VM on the same host (``peer``), across the software bridge. The pages stay pinned until
the packet has left; then the grants are unmapped, the pages unpinned, and a TX response
goes back.

**Receive.** The front end grants each posted buffer writable and puts it on the RX ring; the
back end keeps the posts in order. When a packet arrives for the VM (from outside at
``rx_rate`` per second, or from a peer across the bridge) the back end maps the oldest post,
DMAs the packet into it, unmaps it and answers on the RX ring; with no buffer posted the
packet is dropped (``net_rx_dropped``). With ``rx_mode = "flip"`` (Xen's early netback) the
back end instead *flips* pages: each posted page (offered writable through its grant) gets a
machine frame that already holds the packet, and its old frame goes back to the host, so the
frames in use are conserved (``net_pages_flipped``). No byte is copied by the guest or its
back end (``io_bytes_copied`` stays 0); a packet between VMs is copied once by the bridge
(counted as ``net_bridge_bytes`` of the receiver).

Both rings share one event channel; the back end notifies only when the front end asked
(``rsp_event``), and the front end's upcall takes every response of both rings. With
``rx_poll_us`` the front end, like a NAPI driver, masks the channel after an upcall and polls
the rings until a poll finds nothing, then unmasks: notifications the back end sends meanwhile
stay pending, and however many they were, the guest takes one event for them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field

from vframework.api import BackRing, DeviceContext, Duration, FrontRing, GrantError, IORequest, SharedRing, VCPUView

from .disk import BufferParams, pages_of
from .net import NIC, WIRE, Packet
from .split import Response, SplitDriver

__all__ = ["RingNet", "RingNetParams"]

#: netif's ring entries fit 256 to a page; a packet carries at most 17 pages (64 KiB + 1).
NETIF_ENTRY_BYTES = 12
MAX_SEGMENTS = 17
#: The size of a packet arriving from outside.
RX_PACKET_BYTES = 1500


class RingNetParams(BufferParams):
    bandwidth: int = Field(
        1_000_000_000, gt=0, description="the host NIC's bandwidth, bits per second (the first device sets it)"
    )
    latency: Duration = Field(50_000, description="the wire's latency to the outside world (the first device sets it)")
    rx_rate: int = Field(1_000, ge=0, description="packets per second arriving from outside for this VM")
    peer: str = Field("", description="the VM this VM's packets go to across the bridge; empty: the outside world")
    rx_poll_us: int = Field(
        0,
        ge=0,
        le=100_000,
        description="poll the rings every this many microseconds with the event channel masked after an "
        "upcall, until a poll finds nothing (NAPI); 0: take every event as it comes",
    )
    rx_mode: Literal["dma", "flip"] = Field(
        "dma",
        description="how a received packet reaches a posted buffer: DMA into it, or page flipping (the buffer's "
        "frame is exchanged for one holding the packet)",
    )


@dataclass(frozen=True)
class NetTx:
    """A TX ring request: a packet in granted pages."""

    nbytes: int
    grefs: tuple[int, ...]


@dataclass(frozen=True)
class NetRxPost:
    """An RX ring request: an empty buffer, granted writable."""

    grefs: tuple[int, ...]


class RingNet(SplitDriver[RingNetParams]):
    """Para-virtual NIC: TX and RX rings, grants, one event channel, the host's NIC and bridge."""

    name = "ring-net"
    description = "split network driver on Xen-style TX/RX rings: grants, event channel, bridge, round-robin NIC"
    params_model = RingNetParams
    serves = "net"
    max_segments = MAX_SEGMENTS

    def __init__(self, params: RingNetParams, context: DeviceContext) -> None:
        super().__init__(params, context)
        self.tx = SharedRing(4096, NETIF_ENTRY_BYTES)
        self.rx = SharedRing(4096, NETIF_ENTRY_BYTES)
        self.tx_front, self.tx_back = FrontRing(self.tx), BackRing(self.tx)
        self.rx_front, self.rx_back = FrontRing(self.rx), BackRing(self.rx)
        self._posts: deque[tuple[int, tuple[int, ...]]] = deque()  # back end: (id, grefs) posted
        self._polling = False
        # Every VM's interface is on the bridge from the start, so a peer can send to it.
        self.nic = context.host_shared("nic", lambda: NIC(context.after, params.bandwidth, params.latency))
        self.vif = self.nic.attach(context.vm.name, self._deliver)

    # -- front end -------------------------------------------------------------------------
    def _connect(self) -> None:
        super()._connect()
        if self.params.rx_rate:
            self.context.after(1_000_000_000 // self.params.rx_rate, self._arrival)

    def submit(self, vcpu: VCPUView, request: IORequest) -> int:
        ctx = self.context
        if self.port < 0:
            self._connect()
        if self._too_big(request, pages_of(request.nbytes)):
            return 0
        self._waiting.append(request)
        self._fill()
        return ctx.guest_routine(vcpu, "ring_request")

    def flush(self, vcpu: VCPUView) -> int:
        tx = self.tx_front.push_requests_and_check_notify()
        rx = self.rx_front.push_requests_and_check_notify()
        if tx or rx:
            self.context.after(0, self._kick)
            return self.context.notify_backend(vcpu)
        return 0

    def _fill(self) -> None:
        while self._waiting:
            request = self._waiting[0]
            front = self.tx_front if request.write else self.rx_front
            if front.full():
                return
            ppns = self.buffers.take(pages_of(request.nbytes))
            if ppns is None:
                return
            self._waiting.popleft()
            grefs = self._grant(request, ppns)
            slot = front.get_request(front.req_prod_pvt)
            slot.id = request.id
            slot.payload = NetTx(request.nbytes, grefs) if request.write else NetRxPost(grefs)
            front.req_prod_pvt += 1

    def _responses(self) -> None:
        """The guest's upcall handler: every response of both rings. With ``rx_poll_us``, it
        then masks its event channel and polls the rings instead (as a NAPI driver does)."""
        self._take_all()
        if self.params.rx_poll_us and not self._polling:
            self._polling = True
            self.context.mask_event(self.port, True)
            self.context.after(self.params.rx_poll_us * 1000, self._poll)

    def _take_all(self) -> int:
        taken = self._take_responses(self.tx_front, lambda: self.tx_front.final_check_for_responses() > 0)
        taken += self._take_responses(self.rx_front, lambda: self.rx_front.final_check_for_responses() > 0)
        if self._waiting:
            self._fill()
            if self.tx_front.push_requests_and_check_notify() | self.rx_front.push_requests_and_check_notify():
                self.context.after(0, self._kick)
        return taken

    def _poll(self) -> None:
        """A poll while the channel is masked: the back end's notifications meanwhile stayed
        pending, one event however many were sent. An empty poll unmasks (delivering that
        event, if any: one upcall for all of them)."""
        if self._take_all():
            self.context.after(self.params.rx_poll_us * 1000, self._poll)
            return
        self._polling = False
        self.context.mask_event(self.port, False)

    # -- back end ----------------------------------------------------------------------
    def _kick(self) -> None:
        if self._serve(self.tx_back, self._take_tx):
            self._serve(self.rx_back, self._take_rx)

    def _take_tx(self, rid: int, payload: object) -> None:
        ctx = self.context
        if not isinstance(payload, NetTx) or not isinstance(payload.nbytes, int) or payload.nbytes <= 0:
            self._respond(self.tx_back, rid, Response(-1, message=f"slot holds {payload!r}, not a packet"))
            return
        if len(payload.grefs) != pages_of(payload.nbytes):
            self._respond(
                self.tx_back, rid, Response(-1, message=f"{len(payload.grefs)} grants, {payload.nbytes} bytes")
            )
            return
        ppns = self._map(payload.grefs, write=False)
        if isinstance(ppns, str):
            self._respond(self.tx_back, rid, Response(-1, message=ppns))
            return
        peer = self.params.peer
        destination = self.nic.vif(peer) if peer else WIRE
        if destination not in self.nic.graph:
            self._unmap(payload.grefs, ppns)
            self._respond(self.tx_back, rid, Response(-1, message=f"no VM {peer!r} with a net device on the bridge"))
            return
        tokens = ctx.read_pages(ppns)  # the NIC's DMA from the granted pages
        grefs = payload.grefs

        def sent() -> None:
            self._unmap(grefs, ppns)
            ctx.counters["net_packets_sent"] += 1
            ctx.counters["net_bytes_sent"] += payload.nbytes
            self._respond(self.tx_back, rid, Response(0, payload.nbytes))

        self.nic.send(Packet(self.vif, destination, payload.nbytes, tokens, sent))

    def _take_rx(self, rid: int, payload: object) -> None:
        if not isinstance(payload, NetRxPost):
            self._respond(self.rx_back, rid, Response(-1, message=f"slot holds {payload!r}, not a receive buffer"))
            return
        self._posts.append((rid, payload.grefs))

    def _arrival(self) -> None:
        """A packet from outside for this VM (opaque data: zero pages)."""
        self.nic.receive(self.context.vm.name, Packet(WIRE, self.vif, RX_PACKET_BYTES, np.zeros(1, dtype=np.uint64)))
        self.context.after(1_000_000_000 // self.params.rx_rate, self._arrival)

    def _deliver(self, packet: Packet) -> None:
        """A packet reaches this VM's interface: into the oldest posted buffer, or dropped."""
        ctx = self.context
        while self._posts:
            rid, grefs = self._posts.popleft()
            if self.params.rx_mode == "flip":
                if self._flip(rid, grefs, packet):
                    return
                continue
            ppns = self._map(grefs, write=True)
            if isinstance(ppns, str):
                self._respond(self.rx_back, rid, Response(-1, message=ppns))
                continue
            pages = min(int(ppns.size), int(packet.tokens.size))
            nbytes = min(packet.nbytes, int(ppns.size) * 4096)
            ctx.write_pages(ppns[:pages], packet.tokens[:pages])  # the NIC's DMA into the buffer
            self._unmap(grefs, ppns)
            ctx.counters["net_packets_received"] += 1
            ctx.counters["net_bytes_received"] += nbytes
            if packet.source != WIRE:
                ctx.counters["net_bridge_bytes"] += nbytes
            self._respond(self.rx_back, rid, Response(0, nbytes))
            return
        ctx.counters["net_rx_dropped"] += 1

    def _flip(self, rid: int, grefs: tuple[int, ...], packet: Packet) -> bool:
        """Page flipping: the posted pages (granted writable, as a transfer) get frames holding
        the packet, their old frames go back to the host. True if delivered."""
        ctx = self.context
        try:
            if not isinstance(grefs, tuple) or not 0 < len(grefs) <= self.max_segments:
                raise GrantError(f"malformed grant list {grefs!r}")
            ppns = np.array([ctx.grants.copy(g, ctx.backend_domid, write=True) for g in grefs], dtype=np.int64)
        except GrantError as exc:
            self._respond(self.rx_back, rid, Response(-1, message=str(exc)))
            return False
        pages = min(int(ppns.size), int(packet.tokens.size))
        ctx.flip(ppns[:pages], packet.tokens[:pages])
        ctx.counters["net_pages_flipped"] += pages
        nbytes = min(packet.nbytes, int(ppns.size) * 4096)
        ctx.counters["net_packets_received"] += 1
        ctx.counters["net_bytes_received"] += nbytes
        if packet.source != WIRE:
            ctx.counters["net_bridge_bytes"] += nbytes
        self._respond(self.rx_back, rid, Response(0, nbytes))
        return True
