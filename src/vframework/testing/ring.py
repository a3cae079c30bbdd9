"""State machine for Xen's shared I/O ring (:mod:`vframework.io.ring`): ring pointer ordering.

Hypothesis starts a ring at a random index (often just below 2**32, so every index wraps),
then interleaves what each end does: the front end queues requests, publishes them and takes
responses; the back end takes requests, answers them and publishes the answers; either side
re-arms its event index before sleeping; and a *hostile* front end writes any 32-bit value
into ``req_prod``. After every step it checks, exactly:

* **ordering**, modulo 2**32: ``rsp_cons <= rsp_prod <= rsp_prod_pvt <= req_cons`` and the
  front end never has more than ``size`` requests outstanding; an honest front end's
  ``req_cons <= req_prod``;
* **bounded consumption**: whatever ``req_prod`` says, the back end never has more than
  ``size`` requests taken and unanswered, so it never reads a slot it has not answered yet;
* **exactly once**: every request the front end queued is answered once, with its own id, and
  the front end sees the answers in the order it queued the requests;
* **notification**: a push notifies exactly when the peer's event index lies in the published
  range, and a side that found no work after re-arming is notified by the next push.

Parametrize with :meth:`RingMachine.for_ring` to check a ring of another geometry.
"""

from __future__ import annotations

from collections import deque
from itertools import pairwise

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from vframework.io.ring import BackRing, FrontRing, SharedRing

__all__ = ["RingMachine"]

_WRAP = 2**32


def _dist(a: int, b: int) -> int:
    """b - a modulo 2**32: how far b is ahead of a."""
    return (b - a) % _WRAP


class RingMachine(RuleBasedStateMachine):
    """Front and back end of one ring, driven at random, one of them possibly hostile."""

    page_bytes = 4096
    entry_bytes = 64

    @classmethod
    def for_ring(cls, page_bytes: int, entry_bytes: int) -> type[RingMachine]:
        name = f"RingMachine[{page_bytes}/{entry_bytes}]"
        return type(name, (cls,), {"page_bytes": page_bytes, "entry_bytes": entry_bytes})

    @initialize(start=st.one_of(st.integers(0, _WRAP - 1), st.integers(_WRAP - 40, _WRAP - 1)))
    def make(self, start: int) -> None:
        self.shared = SharedRing(self.page_bytes, self.entry_bytes, start)
        self.front = FrontRing(self.shared)
        self.back = BackRing(self.shared)
        self.next_id = 0
        self.queued: deque[int] = deque()  # ids queued by the front end, in order
        self.answered: list[int] = []  # ids the front end received, in order
        self.taken: list[int] = []  # ids the back end took
        self.hostile = False
        self.front_armed = self.back_armed = False

    # -- the front end -----------------------------------------------------------------
    @precondition(lambda self: not self.front.full())
    @rule(count=st.integers(1, 8))
    def queue_requests(self, count: int) -> None:
        for _ in range(min(count, self.front.free_requests())):
            slot = self.front.get_request(self.front.req_prod_pvt)
            slot.id, slot.payload = self.next_id, ("request", self.next_id)
            self.queued.append(self.next_id)
            self.next_id += 1
            self.front.req_prod_pvt += 1

    @rule()
    def push_requests(self) -> None:
        old, new, event = self.shared.req_prod, self.front.req_prod_pvt, self.shared.req_event
        notify = self.front.push_requests_and_check_notify()
        assert notify == (0 < _dist(old, event) <= _dist(old, new)), (
            f"req push {old}->{new} with req_event {event}: notify {notify}"
        )
        if self.back_armed and _dist(old, new) > 0 and not self.hostile:
            assert notify, "the back end re-armed and found nothing, then a push did not notify it"
            self.back_armed = False

    @rule()
    def take_responses(self) -> None:
        for _ in range(self.front.unconsumed_responses()):
            slot = self.front.get_response(self.front.rsp_cons)
            # (A front end that lied about req_prod gets what it asked for: garbage answers.)
            assert self.hostile or slot.payload == ("response", slot.id), (
                f"slot {self.front.rsp_cons} holds {slot.payload!r}"
            )
            self.answered.append(slot.id)
            self.front.rsp_cons += 1

    @rule()
    def front_sleeps(self) -> None:
        self.front_armed = self.front.final_check_for_responses() == 0

    @rule(value=st.one_of(st.integers(0, _WRAP - 1), st.integers(-4, 4)))
    def hostile_req_prod(self, value: int) -> None:
        """A front end writes garbage into the shared header: near the truth or anywhere."""
        self.hostile = True
        self.shared.req_prod = self.shared.req_prod + value if abs(value) <= 4 else value  # noqa: PLR2004

    # -- the back end ------------------------------------------------------------------
    @rule(count=st.integers(1, 8))
    def take_and_answer(self, count: int) -> None:
        for _ in range(min(count, self.back.unconsumed_requests())):
            cons = self.back.req_cons
            assert not self.back.request_cons_overflow(cons), f"req_cons {cons} overruns the responses"
            slot = self.back.get_request(cons)
            self.back.req_cons += 1
            self.taken.append(slot.id)
            # Answer in place (one slot holds a request, then its response).
            response = self.back.get_response(self.back.rsp_prod_pvt)
            response.id, response.payload = slot.id, ("response", slot.id)
            self.back.rsp_prod_pvt += 1

    @rule()
    def push_responses(self) -> None:
        old, new, event = self.shared.rsp_prod, self.back.rsp_prod_pvt, self.shared.rsp_event
        notify = self.back.push_responses_and_check_notify()
        assert notify == (0 < _dist(old, event) <= _dist(old, new)), (
            f"rsp push {old}->{new} with rsp_event {event}: notify {notify}"
        )
        if self.front_armed and _dist(old, new) > 0:
            assert notify, "the front end re-armed and found nothing, then a push did not notify it"
            self.front_armed = False

    @rule()
    def back_sleeps(self) -> None:
        self.back_armed = self.back.final_check_for_requests() == 0

    # -- invariants ----------------------------------------------------------------------
    @invariant()
    def pointers_in_order(self) -> None:
        f, b, s = self.front, self.back, self.shared
        size = s.size
        # Whatever the header says, the back end never has more than the ring taken ahead of
        # its answers, and never offers more than the ring holds.
        assert b.unconsumed_requests() <= size, f"the back end may take {b.unconsumed_requests()} of a {size} ring"
        assert _dist(b.rsp_prod_pvt, b.req_cons) <= size, "the back end took more than the ring holds"
        if self.hostile:
            return  # the front end's own pointers are its own business now
        chain = [
            ("rsp_cons", f.rsp_cons),
            ("rsp_prod", s.rsp_prod),
            ("rsp_prod_pvt", b.rsp_prod_pvt),
            ("req_cons", b.req_cons),
            ("req_prod", s.req_prod),
            ("req_prod_pvt", f.req_prod_pvt),
        ]
        for (na, a), (nb, bb) in pairwise(chain):
            assert _dist(a, bb) <= size, f"{na} {a} is not at or behind {nb} {bb} (ring of {size})"
        assert _dist(f.rsp_cons, f.req_prod_pvt) <= size, "the front end has more than the ring outstanding"

    @invariant()
    def answered_exactly_once_in_order(self) -> None:
        if self.hostile:
            # Garbage requests may be taken, but never more than the ring holds at a time.
            return
        assert self.taken == list(self.queued)[: len(self.taken)], "the back end took requests out of order"
        assert self.answered == self.taken[: len(self.answered)], "responses out of order, or one answered twice"
