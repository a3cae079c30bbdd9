"""``io``: an I/O-bound guest: a little computation, then a request it waits for, repeatedly."""

from __future__ import annotations

from collections.abc import Generator
from typing import Literal

from pydantic import Field

from vframework.api import IO, Compute, Duration, Operation, Params, Size, Workload


class IOParams(Params):
    compute: Duration = Field(100_000, description="CPU time between requests")
    nbytes: Size = Field(16 * 1024, description="bytes per request")
    write_ratio: float = Field(0.3, ge=0.0, le=1.0, description="fraction of requests that write")
    device: Literal["disk", "net"] = Field("disk", description="which virtual device the requests go to")


class IOBound(Workload[IOParams]):
    """Computes briefly, submits one request, blocks until its completion interrupt; repeats."""

    name = "io"
    description = "short computation, then a blocking I/O request, repeatedly"
    params_model = IOParams

    def run(self) -> Generator[Operation, None, None]:
        p: IOParams = self.params
        rng = self.context.rng
        cycles = self.context.cycles(p.compute)
        while True:
            yield Compute(cycles)
            yield IO(p.nbytes, bool(rng.random() < p.write_ratio), p.device)
