"""Arrays in mappings of their own: zeros, writable, private to the process that made them."""

from __future__ import annotations

import mmap
import os
import sys

import numpy as np
import pytest

from vframework.sim.arrays import OWN_MAPPING_BYTES, mapped_zeros


@pytest.mark.parametrize("n", [0, 10, OWN_MAPPING_BYTES // 8, 3 * OWN_MAPPING_BYTES + 5])
def test_mapped_zeros_are_writable_zeros(n: int) -> None:
    a = mapped_zeros(n, np.int64)
    assert a.shape == (n,)
    assert a.dtype == np.int64
    assert not a.any()
    a[:] = np.arange(n)
    assert a.tolist() == list(range(n))


def test_a_large_array_has_its_own_mapping() -> None:
    a = mapped_zeros(OWN_MAPPING_BYTES, np.uint8)
    if hasattr(mmap, "MAP_PRIVATE"):
        assert isinstance(a.base, memoryview)
        assert isinstance(a.base.obj, mmap.mmap)
    assert mapped_zeros(OWN_MAPPING_BYTES - 1, np.uint8).base is None


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform != "linux", reason="fork: Linux")
def test_a_forked_process_writes_its_own_copy() -> None:
    # A sweep's worker forked from a simulation must not write into the parent's tables.
    a = mapped_zeros(1 << 16, np.int64)
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        a[:] = 7
        os._exit(0)
    os.waitpid(pid, 0)
    assert not a.any()
