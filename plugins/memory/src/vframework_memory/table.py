"""A hash table from 64-bit keys to rows of numpy columns, looked up and updated in batches.

A sharing scanner keeps one entry per page it has seen: millions on a large host. A Python dict
of objects costs a hundred bytes and more per entry and a Python step per page; this table
keeps each column in one numpy array (open addressing, linear probing, tombstones for deleted
entries) and answers a whole batch of keys with a few array operations per probe step.

Two choices keep a large table's resident memory near what its rows need:

- A key that is a function of a column (a content hash of the content token) is not stored:
  ``key_of`` names the column and the function, and probing recomputes it.
- Large columns live in their own anonymous memory mappings, not the C heap: when the table
  grows, the old columns go back to the operating system at once, where the allocator would
  keep them for later requests that never come.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from vframework.api import mapped_zeros

__all__ = ["KeyTable"]

EMPTY, FULL, DELETED = 0, 1, 2
_MIX = np.uint64(0x9E37_79B9_7F4A_7C15)
#: Grow (or rebuild) once full and deleted slots pass this share of the table, to at most
#: ``_FILL`` of the new one: a sharing scanner's tables hold about one entry per private page,
#: so their load is most of their bytes per simulated frame; linear probing stays short below 0.8.
_LOAD = 0.8
_FILL = 0.6
_MIN_CAPACITY = 1024
#: Slots of the old table moved per step of a rebuild.
_MOVE = 1 << 15

#: A key computed from a column: the column's name and the (vectorized) function.
KeyOf = tuple[str, Callable[[npt.NDArray[Any]], npt.NDArray[np.uint64]]]


class KeyTable:
    """``key -> row`` for unique uint64 keys; ``columns`` names each column and its dtype.

    With ``key_of = (column, function)`` a row's key is ``function(its column value)`` and is
    not stored; :meth:`put` checks that the keys it is given are those."""

    def __init__(self, columns: dict[str, Any], capacity: int = _MIN_CAPACITY, key_of: KeyOf | None = None) -> None:
        self._dtypes = {name: np.dtype(dtype) for name, dtype in columns.items()}
        if key_of is not None and key_of[0] not in self._dtypes:
            raise ValueError(f"key_of names column {key_of[0]!r}, not one of {sorted(self._dtypes)}")
        self._key_of = key_of
        self._alloc(max(_MIN_CAPACITY, 1 << (capacity - 1).bit_length()))

    def _alloc(self, capacity: int) -> None:
        self._shift = np.uint64(64 - (capacity.bit_length() - 1))
        self.keys: npt.NDArray[np.uint64] | None = (
            None if self._key_of is not None else mapped_zeros(capacity, np.uint64)
        )
        self.state = mapped_zeros(capacity, np.uint8)
        self.columns = {name: mapped_zeros(capacity, dtype) for name, dtype in self._dtypes.items()}
        self.size = 0
        self._used = 0  # full and deleted slots: what probing walks over

    @property
    def capacity(self) -> int:
        """Slots in the table (a power of two)."""
        return int(self.state.size)

    def _keys_at(self, slots: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
        if self.keys is not None:
            return self.keys[slots]
        column, function = self._key_of  # type: ignore[misc]
        return function(self.columns[column][slots])

    def __len__(self) -> int:
        return self.size

    @property
    def nbytes(self) -> int:
        stored = 0 if self.keys is None else self.keys.nbytes
        return int(stored + self.state.nbytes + sum(c.nbytes for c in self.columns.values()))

    def _home(self, keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        # Fibonacci hashing: the top bits of key x golden ratio spread any keys, even narrow ones.
        return ((keys * _MIX) >> self._shift).astype(np.int64)

    def find(self, keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        """The slot of each key, or -1 where it is absent."""
        keys = np.asarray(keys, dtype=np.uint64)
        out = np.full(keys.size, -1, dtype=np.int64)
        mask = self.capacity - 1
        pending = np.arange(keys.size)
        slot = self._home(keys)
        while pending.size:
            state = self.state[slot]
            hit = state == FULL
            hit[hit] = self._keys_at(slot[hit]) == keys[pending[hit]]
            out[pending[hit]] = slot[hit]
            go_on = ~hit & (state != EMPTY)
            pending, slot = pending[go_on], (slot[go_on] + 1) & mask
        return out

    def get(self, slots: npt.NDArray[np.int64], column: str) -> npt.NDArray[Any]:
        """A column's values at these slots."""
        values: npt.NDArray[Any] = self.columns[column][slots]
        return values

    def put(self, keys: npt.NDArray[np.uint64], **values: npt.ArrayLike) -> None:
        """Insert or overwrite the rows of these keys (unique within the call)."""
        keys = np.asarray(keys, dtype=np.uint64)
        if keys.size == 0:
            return
        if self._key_of is not None:
            column, function = self._key_of
            if not np.array_equal(function(np.asarray(values[column], dtype=self._dtypes[column])), keys):
                raise ValueError(f"keys are not the key function of column {column!r}")
        if (self._used + keys.size) > _LOAD * self.capacity:
            self._rebuild(self.size + keys.size)
        self._insert(keys, values)

    def _insert(self, keys: npt.NDArray[np.uint64], values: Mapping[str, npt.ArrayLike]) -> None:
        slots = self.find(keys)
        new = slots < 0
        slots[new] = self._claim(keys[new])
        if self.keys is not None:
            self.keys[slots] = keys
        self.state[slots] = FULL
        for name, column in self.columns.items():
            column[slots] = values[name]

    def _claim(self, keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        """Free slots for absent keys: each takes the first empty or deleted slot on its path."""
        out = np.empty(keys.size, dtype=np.int64)
        mask = self.capacity - 1
        pending = np.arange(keys.size)
        slot = self._home(keys)
        while pending.size:
            free = np.flatnonzero(self.state[slot] != FULL)
            # Keys whose paths reach the same free slot together: the first of them takes it
            # (which one changes nothing a lookup sees), the others probe on.
            won = np.zeros(pending.size, dtype=bool)
            won[free[np.unique(slot[free], return_index=True)[1]]] = True
            taken = slot[won]
            out[pending[won]] = taken
            self._used += int(np.count_nonzero(self.state[taken] == EMPTY))
            self.state[taken] = FULL
            self.size += int(taken.size)
            pending, slot = pending[~won], (slot[~won] + 1) & mask
        return out

    def delete(self, slots: npt.NDArray[np.int64]) -> None:
        """Remove the rows at these slots (found by :meth:`find`)."""
        slots = np.unique(np.asarray(slots, dtype=np.int64))
        slots = slots[self.state[slots] == FULL]
        self.state[slots] = DELETED
        self.size -= int(slots.size)

    def clear(self) -> None:
        """Remove every row, keeping the capacity (a table refilled to about its old size
        need not grow again through every smaller one)."""
        self.state[:] = EMPTY
        self.size = 0
        self._used = 0

    def items(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint64]]:
        """Every occupied slot and its key."""
        slots = np.flatnonzero(self.state == FULL)
        return slots, self._keys_at(slots)

    def _rebuild(self, need: int) -> None:
        old_keys, old_state, old_columns = self.keys, self.state, self.columns
        capacity = old_state.size
        while need > capacity * _FILL:
            capacity *= 2
        self._alloc(capacity)
        # The old rows move over a slice at a time: a table's growth costs the old and the new
        # table, not also a copy of every row (what a sharing scanner's peak memory is made of).
        for start in range(0, old_state.size, _MOVE):
            slots = np.flatnonzero(old_state[start : start + _MOVE] == FULL) + start
            if slots.size:
                rows = {name: column[slots] for name, column in old_columns.items()}
                if old_keys is not None:
                    keys = old_keys[slots]
                else:
                    column, function = self._key_of  # type: ignore[misc]
                    keys = function(rows[column])
                self._insert(keys, rows)
