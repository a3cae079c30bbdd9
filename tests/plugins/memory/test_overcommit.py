"""Overcommit: the shares policy, the idle memory tax, the balloon, and the errors around them."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import Phase, settings
from mutants import SharesDropsMin, SharesIgnoresMax
from vf_helpers import scenario
from vframework_memory.shares import SharesParams, SharesPolicy, _water_fill

from vframework.api.manager import PluginManager
from vframework.errors import HostOutOfMemory, ScenarioError
from vframework.run.scenario import parse_scenario
from vframework.run.simulation import HOST_TIMESERIES_METRICS, TIMESERIES_METRICS, Simulation
from vframework.testing.hypervisor import HypervisorMachine


def _data(
    tax: float = 0.75, balloon: str = "on", services: tuple[str, ...] = ("balloon",), **vm_keys: Any
) -> dict[str, Any]:
    vm = {"memory": "32MiB", "swap": "32MiB", "mode": "hardware-assisted", "balloon": balloon}
    return scenario(
        vms=[
            {
                **vm,
                "name": "idle",
                "workload": {"name": "memory", "working_set": "24MiB", "pattern": "sequential", "batches": 100},
            },
            {
                **vm,
                **vm_keys,
                "name": "active",
                "workload": {"name": "memory", "working_set": "28MiB", "batch": 64, "compute_per_page": 20000},
            },
        ],
        duration="6s",
        sample_interval="500ms",
        memory="48MiB",
        memory_policy={"name": "shares", "tax_rate": tax, "sample_period": "1s"},
        memory_services=[{"name": "balloon", "rate": 8192} if s == "balloon" else {"name": s} for s in services],
    )


def _run(plugins: PluginManager, data: dict[str, Any]) -> Simulation:
    sim = Simulation(parse_scenario(data, "test.toml", plugins), plugins)
    sim.run()
    return sim


def test_the_idle_tax_moves_memory_to_the_active_vm(plugins: PluginManager) -> None:
    untaxed, taxed = _run(plugins, _data(0.0)), _run(plugins, _data(0.75))
    idle0, active0 = (vm.counters for vm in untaxed.vms)
    idle1, active1 = (vm.counters for vm in taxed.vms)
    assert active0["mem_target"] == idle0["mem_target"]  # equal shares, no tax: half each
    assert active1["mem_target"] > active0["mem_target"]
    assert idle1["mem_balloon"] > idle0["mem_balloon"]
    assert idle1["mem_active"] < active1["mem_active"]
    for sim in (untaxed, taxed):
        # The balloon kept every VM within its target and the host never ran out.
        for vm in sim.vms:
            assert vm.counters["mem_granted"] <= vm.counters["mem_target"]
        assert sim.machine.memory.free_frames >= 0


def test_without_balloon_drivers_the_host_runs_out_with_a_clear_error(plugins: PluginManager) -> None:
    # Nothing else reclaims yet (no hypervisor swap): the run stops and says why.
    with pytest.raises(HostOutOfMemory, match=r"host is out of machine memory.*balloon drivers"):
        _run(plugins, _data(0.75, balloon="off"))


def test_mem_min_is_respected(plugins: PluginManager) -> None:
    sim = _run(plugins, _data(0.75, mem_min="30MiB"))
    assert sim.vms[1].counters["mem_target"] >= 30 * 256


def test_overcommit_without_a_service_is_refused_naming_what_would_allow_it(plugins: PluginManager) -> None:
    data = _data()
    data["host"]["memory_services"] = []
    with pytest.raises(ScenarioError, match="can overcommit only with a memory service") as caught:
        parse_scenario(data, "test.toml", plugins)
    assert "balloon" in str(caught.value)
    assert "host-swap" in str(caught.value)


def test_a_misspelt_service_is_one_problem_not_two(plugins: PluginManager) -> None:
    """An unknown service is reported as such, not also as "no memory service"."""
    data = _data()
    data["host"]["memory_services"] = ["ballon"]
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(data, "test.toml", plugins)
    assert [p.path for p in caught.value.problems] == ["host.memory_services[0]"]


def test_thresholds_must_fall() -> None:
    with pytest.raises(ValueError, match="thresholds must fall"):
        SharesParams(soft=0.07)


def test_water_fill_is_proportional_within_bounds() -> None:
    bounds = {0: (0, 100, 1.0), 1: (0, 100, 1.0), 2: (50, 100, 1.0)}
    got = _water_fill(bounds, {0: 1.0, 1: 3.0, 2: 0.1}, 160)
    assert got[2] == 50  # its minimum, above its proportional part
    assert got[1] == pytest.approx(3 * got[0], abs=2)
    assert sum(got.values()) <= 160


def test_reclaim_states_have_hysteresis() -> None:
    policy = SharesPolicy(SharesParams())

    class Memory:
        total_frames = 1000
        free_frames = 1000

    memory: Any = Memory()
    seen = []
    for free in (100, 39, 50, 61, 19, 9, 15, 25, 45, 65):
        memory.free_frames = free
        seen.append(policy._reclaim_state(memory))
    # Down at 4%, 2%, 1%; back up only above 6%, 4%, 2%.
    assert seen == [0, 1, 1, 0, 2, 3, 3, 2, 1, 0]


def test_host_swap_keeps_the_host_alive_without_balloon_drivers(plugins: PluginManager) -> None:
    sim = _run(plugins, _data(0.75, balloon="off", services=("balloon", "host-swap")))
    memory = sim.machine.memory
    assert memory.free_frames >= 0.01 * memory.frames
    swapped = [vm.counters for vm in sim.vms]
    assert sum(c["host_swap_outs"] for c in swapped) > 0
    assert sum(c["host_swap_ins"] for c in swapped) > 0  # the active VM reads its pages back
    for c in swapped:
        assert c["mem_swapped"] == c["host_swap_outs"] - c["host_swap_ins"]


def test_double_paging_is_counted(plugins: PluginManager) -> None:
    # Balloon drivers make the guests swap; the hypervisor swaps too: some pages go twice.
    sim = _run(plugins, _data(0.75, services=("balloon", "host-swap")))
    idle = sim.vms[0].counters
    # The idle VM's pages went to the host's swap first; inflating its balloon then made the
    # guest swap some of them out itself, reading each back from the host's swap to do so.
    assert 0 < idle["double_paging"] <= min(idle["host_swap_outs"], idle["swap_outs"])
    assert all(vm.counters["double_paging"] <= vm.counters["swap_outs"] for vm in sim.vms)


def test_lru_victims_keep_hot_pages_resident(plugins: PluginManager) -> None:
    # Without balloon drivers only the host's swap reclaims. A skewed (zipf) working set has hot
    # pages that random victims often take and LRU by accessed bits leaves: fewer read back.
    read_back = {}
    for victims in ("random", "lru"):
        data = _data(0.75, balloon="off", services=("balloon", "host-swap"))
        data["vm"][1]["workload"]["pattern"] = "zipf"
        data["host"]["memory_services"][1].update(victims=victims, age_period="200ms")
        sim = _run(plugins, data)
        read_back[victims] = sim.vms[1].counters["host_swap_ins"]
    assert 0 < read_back["lru"] < 0.9 * read_back["random"]


def test_lru_victims_are_the_same_with_and_without_running_ahead(plugins: PluginManager) -> None:
    # Accessed bits are set by planned references too, when they are applied.
    data = _data(0.75, balloon="off", services=("balloon", "host-swap"))
    data["duration"] = "3s"
    data["host"]["memory_services"][1].update(victims="lru", age_period="200ms")
    got = []
    for run_ahead in (True, False):
        sim = Simulation(parse_scenario(data, "test.toml", plugins), plugins)
        sim.hypervisor.run_ahead = run_ahead
        summary = sim.run()
        summary["host"].pop("events_fired")
        got.append((summary, sim.timeseries))
    assert got[0] == got[1]
    assert sum(vm["host_swap_outs"] for vm in got[0][0]["vms"].values()) > 0


def test_admission_control_refuses_what_cannot_be_reserved(plugins: PluginManager) -> None:
    data = _data(mem_min="32MiB")
    data["host"]["memory_policy"]["overhead"] = "10MiB"
    with pytest.raises(ScenarioError, match=r"VM 'active' cannot start: its mem_min plus overhead"):
        parse_scenario(data, "test.toml", plugins)


def test_a_preallocating_mode_cannot_be_overcommitted(plugins: PluginManager) -> None:
    data = _data()
    for vm in data["vm"]:
        vm["mode"] = "bare-metal"
    with pytest.raises(ScenarioError, match="a mode that preallocates cannot be overcommitted"):
        parse_scenario(data, "test.toml", plugins)


def test_working_set_targets_follow_activity(plugins: PluginManager) -> None:
    data = _data(0.0)
    data["host"]["memory_policy"]["name"] = "working-set"
    sim = _run(plugins, data)
    idle, active = (vm.counters for vm in sim.vms)
    assert idle["mem_target"] < active["mem_target"]  # shares play no part: activity does
    assert active["mem_target"] >= active["mem_granted"]


def _planted(examples: int) -> settings:
    """Settings for a kit run that must find a planted bug: generation only (shrinking would take
    minutes), and a fixed seed, so it finds it in every run or in none."""
    return settings(
        max_examples=examples,
        stateful_step_count=10,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        derandomize=True,
    )


def test_the_kit_catches_a_policy_that_ignores_mem_max() -> None:
    machine = HypervisorMachine.for_components(policy=SharesIgnoresMax)
    machine.TestCase.settings = _planted(200)
    with pytest.raises(AssertionError, match=r"outside \[mem_min, mem_max\]"):
        machine.TestCase().runTest()


def test_the_kit_catches_a_policy_that_keeps_its_bounds_from_the_kernel() -> None:
    # Targets within mem_min and mem_max, but bounds() left at its default: the kernel cannot
    # keep a guarantee it is not given (swap would take the VM below its mem_min).
    class Silent(SharesPolicy):
        name = "silent-shares"

        def bounds(self, vm: Any) -> tuple[int, int]:
            return 0, vm.memory_pages

    machine = HypervisorMachine.for_components(policy=Silent)
    machine.TestCase.settings = _planted(200)
    with pytest.raises(AssertionError, match=r"the policy's bounds\(\) gave the kernel"):
        machine.TestCase().runTest()


def test_the_kit_catches_a_policy_that_drops_mem_min_under_pressure() -> None:
    # The kit's host has room for every VM; it also asks the policy as if it had not.
    machine = HypervisorMachine.for_components(policy=SharesDropsMin)
    machine.TestCase.settings = _planted(300)
    with pytest.raises(AssertionError, match=r"outside \[mem_min, mem_max\]"):
        machine.TestCase().runTest()


def test_the_low_state_blocks_vms_above_their_targets(plugins: PluginManager) -> None:
    # No balloon drivers and a slow host swap: free memory falls below 1% (the low state) and
    # the VMs above their targets are blocked until reclamation catches up.
    data = _data(0.75, balloon="off", services=("balloon", "host-swap"))
    data["host"]["memory_services"][1].update(rate=512)
    sim = _run(plugins, data)
    active = sim.vms[1].counters
    assert active["mem_blocked_ns"] > 0
    assert active["cpu_run_ns"] + active["mem_blocked_ns"] <= sim.engine.now
    # A host with room for both is never that low: nobody is blocked.
    data["host"]["memory"] = "80MiB"
    calm = _run(plugins, data)
    assert all(vm.counters["mem_blocked_ns"] == 0 for vm in calm.vms)


def _capped(plugins: PluginManager, services: list[str]) -> Simulation:
    # The audit's case: a VM capped at a quarter of its memory whose working set is three
    # times the cap, no swap area in the guest, on a host with memory to spare.
    vm = {"name": "capped", "memory": "128MiB", "mode": "hardware-assisted", "mem_max": "32MiB"}
    vm["workload"] = {"name": "memory", "working_set": "96MiB", "pattern": "random", "batch": 64}
    data = scenario(
        vms=[vm],
        duration="3s",
        sample_interval="250ms",
        memory="256MiB",
        memory_policy={"name": "shares"},
        memory_services=services,
    )
    return _run(plugins, data)


def test_host_swap_pages_a_vm_above_its_mem_max_down_to_it(plugins: PluginManager) -> None:
    granted = TIMESERIES_METRICS.index("mem_granted") + 2
    alone = _capped(plugins, ["balloon"])
    # A balloon alone stalls: the guest has no free page and no swap to give it.
    assert alone.vms[0].counters["mem_granted"] == 96 * 256
    sim = _capped(plugins, ["balloon", "host-swap"])
    vm = sim.vms[0]
    assert vm.mem_max == 32 * 256
    assert vm.counters["mem_granted"] <= vm.mem_max
    assert vm.counters["host_swap_ins"] > 0, "the VM reads its pages back, and is paged down again"
    # Within a second at host-swap's rate; then over by at most what one period's faults bring.
    held = [row[granted] for row in sim.timeseries if row[0] >= 10**9]
    assert max(held) <= vm.mem_max + 1024, held


def test_with_pressure_soft_balloons_wait_for_the_soft_state(plugins: PluginManager) -> None:
    # ESX reclaims nothing while free memory is high; balloons inflate from the soft state on.
    data = _data(0.75, services=("balloon", "host-swap"))
    data["host"]["memory_services"][0]["pressure"] = "soft"
    sim = _run(plugins, data)
    state = HOST_TIMESERIES_METRICS.index("reclaim_state") + 1
    balloon = TIMESERIES_METRICS.index("mem_balloon") + 2
    high = {row[0] for row in sim.host_timeseries if row[state] == 0}
    first_soft = min(row[0] for row in sim.host_timeseries if row[state] > 0)
    assert all(row[balloon] == 0 for row in sim.timeseries if row[0] in high and row[0] < first_soft)
    assert sum(vm.counters["mem_balloon"] for vm in sim.vms) > 0
    # By default the balloons pursue the targets from the start.
    eager = _run(plugins, _data(0.75, services=("balloon", "host-swap")))
    assert any(row[balloon] > 0 for row in eager.timeseries if row[0] < first_soft)
