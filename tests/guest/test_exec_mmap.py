"""exec, sh -c and mmap/munmap (lmbench's lat_proc exec and shell, lat_mmap) on whole runs in
every mode: the page faults, forks and flushes each one implies, and nothing left behind."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from vf_helpers import scenario, simulate

from vframework import ForkExec, MapUnmap, PluginManager

MODES = ["bare-metal", "full", "paravirtual", "hardware-assisted", "trap-and-emulate"]


def _run(plugins: PluginManager, mode: str, workload: dict[str, Any]) -> dict[str, Any]:
    vms = [{"name": "a", "memory": "64MiB", "hz": 0, "mode": mode, "workload": {"name": "lmbench", **workload}}]
    data = scenario(vms, seed=3, duration="2s", sample_interval="1s", memory="1GiB", cpus=1)
    _, summary = simulate(data, plugins)
    vm: dict[str, Any] = summary["vms"]["a"]
    return vm


@pytest.mark.parametrize("mode", MODES)
def test_exec_and_shell_fault_in_each_program(mode: str, plugins: PluginManager) -> None:
    base = {"fork_pages": 16, "exec_pages": 5, "shell_pages": 7, "iterations": 6}
    exec_vm = _run(plugins, mode, {**base, "test": "exec"})
    shell_vm = _run(plugins, mode, {**base, "test": "shell"})
    # The parent faults in its 16 pages once; every exec'd program faults in all of its own.
    assert exec_vm["guest_page_faults"] == 16 + 6 * 5
    assert shell_vm["guest_page_faults"] == 16 + 6 * (7 + 5)
    assert exec_vm["forks"] == shell_vm["forks"] == 6
    # fork, exec, exit per iteration; the shell execs once more.
    assert shell_vm["syscalls"] - exec_vm["syscalls"] == 6


def test_exec_costs_xen_its_pinned_tables(plugins: PluginManager) -> None:
    """Under Xen's direct paging an exec'd program's new page table is built through
    hypercalls: an exec costs more than natively, and makes hypercalls where native makes none."""
    base = {"fork_pages": 16, "exec_pages": 5, "iterations": 6, "test": "exec"}
    native = _run(plugins, "bare-metal", base)
    xen = _run(plugins, "paravirtual", base)
    assert xen["hypercalls"] > native["hypercalls"] == 0
    assert xen["cpu_run_ns"] > native["cpu_run_ns"]


@pytest.mark.parametrize("mode", MODES)
def test_mmap_faults_the_written_pages_and_unmaps_them(mode: str, plugins: PluginManager) -> None:
    vm = _run(plugins, mode, {"test": "mmap", "mmap_pages": 640, "iterations": 5})
    # lat_mmap writes every 16 KiB of the first tenth: 64 pages -> pages 0, 4, ..., 60.
    assert vm["guest_page_faults"] == 5 * 16
    assert vm["syscalls"] == 5 * 2
    assert vm["tlb_flushes"] >= 5


def test_bad_operations_are_refused_with_what_was_wrong() -> None:
    with pytest.raises(ValueError, match="at least one program"):
        ForkExec(())
    with pytest.raises(ValueError, match="two programs"):
        ForkExec((3,), shell=True)
    with pytest.raises(ValueError, match="outside a 4-page mapping"):
        MapUnmap(0, 4, np.array([0, 4], dtype=np.int64))


def _guest_after(plugins: PluginManager, workload: dict[str, Any]) -> Any:
    vms = [{"name": "a", "memory": "64MiB", "hz": 0, "workload": {"name": "lmbench", **workload}}]
    sim, _ = simulate(scenario(vms, seed=3, duration="1s", sample_interval="1s", memory="1GiB", cpus=1), plugins)
    return sim.hypervisor.vms[0].guest


def test_exec_and_mmap_leave_nothing_behind(plugins: PluginManager) -> None:
    """After fork-exec-exit the child's and its programs' pages are free again, and after an
    mmap iteration its mapping is gone: the guest ends as a run of plain forks ends."""
    forks = _guest_after(plugins, {"test": "fork", "fork_pages": 16, "iterations": 4})
    for workload in (
        {"test": "exec", "fork_pages": 16, "exec_pages": 9, "iterations": 4},
        {"test": "shell", "fork_pages": 16, "exec_pages": 9, "shell_pages": 30, "iterations": 4},
    ):
        guest = _guest_after(plugins, workload)
        assert len(guest.processes) == 1
        assert int((guest.processes[0].page_table >= 0).sum()) == 16
        assert guest.free_pages == forks.free_pages, workload["test"]
    mapped = _guest_after(plugins, {"test": "mmap", "mmap_pages": 640, "iterations": 4})
    assert int((mapped.processes[0].page_table >= 0).sum()) == 0
