"""Running ahead changes nothing: the kit's state machine, the TLB's run, and a real scenario."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vf_helpers import scenario

from vframework.api.manager import PluginManager
from vframework.machine.mmu import TLB
from vframework.run.scenario import parse_scenario
from vframework.run.simulation import Simulation, Summary
from vframework.testing.runahead import RunAheadMachine

TestRunAhead = RunAheadMachine.TestCase
TestRunAhead.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)


@given(
    entries=st.sampled_from([1, 2, 8]),
    before=st.lists(st.integers(0, 20), max_size=30),
    keys=st.lists(st.integers(0, 20), min_size=1, max_size=60),
    data=st.data(),
)
def test_tlb_run_of_any_prefix_equals_access(
    entries: int, before: list[int], keys: list[int], data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(keys)), label="cut")
    fill = np.arange(100, 100 + len(keys), dtype=np.int64)
    stepped, ahead = TLB(entries), TLB(entries)
    for tlb in (stepped, ahead):  # the same history, with MPNs that later fills disagree with
        if before:
            tlb.access(np.array(before, dtype=np.int64), np.array(before, dtype=np.int64) * 7)
    hits, mpns = stepped.access(np.array(keys[:cut], dtype=np.int64), fill[:cut].copy())
    run = ahead.run(np.array(keys, dtype=np.int64), fill.copy())
    assert int(run.hits[:cut].sum()) == hits
    assert run.mpns[:cut].tolist() == mpns.tolist()
    run.settle(cut)
    assert ahead.keys.tolist() == stepped.keys.tolist()
    assert ahead.mpns.tolist() == stepped.mpns.tolist()


@pytest.mark.parametrize("mode", ["bare-metal", "full", "hardware-assisted", "paravirtual"])
def test_memory_scenario_same_with_and_without_running_ahead(plugins: PluginManager, mode: str) -> None:
    memory = {"name": "memory", "working_set": "8MiB", "pattern": "zipf", "batch": 64}
    data = scenario(
        vms=[
            {"name": "db", "vcpus": 2, "memory": "64MiB", "mode": mode, "workload": memory},
            {"name": "web", "memory": "64MiB", "mode": mode, "workload": {"name": "io", "compute": "50us"}},
        ],
        duration="40ms",
        sample_interval="5ms",
    )

    def run(run_ahead: bool) -> tuple[Summary, list[tuple[object, ...]], int]:
        sim = Simulation(parse_scenario(data, "test.toml", plugins), plugins)
        sim.hypervisor.run_ahead = run_ahead
        summary = sim.run()
        events = summary["host"].pop("events_fired")
        return summary, sim.timeseries, events

    ahead, stepped = run(True), run(False)
    assert ahead[0] == stepped[0]
    assert ahead[1] == stepped[1]
    assert ahead[2] < stepped[2]  # the point of it: fewer events for the same results
