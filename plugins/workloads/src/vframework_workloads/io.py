"""``io``: an I/O-bound guest: a little computation, then requests it waits for, repeatedly."""

from __future__ import annotations

from collections.abc import Generator
from typing import Literal

from pydantic import Field

from vframework.api import IO, Compute, Duration, Operation, Params, Size, Workload

#: A disk sector: requests are placed in these.
_SECTOR = 512


class IOParams(Params):
    compute: Duration = Field(100_000, description="CPU time between requests")
    nbytes: Size = Field(16 * 1024, description="bytes per request")
    write_ratio: float = Field(0.3, ge=0.0, le=1.0, description="fraction of requests that write")
    device: Literal["disk", "net"] = Field("disk", description="which virtual device the requests go to")
    depth: int = Field(1, ge=1, le=256, description="requests submitted together, all waited for (queue depth)")
    pattern: Literal["sequential", "random"] = Field(
        "sequential", description="where requests land on a disk: each after the previous, or anywhere in span"
    )
    span: Size = Field(1024**3, description="the region of the disk random requests fall in")
    barrier_every: int = Field(
        0, ge=0, description="make every n-th batch a reorder barrier (a journal commit); 0: never"
    )


class IOBound(Workload[IOParams]):
    """Computes briefly, submits ``depth`` requests, blocks until they complete; repeats.

    Sectors and barriers only matter to a device plugin attached to the VM; random sectors
    come from a stream of their own, so the other draws are the same whatever the pattern."""

    name = "io"
    description = "short computation, then blocking I/O requests, repeatedly"
    params_model = IOParams

    def run(self) -> Generator[Operation, None, None]:
        p: IOParams = self.params
        rng = self.context.rng
        sectors = rng.spawn(1)[0] if p.pattern == "random" else None
        cycles = self.context.cycles(p.compute)
        slots = max(1, (p.span - p.nbytes) // _SECTOR)
        batch = 0
        while True:
            yield Compute(cycles)
            batch += 1
            barrier = p.barrier_every > 0 and batch % p.barrier_every == 0
            starts = () if sectors is None else tuple((sectors.integers(slots, size=p.depth) // 8 * 8).tolist())
            write = bool(rng.random() < p.write_ratio)
            if p.depth == 1 and not starts and not barrier:
                yield IO(p.nbytes, write, p.device)
            else:
                yield IO(p.nbytes, write, p.device, barrier=barrier, count=p.depth, sectors=starts)
