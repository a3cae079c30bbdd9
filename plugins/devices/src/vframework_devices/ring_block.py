"""``ring-block``: Xen's split block driver (blkfront / blkback) on a shared ring.

**Front end** (in the guest). A request costs the block layer and a ring-slot write
(``ring_request``: no device register). Its data pages are taken from the driver's buffer
pages and *granted* to the back end: read-only for a write (the device reads them),
writable for a read. The request goes into the next ring slot with its grant references; when
the operation's requests are queued, the front end pushes them and kicks the back end only if
the back end asked for it (``req_event``): one kick for a batch. Requests that find the ring
full, or too few free buffer pages, wait in the front end's queue and go in as responses free
room.

**Back end** (in the driver domain). Kicked, it takes every request the ring holds (never more
than the ring's size beyond its responses, whatever the front end wrote into ``req_prod``),
checks each slot (a garbage slot gets an error response and touches nothing), maps its grants
(only pages granted to the back end's domain, with the access granted: the grant table
refuses anything else), pins them, and queues the request in its **elevator**: a sorted list
by (barrier epoch, sector). A barrier request gets an epoch of its own, so nothing submitted
before it is served after it and nothing submitted after it is served before it is done. In
an epoch the head sweeps up (C-LOOK): the next request at or after the head, else the lowest.

**Disk and completion.** The disk serves one request at a time (seek + transfer). On
completion the data move by DMA into or out of the granted pages (zero copy:
``io_bytes_copied`` stays 0), the grants are unmapped and the pages unpinned, a response goes
into the ring, and the guest is notified on its event channel only if it asked (``rsp_event``).
The guest's upcall takes every response, ends the grants, frees the buffers, completes the
requests and re-arms: for the next response (``final_check_for_responses``), or with
``notify = "batch"`` for the last of the requests it has in the ring, so that a batch of
responses costs one event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field
from sortedcontainers import SortedList

from vframework.api import BackRing, DeviceContext, FrontRing, IORequest, SharedRing, VCPUView

from .disk import SECTOR, SECTORS_PER_PAGE, Disk, DiskParams, pages_of
from .split import Response, SplitDriver

__all__ = ["BlkRequest", "RingBlock", "RingBlockParams"]

#: blkif's ring entry: 112 bytes, so a 4 KiB page holds 32 slots.
BLKIF_ENTRY_BYTES = 112
#: blkif's segments per request: 11 pages (44 KiB).
MAX_SEGMENTS = 11


class RingBlockParams(DiskParams):
    elevator: Literal["c-look", "fifo"] = Field(
        "c-look", description="the back end's request order: sweep by sector (C-LOOK) or arrival order"
    )
    notify: Literal["each", "batch"] = Field(
        "each",
        description="when the front end asks to hear of responses (rsp_event): the next one, or only "
        "once every request in the ring is answered",
    )


@dataclass(frozen=True)
class BlkRequest:
    """What the front end writes into a ring slot (blkif_request)."""

    sector: int
    nbytes: int
    write: bool
    barrier: bool
    grefs: tuple[int, ...]


@dataclass
class _Taken:
    """A request the back end accepted: in the elevator, then on the disk."""

    id: int
    request: BlkRequest
    ppns: npt.NDArray[np.int64]


class RingBlock(SplitDriver[RingBlockParams]):
    """Para-virtual block device: shared ring, grants, event channel, elevator, disk."""

    name = "ring-block"
    description = "split block driver on a Xen-style ring: grants (zero copy), event channel, elevator"
    params_model = RingBlockParams
    serves = "disk"
    max_segments = MAX_SEGMENTS

    def __init__(self, params: RingBlockParams, context: DeviceContext) -> None:
        super().__init__(params, context)
        shared = SharedRing(4096, BLKIF_ENTRY_BYTES)
        self.shared = shared
        self.front = FrontRing(shared)
        self.back = BackRing(shared)
        self.disk = Disk(params)
        self._next_sector: dict[int, int] = {}
        # Back end: the elevator (epoch, sector or arrival, seq) -> request, the epoch new
        # requests join, and whether the disk is busy.
        self._elevator: SortedList[tuple[int, int, int]] = SortedList()
        self._taken: dict[int, _Taken] = {}
        self._epoch = 0
        self._seq = 0
        self._busy = False

    def storage_bytes(self) -> int:
        return self.disk.sectors * SECTOR

    # -- front end -------------------------------------------------------------------------
    def submit(self, vcpu: VCPUView, request: IORequest) -> int:
        ctx = self.context
        if self.port < 0:
            self._connect()
        if self._too_big(request, pages_of(request.nbytes)):
            return 0
        if request.sector < 0:
            request.sector = self._next_sector.get(request.vcpu, request.vcpu * (self.disk.sectors // 16))
        self._next_sector[request.vcpu] = request.sector + pages_of(request.nbytes) * SECTORS_PER_PAGE
        self._waiting.append(request)
        self._fill()
        return ctx.guest_routine(vcpu, "ring_request")

    def flush(self, vcpu: VCPUView) -> int:
        if self.front.push_requests_and_check_notify():
            self.context.after(0, self._kick)
            return self.context.notify_backend(vcpu)
        return 0

    def _fill(self) -> None:
        """Move waiting requests into free ring slots, granting their pages."""
        while self._waiting and not self.front.full():
            request = self._waiting[0]
            ppns = self.buffers.take(pages_of(request.nbytes))
            if ppns is None:
                return  # wait for buffers (responses free them)
            self._waiting.popleft()
            grefs = self._grant(request, ppns)
            slot = self.front.get_request(self.front.req_prod_pvt)
            slot.id = request.id
            slot.payload = BlkRequest(request.sector, request.nbytes, request.write, request.barrier, grefs)
            self.front.req_prod_pvt += 1

    def _responses(self) -> None:
        """The guest's upcall handler: take every response, end grants, complete requests."""
        self._take_responses(self.front, self._rearm)
        if self._waiting:
            self._fill()
            if self.front.push_requests_and_check_notify():
                self.context.after(0, self._kick)

    def _rearm(self) -> bool:
        front = self.front
        if self.params.notify == "batch" and self._inflight:
            # Hear of the answers only when the last request in the ring is answered (as
            # netfront defers its event index); look again in case they are already in.
            self.shared.rsp_event = front.rsp_cons + len(self._inflight)
            return front.unconsumed_responses() > 0
        return front.final_check_for_responses() > 0

    # -- back end ----------------------------------------------------------------------
    def _kick(self) -> None:
        """The back end woke: take every request the ring holds, then sleep re-armed."""
        if self._serve(self.back, self._accept) and not self._busy:
            self._start()

    def _accept(self, rid: int, payload: object) -> None:
        problem = self._check(payload)
        if problem is None:
            assert isinstance(payload, BlkRequest)
            # A read writes the guest's pages: it needs them granted writable.
            ppns = self._map(payload.grefs, write=not payload.write)
            if not isinstance(ppns, str):
                self._seq += 1
                if payload.barrier:  # an epoch of its own: after all before, before all after
                    self._epoch += 1
                key = payload.sector if self.params.elevator == "c-look" else self._seq
                self._elevator.add((self._epoch, key, self._seq))
                self._taken[self._seq] = _Taken(rid, payload, ppns)
                if payload.barrier:
                    self._epoch += 1
                return
            problem = ppns
        self._respond(self.back, rid, Response(-1, message=problem))

    def _check(self, payload: object) -> str | None:
        """Why a slot cannot be served (a hostile or buggy front end), or None."""
        if not isinstance(payload, BlkRequest):
            return f"slot holds {type(payload).__name__}, not a block request"
        fields = (payload.sector, payload.nbytes, payload.write, payload.barrier)
        if not all(isinstance(f, int) for f in fields) or not isinstance(payload.grefs, tuple):
            return f"malformed block request {payload!r}"
        if payload.nbytes <= 0 or len(payload.grefs) != pages_of(payload.nbytes):
            return f"{len(payload.grefs)} grants for {payload.nbytes} bytes"
        if len(payload.grefs) > MAX_SEGMENTS:
            return f"{len(payload.grefs)} segments, more than {MAX_SEGMENTS}"
        return self.disk.check(payload.sector, payload.nbytes)

    def _start(self) -> None:
        if not self._elevator:
            self._busy = False
            return
        epoch = self._elevator[0][0]
        i = 0
        if self.params.elevator == "c-look":
            i = self._elevator.bisect_left((epoch, self.disk.head, -1))
            if i == len(self._elevator) or self._elevator[i][0] != epoch:
                i = 0  # nothing ahead of the head in this epoch: sweep from the lowest
        _, _, seq = self._elevator.pop(i)
        taken = self._taken.pop(seq)
        self._busy = True
        delay = self.disk.service_ns(taken.request.sector, taken.request.nbytes)
        self.context.after(delay, lambda: self._disk_done(taken))

    def _disk_done(self, taken: _Taken) -> None:
        self.context.raise_irq(self.context.costs.interrupt, then=lambda: self._complete(taken))
        self._start()

    def _complete(self, taken: _Taken) -> None:
        ctx = self.context
        request = taken.request
        if request.write:
            self.disk.write(request.sector, ctx.read_pages(taken.ppns))
        else:
            ctx.write_pages(taken.ppns, self.disk.read(request.sector, int(taken.ppns.size)))
        self._unmap(request.grefs, taken.ppns)
        self._respond(self.back, taken.id, Response(0, request.nbytes))
