"""Xen's shared I/O ring (the semantics of ``xen/include/public/io/ring.h``), in Python.

A front end (the guest's driver) and a back end (the driver domain) share one page: a header
with four free-running 32-bit indices, then a power-of-two array of slots that requests and
responses share. Each side also keeps private indices:

* the front end produces requests (``req_prod_pvt``, published as ``req_prod``) and consumes
  responses (``rsp_cons``);
* the back end consumes requests (``req_cons``) and produces responses (``rsp_prod_pvt``,
  published as ``rsp_prod``).

A side asks to be notified by writing an *event index* (``req_event``, ``rsp_event``): the
producer notifies when the index it just published passed it. Every index wraps modulo 2**32,
as the C ``RING_IDX`` does, so differences between indices are taken modulo 2**32 too.

The back end trusts nothing the front end wrote to the shared page: how many requests it will
consume is bounded by the ring's size and by the responses it has produced
(:meth:`BackRing.unconsumed_requests`), so a hostile ``req_prod`` cannot make it read more
than the ring holds or answer a slot twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["HEADER_BYTES", "BackRing", "FrontRing", "RingSlot", "SharedRing"]

#: The shared page's header: four indices, padded as ring.h pads it (64 bytes).
HEADER_BYTES = 64
_MASK = 0xFFFF_FFFF


def _idx(value: int) -> int:
    """A RING_IDX: unsigned 32-bit."""
    return value & _MASK


@dataclass
class RingSlot:
    """One entry of the ring: a request or, once answered, the response in its place. ``id``
    pairs a response with its request; ``payload`` is whatever the protocol carries."""

    id: int = 0
    payload: object = None


@dataclass
class SharedRing:
    """The shared page: its header indices and its slots.

    ``size`` is the largest power of two of ``entry_bytes`` entries that fits the page after
    the header. After init, ``req_prod = rsp_prod = start`` and both event indices are
    ``start + 1`` (SHARED_RING_INIT, at any start index)."""

    page_bytes: int = 4096
    entry_bytes: int = 64
    start: int = 0
    size: int = field(init=False)
    slots: list[RingSlot] = field(init=False, repr=False)
    _req_prod: int = field(init=False, repr=False)
    _rsp_prod: int = field(init=False, repr=False)
    _req_event: int = field(init=False, repr=False)
    _rsp_event: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.entry_bytes <= 0:
            raise ValueError(f"a ring entry must have a positive size, not {self.entry_bytes} bytes")
        room = (self.page_bytes - HEADER_BYTES) // self.entry_bytes
        if room < 1:
            raise ValueError(
                f"a {self.page_bytes}-byte page holds no {self.entry_bytes}-byte entry after the "
                f"{HEADER_BYTES}-byte header"
            )
        self.size = 1 << (room.bit_length() - 1)
        self.slots = [RingSlot() for _ in range(self.size)]
        start = _idx(self.start)
        self._req_prod = self._rsp_prod = start
        self._req_event = self._rsp_event = _idx(start + 1)

    # The header's indices are 32-bit: a front end may write anything into them, but only
    # 32 bits of it land in the page.
    @property
    def req_prod(self) -> int:
        return self._req_prod

    @req_prod.setter
    def req_prod(self, value: int) -> None:
        self._req_prod = _idx(value)

    @property
    def rsp_prod(self) -> int:
        return self._rsp_prod

    @rsp_prod.setter
    def rsp_prod(self, value: int) -> None:
        self._rsp_prod = _idx(value)

    @property
    def req_event(self) -> int:
        return self._req_event

    @req_event.setter
    def req_event(self, value: int) -> None:
        self._req_event = _idx(value)

    @property
    def rsp_event(self) -> int:
        return self._rsp_event

    @rsp_event.setter
    def rsp_event(self, value: int) -> None:
        self._rsp_event = _idx(value)

    def slot(self, index: int) -> RingSlot:
        """The slot a free-running index falls on."""
        return self.slots[index & (self.size - 1)]


def _notify(old: int, new: int, event: int) -> bool:
    """Whether ``event`` lies in (old, new], modulo 2**32 (ring.h: new - event < new - old)."""
    return _idx(new - event) < _idx(new - old)


class _Ring:
    """What both ends have: the shared page, its size, 32-bit private indices."""

    _private: tuple[str, ...] = ()

    def __init__(self, shared: SharedRing) -> None:
        self.sring = shared
        self.size = shared.size
        for name in self._private:
            setattr(self, name, shared.start)

    def __setattr__(self, name: str, value: object) -> None:
        # Private indices are RING_IDX too: ``ring.req_prod_pvt += 1`` wraps as it does in C.
        if name in self._private and isinstance(value, int):
            value = _idx(value)
        object.__setattr__(self, name, value)


class FrontRing(_Ring):
    """The front end: produces requests, consumes responses (FRONT_RING_INIT)."""

    _private = ("req_prod_pvt", "rsp_cons")
    req_prod_pvt: int
    rsp_cons: int

    def free_requests(self) -> int:
        """Slots free for new requests: size - (req_prod_pvt - rsp_cons)."""
        return self.size - _idx(self.req_prod_pvt - self.rsp_cons)

    def full(self) -> bool:
        return self.free_requests() == 0

    def unconsumed_responses(self) -> int:
        return _idx(self.sring.rsp_prod - self.rsp_cons)

    def get_request(self, idx: int) -> RingSlot:
        return self.sring.slot(idx)

    def get_response(self, idx: int) -> RingSlot:
        return self.sring.slot(idx)

    def push_requests_and_check_notify(self) -> bool:
        """Publish the private requests; True if the back end asked to hear of them."""
        old = self.sring.req_prod
        new = self.req_prod_pvt
        self.sring.req_prod = new
        return _notify(old, new, self.sring.req_event)

    def final_check_for_responses(self) -> int:
        """Before sleeping: if no response waits, ask to be notified of the next one and look
        again (one may have landed in between). Returns the responses waiting."""
        work = self.unconsumed_responses()
        if work:
            return work
        self.sring.rsp_event = self.rsp_cons + 1
        return self.unconsumed_responses()


class BackRing(_Ring):
    """The back end: consumes requests, produces responses (BACK_RING_INIT)."""

    _private = ("rsp_prod_pvt", "req_cons")
    rsp_prod_pvt: int
    req_cons: int

    def unconsumed_requests(self) -> int:
        """Requests it may consume now: what the front end published, but never more than the
        ring can hold beyond the responses already produced (ring.h's bound), whatever
        ``req_prod`` says."""
        published = _idx(self.sring.req_prod - self.req_cons)
        room = self.size - _idx(self.req_cons - self.rsp_prod_pvt)
        return min(published, room)

    def request_prod_overflow(self, prod: int) -> bool:
        """Whether a ``req_prod`` the front end published claims more requests than the ring
        can hold beyond the responses produced: a bogus index (ring.h's
        RING_REQUEST_PROD_OVERFLOW; Linux's blkback halts the ring on it)."""
        return _idx(prod - self.rsp_prod_pvt) > self.size

    def request_cons_overflow(self, cons: int) -> bool:
        """Whether consuming at ``cons`` would overrun the responses (a hostile front end)."""
        return _idx(cons - self.rsp_prod_pvt) >= self.size

    def get_request(self, idx: int) -> RingSlot:
        return self.sring.slot(idx)

    def get_response(self, idx: int) -> RingSlot:
        return self.sring.slot(idx)

    def push_responses_and_check_notify(self) -> bool:
        """Publish the private responses; True if the front end asked to hear of them."""
        old = self.sring.rsp_prod
        new = self.rsp_prod_pvt
        self.sring.rsp_prod = new
        return _notify(old, new, self.sring.rsp_event)

    def final_check_for_requests(self) -> int:
        """Before sleeping: if no request waits, ask to be notified of the next one and look
        again. Returns the requests waiting."""
        work = self.unconsumed_requests()
        if work:
            return work
        self.sring.req_event = self.req_cons + 1
        return self.unconsumed_requests()
