"""``lmbench``: kernel microbenchmarks in the style of lmbench: one kernel path, many times."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Literal

from pydantic import Field

from vframework import KernelCall, Operation, Params, Workload

#: Test name -> the guest kernel routine it drives.
TESTS = {
    "null_syscall": "syscall",
    "cli_sti": "critical_section",
    "context_switch": "context_switch",
    "timer_interrupt": "timer_interrupt",
    "device_register": "device_register",
}


class LmbenchParams(Params):
    test: Literal["null_syscall", "cli_sti", "context_switch", "timer_interrupt", "device_register"] = Field(
        "null_syscall", description="which kernel path to exercise"
    )
    iterations: int = Field(100_000, gt=0, description="how many times; the workload then ends")
    batch: int = Field(1_000, gt=0, description="iterations per operation (the engine sees one event per batch)")


class Lmbench(Workload):
    """Runs one guest kernel path ``iterations`` times, then ends (its vCPU halts)."""

    name = "lmbench"
    description = "kernel microbenchmark: null syscall, cli/sti, context switch, timer interrupt, device register"
    Params = LmbenchParams

    def run(self) -> Generator[Operation, Any, None]:
        p: LmbenchParams = self.params  # type: ignore[assignment]
        left = p.iterations
        while left > 0:
            n = min(p.batch, left)
            yield KernelCall(TESTS[p.test], n)
            left -= n
