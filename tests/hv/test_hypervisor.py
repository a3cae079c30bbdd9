"""The hypervisor on whole runs: CPU time and frames are conserved exactly, ready time is runnable
time; and the conformance kit's hypervisor machine with the kit's own doubles."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import pytest
from vf_helpers import scenario, simulate

from vframework import PluginManager, Simulation
from vframework.machine.hardware import STATE_NAMES
from vframework.run.scenario import load_default_scenario, parse_scenario
from vframework.sim.units import PAGE_SIZE
from vframework.testing import HypervisorMachine

#: The runs here: seed 4, a sample every 20 ms, 2 GiB of host memory, 200 ms unless said otherwise.
run_scenario = partial(scenario, seed=4, duration="200ms", sample_interval="20ms", memory="2GiB")


MIXES = {
    "one-cpu": run_scenario(
        [
            {"name": "a", "memory": "64MiB", "workload": "cpu"},
            {"name": "b", "memory": "64MiB", "workload": "io"},
            {"name": "c", "memory": "64MiB", "workload": "idle"},
        ],
        cpus=1,
    ),
    "three-cpus-irq-on-cpu0": run_scenario(
        [
            {"name": "io1", "memory": "64MiB", "workload": {"name": "io", "compute": "20us"}},
            {"name": "io2", "vcpus": 2, "memory": "64MiB", "workload": "io"},
            {
                "name": "mem",
                "vcpus": 2,
                "memory": "128MiB",
                "workload": {"name": "memory", "working_set": "16MiB", "batch": 512},
            },
            {"name": "cpu", "memory": "64MiB", "workload": {"name": "cpu", "burst": "3ms", "think": "1ms"}},
        ],
        cpus=3,
        irq_affinity="cpu0",
    ),
    "modes": run_scenario(
        [
            {"name": m, "memory": "64MiB", "mode": m, "workload": w}
            for m, w in [
                ("bare-metal", "io"),
                ("full", "io"),
                ("paravirtual", "io"),
                ("hardware-assisted", "cpu"),
                ("trap-and-emulate", {"name": "memory", "working_set": "8MiB", "batch": 256}),
            ]
        ]
    ),
    "hosted": run_scenario(
        [
            {"name": "a", "memory": "64MiB", "mode": "full", "workload": "io"},
            {"name": "b", "memory": "64MiB", "mode": "full", "workload": "cpu"},
        ],
        hypervisor_type="hosted",
        host_os_load=0.2,
    ),
    "lmbench": run_scenario(
        [
            {
                "name": "a",
                "memory": "64MiB",
                "mode": "full",
                "workload": {"name": "lmbench", "test": "context_switch", "iterations": 20000},
            },
            {"name": "b", "memory": "64MiB", "workload": "idle"},
        ],
        duration="50ms",
    ),
}


@pytest.mark.invariants
@pytest.mark.parametrize("mix", sorted(MIXES))
def test_cpu_time_is_conserved_exactly(mix: str, plugins: PluginManager) -> None:
    sim, summary = simulate(MIXES[mix], plugins, check_every_step=True)
    charged, elapsed = sim.hypervisor.cpu_time_balance()
    assert charged == elapsed == summary["sim_time_ns"] * len(sim.machine.cpus)
    host = summary["host"]
    vms = summary["vms"].values()
    total = sum(v["cpu_run_ns"] + v["cpu_irq_ns"] for v in vms) + host["hypervisor_ns"] + host["idle_ns"]
    assert total == host["elapsed_ns"] * len(sim.machine.cpus), "the summary's counters add up too"


def test_default_scenario_conserves_cpu_time_and_frames(plugins: PluginManager) -> None:
    spec = load_default_scenario(plugins, ["duration=500ms"])
    sim = Simulation(spec, plugins)
    summary = sim.run()
    total, expected = sim.hypervisor.cpu_time_balance()
    assert total == expected
    check_frames(sim, summary)


def check_frames(sim: Simulation, summary: dict[str, Any]) -> None:
    memory = sim.machine.memory
    memory.check()
    counts = memory.counts()
    assert set(counts) == set(STATE_NAMES)
    assert sum(counts.values()) == memory.frames
    host = summary["host"]
    assert (
        host["free_frames"] + host["private_frames"] + host["shared_frames"] + host["hypervisor_frames"]
        == memory.frames
    )
    assert host["hypervisor_frames"] == -(-sim.scenario.config.host.hypervisor_memory // PAGE_SIZE)
    backed_total = 0
    for vm in sim.vms:
        mpns = vm.p2m[vm.p2m >= 0]
        backed_total += mpns.size
        assert np.all(memory.owner[mpns] == vm.id), f"{vm.name} maps frames it does not own"
        assert np.unique(mpns).size == mpns.size, f"{vm.name} maps a frame twice"
        assert summary["vms"][vm.name]["mem_granted"] == mpns.size
    assert backed_total == counts["private"] + counts["shared"]


@pytest.mark.invariants
@pytest.mark.parametrize("mix", sorted(MIXES))
def test_frames_are_conserved(mix: str, plugins: PluginManager) -> None:
    sim, summary = simulate(MIXES[mix], plugins)
    check_frames(sim, summary)


def test_ready_time_is_runnable_time_not_running(plugins: PluginManager) -> None:
    """Two always-runnable VMs on one CPU: each is running or ready the whole time, except while the
    CPU switches to it (hypervisor time)."""
    data = run_scenario(
        [{"name": "a", "memory": "64MiB", "workload": "cpu"}, {"name": "b", "memory": "64MiB", "workload": "cpu"}],
        duration="300ms",
        cpus=1,
    )
    _, summary = simulate(data, plugins)
    duration = summary["sim_time_ns"]
    switches = summary["host"]["hypervisor_ns"]
    for vm in summary["vms"].values():
        assert duration - switches <= vm["cpu_run_ns"] + vm["cpu_ready_ns"] <= duration
    assert summary["host"]["idle_ns"] == 0


# -- the conformance kit's hypervisor machine ------------------------------------------------


@pytest.mark.invariants
class TestHypervisorMachine(HypervisorMachine.TestCase):  # type: ignore[name-defined, misc]
    """The kit's hypervisor machine with its own doubles (FIFO scheduler, flat mode, fixed policy):
    VMs of 1 to 3 vCPUs, each vCPU's process touching its pages, must all fit and run."""


