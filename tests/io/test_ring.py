"""Xen's shared I/O ring: ring.h's geometry, wrap-around, notification, and the kit's machine."""

from __future__ import annotations

import pytest

from vframework.io.ring import BackRing, FrontRing, SharedRing
from vframework.testing.ring import RingMachine

TestRingMachine = RingMachine.TestCase
TestSmallRing = RingMachine.for_ring(256, 48).TestCase


def test_a_page_holds_the_largest_power_of_two_after_the_header() -> None:
    assert SharedRing(4096, 64).size == 32  # (4096 - 64) // 64 = 63 -> 32
    assert SharedRing(4096, 112).size == 32  # blkif: 36 -> 32
    assert SharedRing(256, 48).size == 4


def test_init_at_any_start_index() -> None:
    ring = SharedRing(start=2**32 - 1)
    assert (ring.req_prod, ring.req_event, ring.rsp_prod, ring.rsp_event) == (2**32 - 1, 0, 2**32 - 1, 0)
    front = FrontRing(ring)
    assert (front.req_prod_pvt, front.rsp_cons) == (2**32 - 1, 2**32 - 1)


def test_private_indices_wrap_as_in_c() -> None:
    front = FrontRing(SharedRing(start=2**32 - 1))
    front.req_prod_pvt += 1
    assert front.req_prod_pvt == 0
    assert front.free_requests() == front.size - 1


def test_a_push_notifies_only_when_the_event_index_is_passed() -> None:
    ring = SharedRing(start=2**32 - 2)
    front, back = FrontRing(ring), BackRing(ring)
    front.req_prod_pvt += 1
    assert front.push_requests_and_check_notify()  # req_event = start + 1: passed
    assert back.unconsumed_requests() == 1
    back.req_cons += 1
    front.req_prod_pvt += 1
    assert not front.push_requests_and_check_notify()  # the back end did not re-arm
    assert back.final_check_for_requests() == 1  # work waiting: it does not sleep
    back.req_cons += 1
    assert back.final_check_for_requests() == 0  # re-armed at req_cons + 1 (wrapped past 0)
    assert ring.req_event == 1
    front.req_prod_pvt += 1
    assert front.push_requests_and_check_notify()


def test_a_hostile_req_prod_never_lets_the_back_end_take_more_than_the_ring() -> None:
    ring = SharedRing()
    back = BackRing(ring)
    ring.req_prod = 10**12  # stored as 32 bits, far ahead
    assert back.unconsumed_requests() == ring.size
    assert back.request_cons_overflow(back.req_cons + ring.size)


@pytest.mark.parametrize("entry", [0, 5000])
def test_impossible_geometry_is_refused(entry: int) -> None:
    with pytest.raises(ValueError, match="entry"):
        SharedRing(4096, entry)


def test_a_bogus_req_prod_is_seen_as_overflow() -> None:
    ring = SharedRing(start=2**32 - 3)
    front, back = FrontRing(ring), BackRing(ring)
    for _ in range(ring.size):
        front.req_prod_pvt += 1
    front.push_requests_and_check_notify()
    assert not back.request_prod_overflow(ring.req_prod)  # a full ring, wrapped past 0: honest
    assert back.request_prod_overflow(ring.req_prod + 1)
    assert back.request_prod_overflow(ring.req_prod + 2**31)
