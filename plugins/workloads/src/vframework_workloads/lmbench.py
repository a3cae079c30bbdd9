"""``lmbench``: kernel microbenchmarks in the style of lmbench: one kernel path, many times."""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from vframework.api import (
    PAGE_SIZE,
    Fault,
    ForkExec,
    ForkWait,
    KernelCall,
    MapUnmap,
    Operation,
    Params,
    Touch,
    Workload,
)

if TYPE_CHECKING:
    import numpy.typing as npt

#: Test name -> the guest kernel routine it drives.
TESTS = {
    "null_syscall": "syscall",
    "cli_sti": "critical_section",
    "context_switch": "context_switch",
    "timer_interrupt": "timer_interrupt",
    "device_register": "device_register",
    # Adams & Agesen's nanobenchmarks: one sensitive operation, an empty handler.
    "nano_syscall": "syscall_entry",
    "nano_in": "port_probe",
    "nano_cr8wr": "set_task_priority",
    "nano_callret": "leaf_call",
    "nano_pgfault": "page_fault_entry",
    "nano_divzero": "exception_entry",
    "nano_ptemod": "pte_write",
}


#: Tests that fork the benchmark's process.
_FORKS = ("fork", "exec", "shell")


#: lat_mmap writes a byte every PSIZE bytes of the mapping's first tenth.
_MMAP_STRIDE = 16 * 1024


def _mmap_writes(pages: int) -> npt.NDArray[np.int64]:
    """The pages of a ``pages``-page mapping that lat_mmap writes: every 16 KiB of its first tenth."""
    span = pages * PAGE_SIZE / 10
    return np.arange(0, span, _MMAP_STRIDE, dtype=np.float64).astype(np.int64) // PAGE_SIZE


class LmbenchParams(Params):
    test: Literal[
        "null_syscall",
        "cli_sti",
        "context_switch",
        "timer_interrupt",
        "device_register",
        "page_fault",
        "fork",
        "exec",
        "shell",
        "mmap",
        "divzero",
        "nano_syscall",
        "nano_in",
        "nano_cr8wr",
        "nano_callret",
        "nano_pgfault",
        "nano_divzero",
        "nano_ptemod",
    ] = Field(
        "null_syscall",
        description="which kernel path to exercise (exec: fork, exec a small program, wait; shell: the same "
        "through sh -c; divzero: a divide error; nano_*: Adams & Agesen's nanobenchmarks, one sensitive "
        "operation with an empty handler)",
    )
    fork_pages: int = Field(256, gt=0, description="fork, exec and shell tests: pages the forking process maps")
    exec_pages: int = Field(
        53,
        gt=0,
        description="exec and shell tests: pages the exec'd program touches (a dynamically linked hello world: "
        "69 page faults from fork to exit, less the 16 of a fork that exits at once)",
    )
    shell_pages: int = Field(
        137, gt=0, description="shell test: pages the shell touches before it execs the program (bash -c: 206 - 69)"
    )
    mmap_pages: int = Field(
        2_048,
        gt=0,
        description="mmap test: pages of the file mapped each time (lat_mmap writes every 16 KiB of its first "
        "tenth); 8 MiB, lmbench's size when MB is not set",
    )
    iterations: int = Field(100_000, gt=0, description="how many times; the workload then ends")
    batch: int = Field(1_000, gt=0, description="iterations per operation (the engine sees one event per batch)")


class Lmbench(Workload[LmbenchParams]):
    """Runs one guest kernel path ``iterations`` times, then ends (its vCPU halts)."""

    name = "lmbench"
    description = (
        "kernel microbenchmark: syscall, cli/sti, context switch, timer, device register, page fault, fork, exec, "
        "shell, "
        "divide error, and Adams & Agesen's nanobenchmarks"
    )
    params_model = LmbenchParams

    def address_space_pages(self) -> int:
        p: LmbenchParams = self.params
        if p.test == "page_fault":
            return p.iterations  # every iteration faults in a fresh page
        if p.test == "nano_ptemod":
            return 1  # the page whose entry is rewritten
        if p.test == "mmap":
            return p.mmap_pages
        return p.fork_pages if p.test in _FORKS else 0

    @classmethod
    def check(cls, params: Params, vm_memory_pages: int, swap_pages: int = 0) -> list[tuple[str, str]]:
        assert isinstance(params, LmbenchParams)  # the scenario validated it with params_model
        p: LmbenchParams = params
        need = p.iterations if p.test == "page_fault" else (2 * p.fork_pages if p.test in _FORKS else 0)
        if p.test == "mmap":
            need = len(_mmap_writes(p.mmap_pages))
        if p.test == "exec":
            need += p.exec_pages
        elif p.test == "shell":
            need += max(p.exec_pages, p.shell_pages)
        if need > vm_memory_pages:
            return [
                (
                    {"page_fault": "iterations", "mmap": "mmap_pages"}.get(p.test, "fork_pages"),
                    f"the {p.test} test needs {need} pages; one vCPU's share of the VM has {vm_memory_pages}",
                )
            ]
        return []

    def run(self) -> Generator[Operation, None, None]:
        p: LmbenchParams = self.params
        if p.test == "page_fault":
            for start in range(0, p.iterations, p.batch):
                yield Touch(np.arange(start, min(start + p.batch, p.iterations), dtype=np.int64), True)
            return
        if p.test == "divzero":
            for _ in range(p.iterations):
                yield Fault("divide_error")
            return
        if p.test == "fork":
            yield Touch(np.arange(p.fork_pages, dtype=np.int64), True)
            for _ in range(p.iterations):
                yield ForkWait(0)
            return
        if p.test in ("exec", "shell"):
            yield Touch(np.arange(p.fork_pages, dtype=np.int64), True)
            programs = (p.shell_pages, p.exec_pages) if p.test == "shell" else (p.exec_pages,)
            for _ in range(p.iterations):
                yield ForkExec(programs, shell=p.test == "shell")
            return
        if p.test == "mmap":
            writes = _mmap_writes(p.mmap_pages)
            for _ in range(p.iterations):
                yield MapUnmap(0, p.mmap_pages, writes)
            return
        if p.test == "nano_ptemod":
            yield Touch(np.zeros(1, dtype=np.int64), True)
        left = p.iterations
        while left > 0:
            n = min(p.batch, left)
            yield KernelCall(TESTS[p.test], n)
            left -= n
