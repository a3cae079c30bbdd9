"""``idle`` and ``cpu``: the simplest guests."""

from __future__ import annotations

from collections.abc import Generator

from pydantic import Field

from vframework.api import Compute, Duration, Operation, Params, Sleep, Workload


class IdleParams(Params):
    tick: Duration = Field(10_000_000, description="period of its one periodic job: the process wakes this often")
    work: Duration = Field(20_000, description="CPU time of the job per wake-up")


class Idle(Workload[IdleParams]):
    """A guest with nothing to do but a periodic job (a daemon's poll): it wakes on a sleep
    timer, works briefly and sleeps again. Its kernel's own ticks come from the VM's ``hz``."""

    name = "idle"
    description = "sleeps; wakes every tick for a short periodic job"
    params_model = IdleParams

    def run(self) -> Generator[Operation, None, None]:
        p: IdleParams = self.params
        work = self.context.cycles(p.work)
        while True:
            yield Sleep(p.tick)
            yield Compute(work)


class CPUParams(Params):
    burst: Duration = Field(10_000_000, description="CPU time per burst")
    think: int | Duration = Field(0, description="sleep between bursts (0: never sleeps, fully CPU-bound)")
    total: int | Duration = Field(0, description="stop after this much CPU time (0: run forever)")


class CPUBound(Workload[CPUParams]):
    """Computes in bursts; with ``think`` > 0 it sleeps between them (an interactive guest)."""

    name = "cpu"
    description = "computes in bursts, optionally sleeping between them"
    params_model = CPUParams

    def run(self) -> Generator[Operation, None, None]:
        p: CPUParams = self.params
        burst = self.context.cycles(p.burst)
        done = 0
        while not p.total or done < p.total:
            yield Compute(burst)
            done += p.burst
            if p.think:
                yield Sleep(p.think)
