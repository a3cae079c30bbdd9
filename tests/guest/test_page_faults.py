"""Guest page faults on whole runs: one per page of the working set, per vCPU's process, in every
mode; hidden faults only where the mode does not preallocate."""

from __future__ import annotations

import pytest
from vf_helpers import scenario, simulate

from vframework import PluginManager
from vframework.sim.units import PAGE_SIZE


@pytest.mark.parametrize("mode", ["bare-metal", "full", "paravirtual", "hardware-assisted", "trap-and-emulate"])
def test_guest_page_faults_equal_the_working_set(mode: str, plugins: PluginManager) -> None:
    working_set = 4 * 1024**2
    pages = working_set // PAGE_SIZE
    vms = [
        {
            "name": "a",
            "memory": "64MiB",
            "mode": mode,
            "workload": {"name": "memory", "working_set": "4MiB", "pattern": "sequential"},
        }
    ]
    data = scenario(vms, seed=4, duration="100ms", sample_interval="20ms", memory="2GiB", cpus=1)
    _, summary = simulate(data, plugins)
    vm = summary["vms"]["a"]
    assert vm["guest_page_faults"] == pages
    mode_cls = plugins.get("mode", mode)
    if mode_cls.preallocate:  # type: ignore[attr-defined]
        assert vm["hidden_page_faults"] == 0
        assert vm["mem_granted"] == 64 * 1024**2 // PAGE_SIZE
    else:
        assert vm["hidden_page_faults"] == pages
        assert vm["mem_granted"] == pages
    assert vm["mem_active"] == pages, "the sequential pattern keeps touching the whole working set"


def test_guest_page_faults_per_vcpu_process(plugins: PluginManager) -> None:
    """Each vCPU runs its own process with its own address space."""
    vms = [
        {
            "name": "a",
            "vcpus": 2,
            "memory": "64MiB",
            "workload": {"name": "memory", "working_set": "2MiB", "pattern": "sequential"},
        }
    ]
    data = scenario(vms, seed=4, duration="100ms", sample_interval="20ms", memory="2GiB")
    _, summary = simulate(data, plugins)
    assert summary["vms"]["a"]["guest_page_faults"] == 2 * 2 * 1024**2 // PAGE_SIZE
