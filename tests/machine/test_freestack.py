"""The free-number pool behaves exactly like the full stack it replaces (n-1..0, pushed on top)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vframework.machine.freestack import FreeStack


# Small pools, and pools whose stack is in a mapping of its own (64 KiB and more).
@given(
    n=st.one_of(st.integers(0, 40), st.integers(16_384, 17_000)),
    script=st.lists(st.tuples(st.booleans(), st.integers(0, 12)), max_size=30),
)
def test_same_order_as_a_full_stack(n: int, script: list[tuple[bool, int]]) -> None:
    pool, reference = FreeStack(n), list(range(n - 1, -1, -1))
    taken: list[int] = []
    for give, count in script:
        if give:
            k = min(count, len(taken))
            back, taken = taken[:k], taken[k:]
            pool.give(np.array(back, dtype=np.int64))
            reference.extend(back[::-1])
        else:
            k = min(count, len(reference))
            got = pool.take(k).tolist()
            want = [reference.pop() for _ in range(k)]
            assert got == want
            taken.extend(got)
        assert len(pool) == len(reference)
        assert sorted(pool.free().tolist()) == sorted(reference)


def test_taking_more_than_is_free_is_an_error() -> None:
    pool = FreeStack(3)
    pool.take(2)
    with pytest.raises(ValueError, match="cannot take 2 of 1"):
        pool.take(2)


def test_returning_more_than_was_taken_is_an_error() -> None:
    pool = FreeStack(100_000)
    taken = pool.take(3)
    pool.give(taken[:1])
    with pytest.raises(ValueError, match="returning 3 numbers to a pool that handed out 2"):
        pool.give(taken)
