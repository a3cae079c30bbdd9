"""Whole runs through the command line: the results folder and its files, and when samples are taken."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from vf_helpers import results_left_behind, scenario, simulate, summary_of, timeseries_of

from vframework import PluginManager, Simulation, hookimpl
from vframework.hv.metrics import HOST_METRICS, VM_METRICS
from vframework.run import report
from vframework.run.scenario import load_default_scenario
from vframework.run.simulation import HOST_TIMESERIES_METRICS, TIMESERIES_METRICS

# -- the results folder -------------------------------------------------------------------------


def run_cli(cli, out: Path, *args: Any, plot: bool = False) -> dict[str, Any]:
    cli(["run", *args, "--out", out, "-q", *([] if plot else ["--no-plot"])])
    return summary_of(out)


def test_summary_json(cli, tmp_path: Path, plugins: PluginManager) -> None:
    out = tmp_path / "results"
    summary = run_cli(cli, out, "--set", "duration=300ms", "--seed", "9")
    assert {"scenario", "seed", "sim_time_ns", "plugins", "host", "vms"} <= set(summary)
    assert summary["scenario"] == "default"
    assert summary["seed"] == 9
    assert summary["sim_time_ns"] == 300_000_000
    assert isinstance(summary["plugins"], list)
    assert summary["plugins"]
    assert all(set(p) == {"name", "version"} and isinstance(p["version"], str) for p in summary["plugins"])
    assert set(HOST_METRICS) <= set(summary["host"])
    spec = load_default_scenario(plugins)
    assert list(summary["vms"]) == sorted(vm.config.name for vm in spec.vms)
    for counters in summary["vms"].values():
        assert set(VM_METRICS) <= set(counters)
        assert all(isinstance(v, int) for v in counters.values())
    text = (out / "summary.json").read_text(encoding="utf-8")
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n", "canonical JSON"


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
    header, rows = timeseries_of(out)
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
    _, rows = timeseries_of(out)
    last = {row["vm"]: row for row in rows if int(row["time_ns"]) == summary["sim_time_ns"]}
    for name, counters in summary["vms"].items():
        for metric in TIMESERIES_METRICS:
            assert int(last[name][metric]) == counters[metric], (name, metric)


def test_host_timeseries_csv(cli, tmp_path: Path) -> None:
    """The host's counters at every sample, the last one what summary.json says (the engine's
    own event count aside: the last sample is itself an event)."""
    out = tmp_path / "results"
    summary = run_cli(cli, out, "--set", "duration=300ms", "--set", "sample_interval=100ms")
    lines = (out / "host_timeseries.csv").read_text(encoding="utf-8").splitlines()
    header, rows = (
        lines[0].split(","),
        [dict(zip(lines[0].split(","), line.split(","), strict=True)) for line in lines[1:]],
    )
    assert header == ["time_ns", *HOST_TIMESERIES_METRICS]
    assert [int(r["time_ns"]) for r in rows] == [0, 100_000_000, 200_000_000, 300_000_000]
    for metric in HOST_TIMESERIES_METRICS:
        if metric != "events_fired":
            assert int(rows[-1][metric]) == summary["host"][metric], metric
    # The default scenario is overcommitted: free memory moves while it runs.
    assert len({r["free_frames"] for r in rows}) > 1


def test_cumulative_counters_never_decrease(cli, tmp_path: Path) -> None:
    out = tmp_path / "results"
    run_cli(cli, out, "--set", "duration=400ms", "--set", "sample_interval=20ms")
    _, rows = timeseries_of(out)
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
    assert sorted(p.name for p in out.iterdir()) == [
        "host_timeseries.csv",
        "host_timeseries.parquet",
        "invoice.json",
        "ledger.csv",
        "ledger.parquet",
        "provenance.json",
        "scenario.toml",
        "summary.json",
        "timeseries.csv",
        "timeseries.parquet",
        "timeseries.png",
    ]
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
    # Refused before the run: bad input (exit 2).
    output = cli(["run", "--set", "duration=20ms", "--out", out, "-q", "--no-plot"], code=2)
    assert "taken" in output
    assert "already exists" in output
    assert sorted(p.name for p in out.iterdir()) == ["precious.txt"]
    assert results_left_behind(out) == ["taken"]


def test_default_results_folder_is_new_each_run(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    first = cli(["run", "--set", "duration=20ms", "-q", "--no-plot"])
    second = cli(["run", "--set", "duration=20ms", "-q", "--no-plot"])
    folders = sorted(p.name for p in (tmp_path / "vframework-results").iterdir())
    assert len(folders) == 2
    assert folders[0] in first
    assert folders[1] in second
    assert all(name.startswith("default-seed") for name in folders)


def test_results_folder_is_atomic_when_the_plot_fails(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_plot(*args: Any, **kwargs: Any) -> None:
        raise OSError("no space left on device")

    monkeypatch.setattr(report, "plot_timeseries", broken_plot)
    out = tmp_path / "nested" / "results"
    output = cli(["run", "--set", "duration=50ms", "--out", out, "-q"], code=1)
    assert "cannot write results" in output
    assert "no space left on device" in output
    assert not out.exists()
    assert results_left_behind(out) == [], "the temporary .partial folder was left behind"


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
    data = scenario(
        [{"name": "a", "memory": "64MiB", "workload": "cpu"}],
        seed=4,
        duration="200ms",
        sample_interval="100ms",
        memory="2GiB",
    )
    simulate(data, plugins)
    assert probe.seen == [1], "at 100 ms only the 0 ns sample may exist when an ordinary event runs"
