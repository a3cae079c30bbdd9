"""The sharing services' numpy hash table behaves as a dict, through growth, deletions and clearing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from vframework_memory.content import content_hash
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
    assert table.capacity < 4 * keys.size  # grown, not bloated


@given(st.lists(st.tuples(st.lists(st.integers(0, 2**64 - 1), max_size=50, unique=True), st.booleans()), max_size=30))
def test_a_key_table_with_derived_keys_is_a_dict_of_its_column(ops: list[tuple[list[int], bool]]) -> None:
    # Keys recomputed from a narrow hash of the token: colliding keys, never stored.
    narrow = lambda tokens: content_hash(tokens, 6)  # noqa: E731
    table = KeyTable({"mpn": np.int64, "token": np.uint64}, key_of=("token", narrow))
    assert table.keys is None
    model: dict[int, tuple[int, int]] = {}
    for step, (tokens, delete) in enumerate(ops):
        t = np.array(tokens, dtype=np.uint64)
        keys = narrow(t)
        # One token per key in a call (keys are unique within a put): the last one wins.
        _, last = np.unique(keys[::-1], return_index=True)
        pick = t.size - 1 - last
        t, keys = t[pick], keys[pick]
        if delete:
            found = table.find(keys)
            table.delete(found[found >= 0])
            for key in keys.tolist():
                model.pop(key, None)
        else:
            table.put(keys, mpn=np.full(t.size, step), token=t)
            for key, token in zip(keys.tolist(), t.tolist(), strict=True):
                model[key] = (step, token)
        assert len(table) == len(model)
    slots, keys_now = table.items()
    got = {
        int(k): (int(m), int(tok))
        for k, m, tok in zip(keys_now, table.get(slots, "mpn"), table.get(slots, "token"), strict=True)
    }
    assert got == model


def test_derived_keys_must_be_the_key_function_of_the_column() -> None:
    table = KeyTable({"token": np.uint64}, key_of=("token", content_hash))
    tokens = np.arange(5, dtype=np.uint64)
    with pytest.raises(ValueError, match="key function of column 'token'"):
        table.put(tokens, token=tokens)
    with pytest.raises(ValueError, match="names column 'hash'"):
        KeyTable({"token": np.uint64}, key_of=("hash", content_hash))


def test_a_derived_key_table_grows() -> None:
    table = KeyTable({"token": np.uint64}, key_of=("token", content_hash))
    tokens = np.arange(100_000, dtype=np.uint64)
    table.put(content_hash(tokens), token=tokens)
    assert table.get(table.find(content_hash(tokens)), "token").tolist() == tokens.tolist()
    assert table.nbytes == table.capacity * 9  # a token and a state byte per slot, no key
