"""Ring operations per second: Xen's shared ring (``vframework.io.ring``) against a bare list.

The model: a front end and a back end pass ``size`` requests through one ring of 32 slots
(a 4 KiB page of 112-byte blkif entries), in bursts of 8: the front end produces a burst
(``get_request`` and ``req_prod_pvt += 1`` per request) and pushes it
(``push_requests_and_check_notify``); the back end consumes what is there
(``unconsumed_requests``, ``get_request``, ``req_cons += 1``), answers each in place
(``get_response``, ``rsp_prod_pvt += 1``) and pushes its responses; the front end takes them
(``unconsumed_responses``, ``get_response``, ``rsp_cons += 1``) and re-arms
(``final_check_for_responses``). One *operation* is one request's full trip: produced,
published, consumed, answered, published, taken.

Baseline: the same trips through a plain Python list used as a queue of slot objects (append
the request, pop it, write the answer, pop it), with no indices, wrap-around, event indices or
bounds: what the ring's semantics cost over the least a Python queue can do.

Row ``ring.ops``: request trips per wall second; ``baseline``: the list's in the same run.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from common import best_of_interleaved, row

from vframework.io.ring import BackRing, FrontRing, RingSlot, SharedRing

DEFAULT_SIZE = 1_000_000
SMOKE_SIZE = 2_000
BURST = 8


def _ring(size: int) -> Any:
    shared = SharedRing(4096, 112, start=2**32 - 1000)  # wraps during the run
    front, back = FrontRing(shared), BackRing(shared)

    def body() -> int:
        done = 0
        while done < size:
            for i in range(BURST):
                slot = front.get_request(front.req_prod_pvt)
                slot.id = done + i
                slot.payload = i
                front.req_prod_pvt += 1
            front.push_requests_and_check_notify()
            for _ in range(back.unconsumed_requests()):
                request = back.get_request(back.req_cons)
                back.req_cons += 1
                response = back.get_response(back.rsp_prod_pvt)
                response.id, response.payload = request.id, 0
                back.rsp_prod_pvt += 1
            back.push_responses_and_check_notify()
            while True:
                for _ in range(front.unconsumed_responses()):
                    front.get_response(front.rsp_cons)
                    front.rsp_cons += 1
                    done += 1
                if not front.final_check_for_responses():
                    break
        return done

    return body


def _list(size: int) -> Any:
    slots = [RingSlot() for _ in range(32)]

    def body() -> int:
        done = 0
        requests: deque[RingSlot] = deque()
        responses: deque[RingSlot] = deque()
        while done < size:
            for i in range(BURST):
                slot = slots[(done + i) & 31]
                slot.id = done + i
                slot.payload = i
                requests.append(slot)
            while requests:
                request = requests.popleft()
                request.payload = 0
                responses.append(request)
            while responses:
                responses.popleft()
                done += 1
        return done

    return body


def run(quick: bool = False, size: int | None = None, repeat: int | None = None) -> list[dict[str, Any]]:
    size = size or (DEFAULT_SIZE // 10 if quick else DEFAULT_SIZE)
    best = best_of_interleaved({"ring": lambda: _ring(size), "list": lambda: _list(size)}, repeat or 3)
    ring, baseline = size / best["ring"], size / best["list"]
    return [row("ring.ops", "ring (32 slots, bursts of 8)", ring, "ops/s", baseline, "Python list")]
