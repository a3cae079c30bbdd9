"""Guest timers: every guest kernel ticks at its HZ, and every tick costs what its mode says."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vf_helpers import scenario, simulate

from vframework.api.manager import PluginManager
from vframework.errors import ScenarioError
from vframework.guest.mm import name_seed
from vframework.run.scenario import parse_scenario

BUSY = {"name": "busy", "memory": "64MiB", "mode": "full", "workload": "cpu"}
#: Wakes once a second for 100 µs: idle the rest of the time.
SLEEPER = {
    "name": "sleeper",
    "memory": "64MiB",
    "mode": "full",
    "workload": {"name": "cpu", "burst": "100us", "think": "1s"},
}


def _counters(vms: list[dict[str, Any]], plugins: PluginManager, **host: Any) -> dict[str, dict[str, int]]:
    sim, _ = simulate(scenario(vms, duration="1s", cpus=1, **host), plugins, check_every_step=True)
    return {vm.name: vm.counters for vm in sim.vms}


@pytest.mark.parametrize(("mode", "entry"), [("full", "traps"), ("hardware-assisted", "vm_exits")])
def test_a_cpu_bound_guest_takes_a_tick_at_its_hz_and_each_enters_the_monitor(
    plugins: PluginManager, mode: str, entry: str
) -> None:
    for hz in (100, 250, 1000):
        c = _counters([{**BUSY, "mode": mode, "hz": hz}], plugins)["busy"]
        assert c["virq_timer"] == hz, hz
        assert c[entry] >= hz, (hz, entry)


def test_no_timer_no_ticks(plugins: PluginManager) -> None:
    c = _counters([{**BUSY, "hz": 0}], plugins)["busy"]
    assert c["virq_timer"] == 0
    assert c["traps"] == 0


def test_ticks_cost_the_guest_cpu_time(plugins: PluginManager) -> None:
    """The same work takes longer with ticks: each handler runs on the guest's CPU time."""
    work = {**BUSY, "workload": {"name": "cpu", "burst": "10ms", "total": "500ms"}}
    slow = _counters([{**work, "hz": 1000}], plugins)["busy"]
    fast = _counters([{**work, "hz": 0}], plugins)["busy"]
    assert fast["cpu_run_ns"] == 500_000_000
    # 1,000 ticks a second, each a trap and a handler: well over 0.1% of the time.
    assert slow["cpu_run_ns"] > fast["cpu_run_ns"] * 1.001
    assert slow["virq_timer"] >= 500


def test_an_idle_periodic_guest_is_woken_for_every_tick_and_a_tickless_one_is_not(plugins: PluginManager) -> None:
    periodic = _counters([BUSY, {**SLEEPER, "hz": 250}], plugins)
    tickless = _counters([BUSY, {**SLEEPER, "hz": 250, "tickless": True}], plugins)
    # Idle nearly all the time: the periodic kernel takes (nearly) every tick at interrupt
    # level, stolen from the busy VM; the tickless one only those that find it running.
    assert periodic["sleeper"]["virq_timer"] >= 245
    assert periodic["sleeper"]["cpu_irq_ns"] > 0
    assert periodic["busy"]["cpu_stolen_ns"] >= periodic["sleeper"]["cpu_irq_ns"]
    assert tickless["sleeper"]["virq_timer"] <= 2
    assert tickless["sleeper"]["cpu_irq_ns"] == 0
    assert tickless["busy"]["cpu_stolen_ns"] == 0
    # The busy VM's own ticks do not depend on its neighbour's kernel.
    assert periodic["busy"]["virq_timer"] == tickless["busy"]["virq_timer"] == 250


def test_ticks_of_a_waiting_vcpu_coalesce(plugins: PluginManager) -> None:
    """Two busy VMs share one CPU in long slices: a vCPU takes one tick for all those that
    came while it waited, so each takes about half of them, never more than its hz."""
    vms = [{**BUSY, "name": "a", "hz": 1000}, {**BUSY, "name": "b", "hz": 1000}]
    counters = _counters(vms, plugins, scheduler={"name": "credit", "tslice": "30ms"})
    for name in ("a", "b"):
        assert 400 <= counters[name]["virq_timer"] < 1000, counters[name]["virq_timer"]


@settings(max_examples=6, deadline=None)
@given(hz=st.integers(1, 2_000), ms=st.integers(1, 50))
def test_a_lone_busy_vcpu_takes_every_tick_of_its_run(plugins: PluginManager, hz: int, ms: int) -> None:
    """One busy vCPU alone on a CPU takes exactly the ticks whose instants fall within the run."""
    data = scenario([{**BUSY, "hz": hz}], duration=f"{ms}ms", cpus=1)
    sim, _ = simulate(data, plugins)
    period = 1_000_000_000 // hz
    first = 1 + name_seed("busy/timer") % period
    end = ms * 1_000_000
    expected = 0 if first > end else (end - first) // period + 1
    # A tick at the run's last instant may not have been taken yet.
    assert sim.vms[0].counters["virq_timer"] in (expected, expected - 1)


@pytest.mark.parametrize("bad", [-1, 10_001, "fast"])
def test_a_bad_hz_is_refused_naming_the_key(plugins: PluginManager, bad: object) -> None:
    with pytest.raises(ScenarioError, match=r"vm\[0\]\.hz"):
        parse_scenario(scenario([{**BUSY, "hz": bad}]), "test.toml", plugins)
