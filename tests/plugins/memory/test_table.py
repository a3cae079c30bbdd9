"""The sharing services' numpy hash table behaves as a dict, through growth, deletions and clearing."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from vframework_memory.table import KeyTable

# Few distinct keys (collisions, overwrites) and some far apart (every bit of a uint64).
KEYS = st.one_of(st.integers(0, 40), st.integers(0, 2**64 - 1))
OPS = st.lists(
    st.tuples(
        st.sampled_from(["put", "delete", "clear"]), st.lists(KEYS, max_size=60, unique=True), st.integers(0, 2**31)
    ),
    max_size=40,
)


@given(OPS)
def test_a_key_table_is_a_dict(ops: list[tuple[str, list[int], int]]) -> None:
    table = KeyTable({"mpn": np.int64, "token": np.uint64})
    model: dict[int, tuple[int, int]] = {}
    for op, keys, value in ops:
        k = np.array(keys, dtype=np.uint64)
        if op == "put":
            mpns = np.arange(len(keys), dtype=np.int64) + value
            table.put(k, mpn=mpns, token=k ^ np.uint64(value))
            for key, mpn in zip(keys, mpns.tolist(), strict=True):
                model[key] = (mpn, key ^ value)
        elif op == "clear":
            table.clear()
            model.clear()
        else:
            found = table.find(k)
            table.delete(found[found >= 0])
            for key in keys:
                model.pop(key, None)
        assert len(table) == len(model)
    slots, keys_now = table.items()
    got = {
        int(key): (int(m), int(t))
        for key, m, t in zip(keys_now, table.get(slots, "mpn"), table.get(slots, "token"), strict=True)
    }
    assert got == model
    probe = np.array([*model, 2**64 - 2, 41], dtype=np.uint64)
    found = table.find(probe)
    for key, slot in zip(probe.tolist(), found.tolist(), strict=True):
        assert (slot >= 0) == (key in model)


def test_a_key_table_grows_past_its_first_capacity() -> None:
    table = KeyTable({"mpn": np.int64})
    keys = np.arange(100_000, dtype=np.uint64) * np.uint64(4096)  # page-aligned: a bad spread
    table.put(keys, mpn=np.arange(keys.size))
    assert len(table) == keys.size
    assert table.get(table.find(keys), "mpn").tolist() == list(range(keys.size))
    assert table.keys.size < 4 * keys.size  # grown, not bloated
