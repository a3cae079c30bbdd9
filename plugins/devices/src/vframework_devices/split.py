"""What Xen's split drivers share, block and network alike.

The front end (in the guest) keeps requests waiting for ring room or buffer pages, grants each
request's pages to the back end's domain, and takes responses in its event-channel upcall:
ending the grants, freeing the buffers, completing the requests. The back end (in the driver
domain) takes requests from a ring, never more than the ring holds and not at all once the
front end has published a bogus ``req_prod`` (it halts the ring, as Linux's back ends do),
maps grants all or none and pins their pages, and answers on the ring, notifying the guest
only when it asked.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import ClassVar, TypeVar

import numpy as np
import numpy.typing as npt

from vframework.api import BackRing, Device, DeviceContext, FrontRing, GrantError, IORequest

from .disk import BufferParams, Buffers

__all__ = ["Response", "SplitDriver"]


P = TypeVar("P", bound=BufferParams)


class Response:
    """A response on a ring: status 0 (with what it carries) or an error message."""

    __slots__ = ("message", "nbytes", "status")

    def __init__(self, status: int, nbytes: int = 0, message: str = "") -> None:
        self.status = status
        self.nbytes = nbytes
        self.message = message

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.nbytes}, {self.message!r})"


class SplitDriver(Device[P]):
    """A front end and a back end over shared rings, with grants and one event channel."""

    zero_copy = True
    #: The most pages one request carries.
    max_segments: ClassVar[int] = 11

    def __init__(self, params: P, context: DeviceContext) -> None:
        super().__init__(params, context)
        self.buffers = Buffers(params.buffer_pages)
        self.port = -1
        #: Front end: requests waiting for ring room or buffers; requests in a ring, by id.
        self._waiting: deque[IORequest] = deque()
        self._inflight: dict[int, tuple[IORequest, npt.NDArray[np.int64], tuple[int, ...]]] = {}
        #: The back end stopped serving (the front end published a bogus req_prod).
        self.halted = False

    # -- front end -------------------------------------------------------------------------
    def _connect(self) -> None:
        """At the first request: the driver's buffer pages, and its event channel."""
        self.buffers.reserve(self.context.buffer_pages(self.params.buffer_pages))
        self.port = self.context.bind_event(self._responses)

    def _too_big(self, request: IORequest, pages: int) -> bool:
        """Refuse (complete with an error) a request larger than one ring entry carries."""
        if pages <= min(self.max_segments, self.buffers.pages):
            return False
        request.error = f"{request.nbytes} bytes is more than one request carries ({self.max_segments} pages)"
        self.context.complete(request)
        return True

    def _grant(self, request: IORequest, ppns: npt.NDArray[np.int64]) -> tuple[int, ...]:
        """Grant the request's pages to the back end: read-only when the device only reads them."""
        ctx = self.context
        grefs = tuple(ctx.grants.grant(int(p), ctx.backend_domid, readonly=request.write) for p in ppns)
        self._inflight[request.id] = (request, ppns, grefs)
        return grefs

    def _take_responses(self, front: FrontRing, rearm: Callable[[], bool]) -> int:
        """Take every response on ``front``; ``rearm()`` asks to hear of the next ones and says
        whether more are already in. Returns how many were taken."""
        ctx = self.context
        taken = 0
        while True:
            while front.unconsumed_responses():
                slot = front.get_response(front.rsp_cons)
                front.rsp_cons += 1
                taken += 1
                entry = self._inflight.pop(slot.id, None)
                if entry is None:
                    ctx.counters["io_errors"] += 1  # an answer to nothing asked: dropped
                    continue
                request, ppns, grefs = entry
                for gref in grefs:
                    ctx.grants.revoke(gref)
                self.buffers.give(ppns)
                response = slot.payload
                if not isinstance(response, Response) or response.status != 0:
                    request.error = response.message if isinstance(response, Response) else "garbage response"
                ctx.complete(request)
            if not rearm():
                return taken

    def _responses(self) -> None:
        """The guest's upcall handler."""
        raise NotImplementedError

    # -- back end ----------------------------------------------------------------------
    def _serve(self, back: BackRing, take: Callable[[int, object], None]) -> bool:
        """Take every request on ``back`` (``take(id, payload)`` each), then sleep re-armed.
        False if the ring is halted."""
        if self.halted:
            return False
        while True:
            if back.request_prod_overflow(back.sring.req_prod):
                self.halted = True
                self.context.counters["io_errors"] += 1
                return False
            for _ in range(back.unconsumed_requests()):
                slot = back.get_request(back.req_cons)
                back.req_cons += 1
                take(slot.id, slot.payload)
            if not back.final_check_for_requests():
                return True

    def _map(self, grefs: object, write: bool) -> npt.NDArray[np.int64] | str:
        """Map a request's grants, all or none, and pin their pages; the PPNs, or why not."""
        ctx = self.context
        if not isinstance(grefs, tuple) or not 0 < len(grefs) <= self.max_segments:
            return f"malformed grant list {grefs!r}"
        mapped: list[int] = []
        try:
            for gref in grefs:
                mapped.append(ctx.grants.map(gref, ctx.backend_domid, write=write))
        except GrantError as exc:
            for gref in grefs[: len(mapped)]:
                ctx.grants.unmap(gref)
            return str(exc)
        ctx.counters["grant_maps"] += len(mapped)
        ppns = np.array(mapped, dtype=np.int64)
        ctx.pin(ppns)
        return ppns

    def _unmap(self, grefs: tuple[int, ...], ppns: npt.NDArray[np.int64]) -> None:
        for gref in grefs:
            self.context.grants.unmap(gref)
        self.context.unpin(ppns)

    def _respond(self, back: BackRing, rid: int, response: Response) -> None:
        slot = back.get_response(back.rsp_prod_pvt)
        slot.id, slot.payload = rid, response
        back.rsp_prod_pvt += 1
        if back.push_responses_and_check_notify():
            self.context.notify_guest(self.port)
