"""``fork``: page-table-heavy process creation and exit, like Adams & Agesen's forkwait."""

from __future__ import annotations

from collections.abc import Generator

import numpy as np
from pydantic import Field

from vframework.api import PAGE_SIZE, ForkWait, Operation, Params, Size, Touch, Workload, format_size


class ForkParams(Params):
    working_set: Size = Field(4 * 1024**2, description="memory the parent maps before forking (copied lazily)")
    touch: int = Field(16, ge=0, description="pages each child writes (copy-on-write faults) before it exits")
    iterations: int = Field(0, ge=0, description="fork/wait iterations, then the workload ends (0: forever)")


class ForkWorkload(Workload[ForkParams]):
    """The parent maps its working set, then forks and waits in a loop; each child writes a
    few pages and exits. Nearly all the work is page-table work: copying the parent's
    entries, write-protecting them, copy-on-write faults, tearing the child down."""

    name = "fork"
    description = "forkwait: fork a child that writes a few pages and exits, wait, repeat"
    params_model = ForkParams

    @classmethod
    def check(cls, params: Params, vm_memory_pages: int, swap_pages: int = 0) -> list[tuple[str, str]]:
        assert isinstance(params, ForkParams)  # the scenario validated it with params_model
        p: ForkParams = params
        need = p.working_set // PAGE_SIZE + p.touch
        if need > vm_memory_pages:
            return [
                (
                    "working_set",
                    f"{format_size(p.working_set)} plus the child's copies does not fit one "
                    f"vCPU's share of the VM's memory ({format_size(vm_memory_pages * PAGE_SIZE)})",
                )
            ]
        return []

    def address_space_pages(self) -> int:
        return max(1, self.params.working_set // PAGE_SIZE)

    def run(self) -> Generator[Operation, None, None]:
        p: ForkParams = self.params
        yield Touch(np.arange(self.address_space_pages(), dtype=np.int64), True)
        done = 0
        while not p.iterations or done < p.iterations:
            yield ForkWait(p.touch)
            done += 1
