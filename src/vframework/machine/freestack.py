"""A pool of free numbers ``0..n-1`` (machine frames, guest-physical pages, swap slots).

Taking hands out numbers returned earlier first, most recent first (a stack), then numbers
never used, lowest first: the order of a stack initialised to ``n-1, ..., 0`` with returned
numbers pushed on top, which keeps allocation deterministic and frames of a VM contiguous
while nothing has been freed. Kept as a bump pointer over the never-used tail plus a numpy
stack of returned numbers. The stack is sized for ``n`` once, in a mapping of its own
(:func:`~vframework.sim.arrays.mapped_zeros`): its resident memory grows with the numbers
returned, not with ``n`` (a simulated guest page that was never freed costs nothing here),
and it never grows by copying.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from vframework.sim.arrays import mapped_zeros

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["FreeStack"]


class FreeStack:
    """Free numbers out of ``0..n-1``."""

    __slots__ = ("_next", "_stack", "_top", "n")

    def __init__(self, n: int) -> None:
        if n < 0:
            raise ValueError(f"a pool of {n} numbers")
        self.n = n
        self._next = 0  # numbers >= this have never been taken
        self._stack = mapped_zeros(n, np.int64 if n > np.iinfo(np.int32).max else np.int32)
        self._top = 0

    def __len__(self) -> int:
        return self._top + self.n - self._next

    def take(self, count: int) -> npt.NDArray[np.int64]:
        """``count`` free numbers (int64), removed from the pool; the caller checked there are
        enough (a ValueError otherwise)."""
        if count < 0 or count > len(self):
            raise ValueError(f"cannot take {count} of {len(self)} free numbers")
        k = min(count, self._top)
        reused = self._stack[self._top - k : self._top][::-1].astype(np.int64)
        self._top -= k
        fresh = np.arange(self._next, self._next + count - k, dtype=np.int64)
        self._next += count - k
        return fresh if k == 0 else reused if k == count else np.concatenate([reused, fresh])

    def give(self, numbers: npt.NDArray[np.integer]) -> None:
        """Return ``numbers`` (taken earlier, not yet returned) to the pool."""
        k = int(numbers.size)
        if self._top + k > self._next:
            raise ValueError(f"returning {k} numbers to a pool that handed out {self._next - self._top}")
        self._stack[self._top : self._top + k] = numbers[::-1]
        self._top += k

    def free(self) -> npt.NDArray[np.int64]:
        """Every number currently in the pool (for consistency checks; not a hot path)."""
        return np.concatenate(
            [self._stack[: self._top].astype(np.int64), np.arange(self._next, self.n, dtype=np.int64)]
        )