@pytest.mark.parametrize("scheduler", ["fair", "proportional", "credit"])
def test_a_held_vm_does_not_run_and_resumes_when_let_go(plugins: PluginManager, scheduler: str) -> None:
    data = run_scenario(
        [
            {"name": "held", "vcpus": 2, "memory": "64MiB", "workload": "cpu"},
            {"name": "io", "memory": "64MiB", "workload": {"name": "io", "compute": "20us"}},
            {"name": "other", "memory": "64MiB", "workload": "cpu"},
        ],
        cpus=2,
        duration="300ms",
        scheduler=scheduler,
    )
    sim = Simulation(parse_scenario(data, "test.toml", plugins), plugins)
    hv = sim.hypervisor
    held, io = sim.vms[0], sim.vms[1]
    seen: dict[str, int] = {}

    def hold(_: None) -> None:
        hv.sync()
        seen["before"] = held.counters["cpu_run_ns"]
        hv.hold(held, True)
        hv.hold(io, True)  # blocked on I/O most of the time: its completions wait

    def let_go(_: None) -> None:
        hv.sync()
        seen["during"] = held.counters["cpu_run_ns"]
        assert all(v.state.name == "BLOCKED" and v.held for v in held.vcpus)
        hv.hold(held, False)
        hv.hold(io, False)

    sim.engine.schedule(100_000_000, hold)
    sim.engine.schedule(200_000_000, let_go)
    summary = sim.run()
    assert seen["during"] == seen["before"]  # nothing ran while held
    assert summary["vms"]["held"]["cpu_run_ns"] > seen["during"]  # and it ran again after
    assert summary["vms"]["held"]["mem_blocked_ns"] == summary["vms"]["io"]["mem_blocked_ns"] == 100_000_000
    assert summary["vms"]["other"]["mem_blocked_ns"] == 0
    charged, elapsed = hv.cpu_time_balance()
    assert charged == elapsed
