"""Large numpy arrays in memory mappings of their own.

A table that grows by doubling frees its old columns; the C allocator keeps what large blocks
it freed for later requests, which a simulation's next, larger table never makes. An array in
an anonymous mapping of its own is returned to the operating system the moment it is freed,
and its pages cost resident memory only once written: an array sized for the worst case (every
frame of a host returned to a free pool) costs what is used of it.
"""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["mapped_zeros"]

#: Below this many bytes an array is an ordinary one: a mapping is at least a page, and the
#: allocator serves small blocks well.
OWN_MAPPING_BYTES = 1 << 16
#: Where private anonymous mappings exist (POSIX); elsewhere arrays are ordinary ones.
_PRIVATE: int = getattr(mmap, "MAP_PRIVATE", 0)


def mapped_zeros(n: int, dtype: npt.DTypeLike) -> npt.NDArray[Any]:
    """``n`` zeros of ``dtype``, writable; in an anonymous mapping of their own when they take
    :data:`OWN_MAPPING_BYTES` or more."""
    kind = np.dtype(dtype)
    nbytes = n * kind.itemsize
    if nbytes < OWN_MAPPING_BYTES or not _PRIVATE:
        return np.zeros(n, dtype=kind)
    # Private: a process forked later (a sweep's worker) gets its own copy on write; a shared
    # anonymous mapping (mmap's default) would let it write into this process's array.
    return np.frombuffer(mmap.mmap(-1, nbytes, flags=_PRIVATE), dtype=kind)
