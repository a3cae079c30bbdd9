"""The disk behind a virtual disk: seek and transfer time, and what its blocks hold.

Seek time grows with the square root of the distance the head travels (the arm accelerates
then decelerates), from ``seek_min`` for the next track to ``seek_max`` across the whole disk;
a request that starts where the previous one ended (sequential) pays no seek. Transfer time is
the request's bytes at ``bandwidth``. The defaults are a 2000s 7,200 rpm disk, the kind the
papers measured: what makes an elevator (reordering by sector) worth having.

Blocks hold content tokens, as guest pages do: a write stores the tokens of the guest's buffer
pages, a read gives them back, so data round-trips exactly and a guest can only read what was
written to its own disk. A block never written reads as zero.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from pydantic import Field

from vframework.api import PAGE_SIZE, Duration, Params, Size

__all__ = ["SECTORS_PER_PAGE", "BufferParams", "Buffers", "Disk", "DiskParams", "pages_of"]

SECTOR = 512
SECTORS_PER_PAGE = PAGE_SIZE // SECTOR


class BufferParams(Params):
    """What every device with guest I/O buffers takes."""

    buffer_pages: int = Field(
        256, ge=1, le=65_536, description="guest pages the driver keeps as I/O buffers (bounds the data in flight)"
    )


class DiskParams(BufferParams):
    capacity: Size = Field(64 * 1024**3, description="the disk's size")
    bandwidth: Size = Field(60 * 1024**2, description="sustained transfer rate, bytes per second")
    seek_min: Duration = Field(800_000, description="seek to the next track, with settling")
    seek_max: Duration = Field(12_000_000, description="full-stroke seek (one end of the disk to the other)")


class Disk:
    """One disk: where its head is, and the content of the blocks written so far."""

    def __init__(self, params: DiskParams) -> None:
        self.params = params
        self.sectors = params.capacity // SECTOR
        self.head = 0
        # Written blocks only (a 64 GiB disk has 16 Mi blocks: no dense array for them).
        self._blocks: dict[int, int] = {}
        #: Nanoseconds the head spent seeking, and requests served.
        self.seek_ns = 0
        self.served = 0

    def service_ns(self, sector: int, nbytes: int) -> int:
        """Serve a request at ``sector`` now: the seek from the head, then the transfer; the
        head ends after the request."""
        p = self.params
        distance = abs(sector - self.head)
        seek = 0
        if distance:
            seek = p.seek_min + int((p.seek_max - p.seek_min) * math.sqrt(distance / self.sectors))
        self.seek_ns += seek
        self.served += 1
        self.head = sector + -(-nbytes // SECTOR)
        return seek + -(-nbytes * 1_000_000_000 // p.bandwidth)

    def check(self, sector: int, nbytes: int) -> str | None:
        """Why a request cannot be served (out of the disk), or None."""
        if nbytes <= 0 or sector < 0 or sector + -(-nbytes // SECTOR) > self.sectors:
            return f"sectors {sector}+{-(-nbytes // SECTOR)} are outside the disk's {self.sectors}"
        return None

    def write(self, sector: int, tokens: npt.NDArray[np.uint64]) -> None:
        first = sector // SECTORS_PER_PAGE
        for i, token in enumerate(tokens.tolist()):
            self._blocks[first + i] = token

    def read(self, sector: int, pages: int) -> npt.NDArray[np.uint64]:
        first = sector // SECTORS_PER_PAGE
        get = self._blocks.get
        return np.array([get(first + i, 0) for i in range(pages)], dtype=np.uint64)


class Buffers:
    """The driver's I/O buffer pages: reserved in the guest at the first request, then handed
    to requests and back (a request waits while too few are free)."""

    def __init__(self, pages: int) -> None:
        self.pages = pages
        self._free: npt.NDArray[np.int64] | None = None
        self._count = 0

    def reserve(self, ppns: npt.NDArray[np.int64]) -> None:
        self._free = ppns.astype(np.int64).copy()
        self._count = int(ppns.size)

    @property
    def ready(self) -> bool:
        return self._free is not None

    def take(self, count: int) -> npt.NDArray[np.int64] | None:
        """``count`` free buffer pages, or None if fewer are free."""
        assert self._free is not None
        if count > self._count:
            return None
        self._count -= count
        return self._free[self._count : self._count + count].copy()

    def give(self, ppns: npt.NDArray[np.int64]) -> None:
        assert self._free is not None
        self._free[self._count : self._count + ppns.size] = ppns
        self._count += int(ppns.size)


def pages_of(nbytes: int) -> int:
    """Guest pages a request of ``nbytes`` spans."""
    return -(-nbytes // PAGE_SIZE)
