"""What the sharing services compute from a page's content token."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from vframework.api import MemoryContext

__all__ = ["PRIVATE", "SHARED", "content_hash", "share_checked"]

_GAMMA = np.uint64(0x9E37_79B9_7F4A_7C15)
_M1 = np.uint64(0xBF58_476D_1CE4_E5B9)
_M2 = np.uint64(0x94D0_49BB_1331_11EB)
_WIDTH = 64


def content_hash(tokens: npt.NDArray[np.uint64], bits: int = _WIDTH) -> npt.NDArray[np.uint64]:
    """A ``bits``-wide hash of each page's content (SplitMix64's finalizer: every input bit
    reaches every output bit). Fewer bits make distinct contents collide, as a real hash can:
    a match is a hint, and only the full comparison may decide to share."""
    z = tokens.astype(np.uint64) + _GAMMA
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    z ^= z >> np.uint64(31)
    return z >> np.uint64(_WIDTH - bits) if bits < _WIDTH else z


PRIVATE, SHARED = 1, 2


def share_checked(
    memory: MemoryContext,
    vm_id: int,
    ppns: npt.ArrayLike,
    sources: npt.ArrayLike,
    targets: npt.ArrayLike,
    expect: npt.ArrayLike,
) -> npt.NDArray[np.bool_]:
    """Share the VM's pages ``ppns`` (now on frames ``sources``) onto ``targets``, each of which
    must still hold content ``expect`` and be a VM's frame; returns which were shared.

    Decisions made from a table can be stale by the time they are applied: a shared frame freed
    and reused, a hinted page written. A target that is itself being shared away waits for the
    next scan."""
    target = np.array(targets, dtype=np.int64)
    state = memory.frame_state(target)
    ok: npt.NDArray[np.bool_] = (state == PRIVATE) | (state == SHARED)
    ok &= memory.content(target) == np.array(expect, dtype=np.uint64)
    ok &= ~np.isin(target, np.array(sources, dtype=np.int64))
    memory.share(vm_id, np.array(ppns, dtype=np.int64)[ok], target[ok])
    return ok
