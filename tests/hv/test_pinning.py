"""Xen pins a new address space's page tables and unpins them when it goes: ``pt_pin`` per
table page, each time, and an MMUEXT hypercall for each; no other mode pays it."""

from __future__ import annotations

from typing import Any

import pytest
from vf_helpers import scenario, simulate

from vframework import PluginManager
from vframework.machine.costs import CostModel

FORKS = 20
PIN = 100_000


def _forks(plugins: PluginManager, mode: str, pt_pin: int) -> dict[str, Any]:
    workload = {"name": "lmbench", "test": "fork", "iterations": FORKS, "batch": 1}
    vms = [{"name": "a", "memory": "64MiB", "mode": mode, "hz": 0, "workload": workload}]
    data = scenario(vms, seed=1, duration="1s", cpus=1, costs={"pt_pin": pt_pin})
    _, summary = simulate(data, plugins)
    vm: dict[str, Any] = summary["vms"]["a"]
    assert vm["forks"] == FORKS
    return vm


def test_xen_pins_and_unpins_each_forked_address_space(plugins: PluginManager) -> None:
    free, pinned = _forks(plugins, "paravirtual", 0), _forks(plugins, "paravirtual", PIN)
    assert pinned["hypercalls"] - free["hypercalls"] == 2 * FORKS, "one MMUEXT to pin, one to unpin"
    costs = CostModel()
    # 256 pages mapped: the top-level table and one leaf table, each pinned and unpinned.
    cycles = FORKS * (2 * costs.hypercall + 2 * 2 * PIN)
    extra = pinned["cpu_run_ns"] - free["cpu_run_ns"]
    assert costs.ns(cycles) - FORKS <= extra <= costs.ns(cycles) + FORKS, "rounded to ns once per fork at most"


@pytest.mark.parametrize("mode", ["bare-metal", "full", "hardware-assisted"])
def test_only_xen_pins_page_tables(plugins: PluginManager, mode: str) -> None:
    assert _forks(plugins, mode, PIN) == _forks(plugins, mode, 0)
