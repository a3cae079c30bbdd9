"""Whole runs: accounting identities, the results folder and its files, scheduler and memory results."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from vf_helpers import results_left_behind, summary_of

from vframework import PluginManager, Simulation, hookimpl
from vframework.hv.metrics import HOST_METRICS, VM_METRICS
from vframework.machine.hardware import STATE_NAMES
from vframework.run.results import ResultsError, write_results
from vframework.run.scenario import load_default_scenario, parse_scenario
from vframework.run.simulation import TIMESERIES_METRICS
from vframework.sim.units import PAGE_SIZE


@pytest.fixture(scope="module")
def plugins() -> PluginManager:
    return PluginManager(autoload=True)


def simulate(data: dict[str, Any], plugins: PluginManager, check_every_step: bool = False) -> tuple[Simulation, dict]:
    spec = parse_scenario(data, "test.toml", plugins)
    sim = Simulation(spec, plugins)
    balances: list[tuple[int, int]] = []

    def progress(t: int, total: int) -> None:
        if check_every_step:
            sim.hypervisor.sync()
            balances.append(sim.hypervisor.cpu_time_balance())

    summary = sim.run(progress=progress)
    for charged, elapsed in balances:
        assert charged == elapsed, f"CPU time not conserved mid-run: {charged} != {elapsed}"
    return sim, summary


def scenario(vms: list[dict[str, Any]], duration: str = "200ms", **host: Any) -> dict[str, Any]:
    return {
        "name": "t",
        "seed": 4,
        "duration": duration,
        "sample_interval": "20ms",
        "host": {"cpus": 2, "memory": "2GiB", **host},
        "vm": vms,
    }


MIXES = {
    "one-cpu": scenario(
        [
            {"name": "a", "memory": "64MiB", "workload": "cpu"},
            {"name": "b", "memory": "64MiB", "workload": "io"},
            {"name": "c", "memory": "64MiB", "workload": "idle"},
        ],
        cpus=1,
    ),
    "three-cpus-irq-on-cpu0": scenario(
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
    "modes": scenario(
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
    "hosted": scenario(
        [
            {"name": "a", "memory": "64MiB", "mode": "full", "workload": "io"},
            {"name": "b", "memory": "64MiB", "mode": "full", "workload": "cpu"},
        ],
        hypervisor_type="hosted",
        host_os_load=0.2,
    ),
    "lmbench": scenario(
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
    assert set(counts) == set(STATE_NAMES) and sum(counts.values()) == memory.frames
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
    data = scenario(
        [{"name": "a", "memory": "64MiB", "workload": "cpu"}, {"name": "b", "memory": "64MiB", "workload": "cpu"}],
        duration="300ms",
        cpus=1,
    )
    sim, summary = simulate(data, plugins)
    duration = summary["sim_time_ns"]
    switches = summary["host"]["hypervisor_ns"]
    for vm in summary["vms"].values():
        assert duration - switches <= vm["cpu_run_ns"] + vm["cpu_ready_ns"] <= duration
    assert summary["host"]["idle_ns"] == 0


# -- the fair scheduler -------------------------------------------------------------------------


@pytest.mark.parametrize(("vcpus_a", "tslice"), [(1, "10ms"), (1, "3ms"), (2, "10ms"), (3, "5ms")])
def test_fair_share_between_identical_cpu_bound_vms(vcpus_a: int, tslice: str, plugins: PluginManager) -> None:
    """Fair share is per VM, whatever its vCPU count: on one CPU two busy VMs get the same CPU time
    within one time slice."""
    data = scenario(
        [
            {"name": "a", "vcpus": vcpus_a, "memory": "64MiB", "workload": "cpu"},
            {"name": "b", "memory": "64MiB", "workload": "cpu"},
        ],
        duration="1s",
        cpus=1,
        scheduler={"name": "fair", "tslice": tslice},
    )
    _, summary = simulate(data, plugins)
    a, b = summary["vms"]["a"]["cpu_run_ns"], summary["vms"]["b"]["cpu_run_ns"]
    slice_ns = {"10ms": 10_000_000, "5ms": 5_000_000, "3ms": 3_000_000}[tslice]
    assert abs(a - b) <= slice_ns, (a, b)
    assert a + b >= 0.99 * summary["sim_time_ns"]


def test_fair_scheduler_is_work_conserving(plugins: PluginManager) -> None:
    data = scenario(
        [
            {"name": "a", "vcpus": 2, "memory": "64MiB", "workload": "cpu"},
            {"name": "b", "memory": "64MiB", "workload": "idle"},
        ],
        duration="200ms",
        cpus=2,
    )
    _, summary = simulate(data, plugins)
    # Two busy vCPUs, two CPUs: the CPUs are idle only while the idle VM's tick handler runs elsewhere.
    assert summary["vms"]["a"]["cpu_run_ns"] >= 2 * summary["sim_time_ns"] * 0.97


# -- memory -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["bare-metal", "full", "paravirtual", "hardware-assisted", "trap-and-emulate"])
def test_guest_page_faults_equal_the_working_set(mode: str, plugins: PluginManager) -> None:
    working_set = 4 * 1024**2
    pages = working_set // PAGE_SIZE
    data = scenario(
        [
            {
                "name": "a",
                "memory": "64MiB",
                "mode": mode,
                "workload": {"name": "memory", "working_set": "4MiB", "pattern": "sequential"},
            }
        ],
        duration="100ms",
        cpus=1,
    )
    sim, summary = simulate(data, plugins)
    vm = summary["vms"]["a"]
    assert vm["guest_page_faults"] == pages
    mode_cls = plugins.get("mode", mode)
    if mode_cls.preallocate:  # type: ignore[attr-defined]
        assert vm["hidden_page_faults"] == 0 and vm["mem_granted"] == 64 * 1024**2 // PAGE_SIZE
    else:
        assert vm["hidden_page_faults"] == pages and vm["mem_granted"] == pages
    assert vm["mem_active"] == pages, "the sequential pattern keeps touching the whole working set"


def test_guest_page_faults_per_vcpu_process(plugins: PluginManager) -> None:
    """Each vCPU runs its own process with its own address space."""
    data = scenario(
        [
            {
                "name": "a",
                "vcpus": 2,
                "memory": "64MiB",
                "workload": {"name": "memory", "working_set": "2MiB", "pattern": "sequential"},
            }
        ],
        duration="100ms",
    )
    _, summary = simulate(data, plugins)
    assert summary["vms"]["a"]["guest_page_faults"] == 2 * 2 * 1024**2 // PAGE_SIZE


# -- the results folder -------------------------------------------------------------------------


def run_cli(cli, out: Path, *args: Any, plot: bool = False) -> dict[str, Any]:
    cli(["run", *args, "--out", out, "-q", *([] if plot else ["--no-plot"])])
    return summary_of(out)


def test_summary_json(cli, tmp_path: Path, plugins: PluginManager) -> None:
    out = tmp_path / "results"
    summary = run_cli(cli, out, "--set", "duration=300ms", "--seed", "9")
    assert {"scenario", "seed", "sim_time_ns", "plugins", "host", "vms"} <= set(summary)
    assert summary["scenario"] == "default" and summary["seed"] == 9
    assert summary["sim_time_ns"] == 300_000_000
    assert isinstance(summary["plugins"], list) and summary["plugins"]
    assert all(set(p) == {"name", "version"} and isinstance(p["version"], str) for p in summary["plugins"])
    assert set(HOST_METRICS) <= set(summary["host"])
    spec = load_default_scenario(plugins)
    assert list(summary["vms"]) == sorted(vm.config.name for vm in spec.vms)
    for counters in summary["vms"].values():
        assert set(VM_METRICS) <= set(counters)
        assert all(isinstance(v, int) for v in counters.values())
    text = (out / "summary.json").read_text(encoding="utf-8")
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n", "canonical JSON"


def read_timeseries(out: Path) -> tuple[list[str], list[dict[str, str]]]:
    text = (out / "timeseries.csv").read_text(encoding="utf-8")
    reader = csv.DictReader(io.StringIO(text))
    return list(reader.fieldnames or []), list(reader)


@pytest.mark.parametrize(
    ("duration", "times"),
    [
        ("300ms", [0, 100, 200, 300]),
        ("250ms", [0, 100, 200, 250]),
        ("50ms", [0, 50]),
    ],
)
def test_timeseries_csv(duration: str, times: list[int], cli, tmp_path: Path) -> None:
    out = tmp_path / "results"
    summary = run_cli(cli, out, "--set", f"duration={duration}", "--set", "sample_interval=100ms")
    header, rows = read_timeseries(out)
    assert (out / "timeseries.csv").read_text(encoding="utf-8").startswith("time_ns,vm,")
    assert header == ["time_ns", "vm", *TIMESERIES_METRICS]
    vms = list(summary["vms"])
    by_time: dict[int, list[str]] = defaultdict(list)
    for row in rows:
        by_time[int(row["time_ns"])].append(row["vm"])
    assert sorted(by_time) == [t * 1_000_000 for t in times]
    for t, names in by_time.items():
        assert sorted(names) == sorted(vms), f"at {t} ns: {names}"
    assert len(rows) == len(times) * len(vms)
    assert [int(r["time_ns"]) for r in rows] == sorted(int(r["time_ns"]) for r in rows)


def test_last_sample_matches_the_summary(cli, tmp_path: Path) -> None:
    out = tmp_path / "results"
    summary = run_cli(cli, out, "--set", "duration=300ms")
    _, rows = read_timeseries(out)
    last = {row["vm"]: row for row in rows if int(row["time_ns"]) == summary["sim_time_ns"]}
    for name, counters in summary["vms"].items():
        for metric in TIMESERIES_METRICS:
            assert int(last[name][metric]) == counters[metric], (name, metric)


def test_cumulative_counters_never_decrease(cli, tmp_path: Path) -> None:
    out = tmp_path / "results"
    run_cli(cli, out, "--set", "duration=400ms", "--set", "sample_interval=20ms")
    _, rows = read_timeseries(out)
    counters = [m for m in TIMESERIES_METRICS if VM_METRICS[m].kind == "counter"]
    previous: dict[str, dict[str, str]] = {}
    for row in rows:
        before = previous.get(row["vm"])
        if before is not None:
            for metric in counters:
                assert int(row[metric]) >= int(before[metric]), (row["vm"], metric, row["time_ns"])
        previous[row["vm"]] = row


def test_results_folder_with_plot(cli, tmp_path: Path) -> None:
    out = tmp_path / "results"
    run_cli(cli, out, "--set", "duration=50ms", plot=True)
    assert sorted(p.name for p in out.iterdir()) == ["summary.json", "timeseries.csv", "timeseries.png"]
    assert (out / "timeseries.png").read_bytes()[:4] == b"\x89PNG"
    assert results_left_behind(out) == ["results"]


def test_results_go_into_an_existing_empty_folder(cli, tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    run_cli(cli, out, "--set", "duration=20ms")
    assert (out / "summary.json").exists()


def test_results_never_overwrite_a_folder(cli, tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "precious.txt").write_text("keep me", encoding="utf-8")
    output = cli(["run", "--set", "duration=20ms", "--out", out, "-q", "--no-plot"], code=1)
    assert "taken" in output and "already exists" in output
    assert sorted(p.name for p in out.iterdir()) == ["precious.txt"]
    assert results_left_behind(out) == ["taken"]


def test_default_results_folder_is_new_each_run(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    first = cli(["run", "--set", "duration=20ms", "-q", "--no-plot"])
    second = cli(["run", "--set", "duration=20ms", "-q", "--no-plot"])
    folders = sorted(p.name for p in (tmp_path / "vframework-results").iterdir())
    assert len(folders) == 2 and folders[0] in first and folders[1] in second
    assert all(name.startswith("default-seed") for name in folders)


def test_results_folder_is_atomic_when_the_plot_fails(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import vframework.run.report

    def broken_plot(*args: Any, **kwargs: Any) -> None:
        raise OSError("no space left on device")

    monkeypatch.setattr(vframework.run.report, "plot_timeseries", broken_plot)
    out = tmp_path / "nested" / "results"
    output = cli(["run", "--set", "duration=50ms", "--out", out, "-q"], code=1)
    assert "cannot write results" in output and "no space left on device" in output
    assert not out.exists()
    assert results_left_behind(out) == [], "the temporary .partial folder was left behind"


def test_write_results_is_all_or_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import vframework.run.report

    def broken_plot(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("matplotlib exploded")

    monkeypatch.setattr(vframework.run.report, "plot_timeseries", broken_plot)
    out = tmp_path / "results"
    with pytest.raises(RuntimeError, match="matplotlib exploded"):
        write_results(out, {"scenario": "x"}, ["time_ns", "vm"], [(0, "a")], plot=True)
    assert not out.exists() and results_left_behind(out) == []
    path = write_results(out, {"scenario": "x"}, ["time_ns", "vm"], [(0, "a")], plot=False)
    assert path == out and sorted(p.name for p in out.iterdir()) == ["summary.json", "timeseries.csv"]
    with pytest.raises(ResultsError):
        write_results(out, {"scenario": "x"}, ["time_ns", "vm"], [(0, "a")], plot=False)


# -- sampling -----------------------------------------------------------------------------------


class _Probe:
    """Observer: at 50 ms, schedules an ordinary event for 100 ms (a sample instant) that records how
    many samples exist at that moment."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    @hookimpl
    def simulation_started(self, simulation: Simulation) -> None:
        engine = simulation.engine

        def at_sample_instant(_: Any) -> None:
            self.seen.append(len({row[0] for row in simulation.timeseries}))

        engine.schedule(50_000_000, lambda _: engine.schedule(50_000_000, at_sample_instant))


def test_samples_see_every_event_of_their_instant() -> None:
    plugins = PluginManager(autoload=True)
    probe = _Probe()
    plugins.register(probe, "acme-probe")
    data = scenario([{"name": "a", "memory": "64MiB", "workload": "cpu"}], duration="200ms")
    data["sample_interval"] = "100ms"
    spec = parse_scenario(data, "test.toml", plugins)
    Simulation(spec, plugins).run()
    assert probe.seen == [1], "at 100 ms only the 0 ns sample may exist when an ordinary event runs"
