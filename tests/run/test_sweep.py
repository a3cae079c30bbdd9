"""``vframework sweep``: a grid of overrides times seeds, each point an ordinary run; resumable;
failures recorded; the same points on a Dask cluster; a report over seeds."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import pytest
from vf_helpers import CLI, flat

from vframework.errors import ResultsError, ScenarioError
from vframework.run import sweep_run
from vframework.run.simulation import Simulation
from vframework.run.sweep import SweepSpec, load_sweep, plan, toml_value
from vframework.run.sweep_report import confidence_interval, summarize

BASE = """\
name = "sw"
duration = "20ms"
[host]
cpus = 1
memory = "1GiB"
scheduler = "credit"
[[vm]]
name = "a"
memory = "64MiB"
workload = "cpu"
[[vm]]
name = "b"
memory = "64MiB"
workload = "memory"
"""
SWEEP = """\
base = "base.toml"
seeds = [1, 2]
metrics = ["cpu_run_ns", "a.cpu_run_ns", "host.hypervisor_ns"]
[grid]
"host.scheduler" = ["credit", "proportional"]
[zip]
"host.cpus" = [1, 2]
"vm[1].memory" = ["64MiB", "128MiB"]
"""
#: Files that are the point's result (provenance records when and how it ran, not what).
RESULT_FILES = ("summary.json", "timeseries.csv", "ledger.csv", "scenario.toml")


def _sweep(tmp_path: Path, text: str = SWEEP) -> Path:
    (tmp_path / "base.toml").write_text(BASE, encoding="utf-8")
    path = tmp_path / "sweep.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "sweep.csv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_points_are_the_grid_times_the_zip_times_the_seeds(tmp_path: Path) -> None:
    spec, base = load_sweep(_sweep(tmp_path))
    assert base == tmp_path / "base.toml"
    points = plan(spec)
    assert [(p.params["host.scheduler"], p.params["host.cpus"], p.seed) for p in points] == [
        (s, c, seed) for s in ("credit", "proportional") for c in (1, 2) for seed in (1, 2)
    ]
    assert points[3].overrides() == ['host.scheduler="credit"', "host.cpus=2", 'vm[1].memory="128MiB"']
    assert [p.name for p in points[:2]] == ["0000", "0001"]


def test_override_values_read_back_as_what_the_sweep_file_said() -> None:
    assert [toml_value(v) for v in (3, 0.5, True, "credit", [1, "a"], {"name": "cpu"})] == [
        "3",
        "0.5",
        "true",
        '"credit"',
        '[1, "a"]',
        '{ "name" = "cpu" }',
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('base = "base.toml"\nseeds = []\nmetrics = ["cpu_run_ns"]\n', "seeds"),
        ('base = "base.toml"\nseeds = [1, 1]\nmetrics = ["cpu_run_ns"]\n', "a seed is listed twice"),
        ('base = "none.toml"\nseeds = [1]\nmetrics = ["cpu_run_ns"]\n', "no scenario file"),
        ('base = "base.toml"\nseeds = [1]\nmetrics = ["x"]\n[zip]\n"a" = [1]\n"b" = [1, 2]\n', "one length"),
        ('base = "base.toml"\nseeds = [1]\nmetrics = ["x"]\n[grid]\n"a" = []\n', "has no values"),
        ('base = "base.toml"\nseeds = [1]\nmetrics = ["x"]\nbogus = 1\n', "bogus"),
        ("base = \n", "not valid TOML"),
    ],
)
def test_a_bad_sweep_file_is_refused_with_its_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        load_sweep(_sweep(tmp_path, text))
    assert message in str(caught.value)


def test_a_point_runs_exactly_as_vframework_run_would(tmp_path: Path, cli: CLI) -> None:
    out = tmp_path / "out"
    output = cli(["sweep", _sweep(tmp_path), "--out", out, "--workers", "1", "-q"])
    assert "8 of 8 points done, 0 failed" in flat(output)
    rows = _rows(out)
    assert [r["point"] for r in rows] == [f"{i:04d}" for i in range(8)]
    assert {r["status"] for r in rows} == {"ok"}
    assert rows[3]["host.cpus"] == "2"
    assert rows[3]["seed"] == "2"
    assert int(rows[3]["a.cpu_run_ns"]) > 0
    assert (out / "sweep.parquet").is_file()
    alone = tmp_path / "alone"
    base = tmp_path / "base.toml"
    sets = ["--set", 'host.scheduler="credit"', "--set", "host.cpus=2", "--set", 'vm[1].memory="128MiB"']
    cli(["run", base, "--seed", "2", *sets, "--no-plot", "-q", "--out", alone])
    for name in RESULT_FILES:
        assert (out / "points" / "0003" / name).read_bytes() == (alone / name).read_bytes(), name


def test_an_interrupted_sweep_reruns_only_what_is_missing(
    tmp_path: Path, cli: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    sweep = _sweep(tmp_path)
    cli(["sweep", sweep, "--out", out, "--workers", "1", "-q"])
    first = _rows(out)
    for name in ("0002", "0005"):
        for f in (out / "points" / name).iterdir():
            f.unlink()
        (out / "points" / name).rmdir()
    ran: list[int] = []
    run = Simulation.run

    def counted(self: Simulation, *args: Any, **kwargs: Any) -> None:
        ran.append(self.seed)
        run(self, *args, **kwargs)

    monkeypatch.setattr(Simulation, "run", counted)
    output = cli(["sweep", sweep, "--out", out, "--workers", "1"])
    assert "resuming: 6 of 8 points already done" in flat(output)
    assert len(ran) == 2
    assert _rows(out) == first


def test_a_failed_point_is_recorded_and_the_others_go_on(
    tmp_path: Path, cli: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = Simulation.run

    def flaky(self: Simulation, *args: Any, **kwargs: Any) -> None:
        if self.seed == 2 and self.scenario.config.host.cpus == 2:
            raise RuntimeError("the disk caught fire")
        run(self, *args, **kwargs)

    monkeypatch.setattr(Simulation, "run", flaky)
    out = tmp_path / "out"
    result = cli.invoke(["sweep", _sweep(tmp_path), "--out", out, "--workers", "1", "-q"])
    assert result.exit_code == 102, result.output
    assert "point 0003 failed: RuntimeError: the disk caught fire" in flat(result.output)
    rows = _rows(out)
    failed = [r for r in rows if r["status"] == "failed"]
    assert [r["point"] for r in failed] == ["0003", "0007"]
    assert failed[0]["error"] == "RuntimeError: the disk caught fire"
    assert failed[0]["cpu_run_ns"] == ""
    assert not (out / "points" / "0003").exists()
    monkeypatch.setattr(Simulation, "run", run)
    cli(["sweep", _sweep(tmp_path), "--out", out, "--workers", "1", "-q"])  # a rerun finishes them
    assert {r["status"] for r in _rows(out)} == {"ok"}


def test_a_bad_point_stops_the_sweep_before_anything_runs(tmp_path: Path, cli: CLI) -> None:
    text = SWEEP.replace('["credit", "proportional"]', '["credit", "lottery"]')
    out = tmp_path / "out"
    output = flat(cli(["sweep", _sweep(tmp_path, text), "--out", out], code=2))
    assert "point 0004" in output
    assert "lottery" in output
    assert not out.exists()


def test_a_folder_of_another_sweep_is_refused(tmp_path: Path, cli: CLI) -> None:
    out = tmp_path / "out"
    cli(["sweep", _sweep(tmp_path), "--out", out, "--workers", "1", "-q"])
    other = SWEEP.replace("seeds = [1, 2]", "seeds = [1, 3]")
    assert "holds another sweep" in flat(cli(["sweep", _sweep(tmp_path, other), "--out", out], code=2))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x", encoding="utf-8")
    assert "not a sweep's results folder" in flat(cli(["sweep", _sweep(tmp_path), "--out", tmp_path / "full"], code=2))


def test_workers_missing_a_plugin_are_named() -> None:
    class Cluster:
        def run(self, fn: Any) -> dict[str, dict[str, str]]:
            return {"tcp://10.0.0.2:4000": {"vframework": "0.2.0"}, "tcp://10.0.0.3:4000": fn()}

    with pytest.raises(ResultsError, match=r"tcp://10\.0\.0\.2:4000 lacks vframework-"):
        sweep_run._check_workers(Cluster())


def test_the_same_sweep_on_a_dask_cluster_gives_the_same_points(tmp_path: Path, cli: CLI) -> None:
    distributed = pytest.importorskip("distributed")
    local = tmp_path / "local"
    cli(["sweep", _sweep(tmp_path), "--out", local, "--workers", "2", "-q"])
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        remote = tmp_path / "dask"
        cli(["sweep", _sweep(tmp_path), "--out", remote, "--scheduler", c.scheduler_address, "-q"])
    assert _rows(remote) == _rows(local)
    for i in range(8):
        for name in RESULT_FILES:
            point = Path("points") / f"{i:04d}" / name
            assert (remote / point).read_bytes() == (local / point).read_bytes(), point


def test_an_unreachable_scheduler_is_a_clear_error(tmp_path: Path, cli: CLI) -> None:
    pytest.importorskip("distributed")
    output = flat(cli(["sweep", _sweep(tmp_path), "--out", tmp_path / "o", "--scheduler", "tcp://127.0.0.1:9"], 1))
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in output


def test_the_report_gives_means_and_intervals_over_seeds(tmp_path: Path, cli: CLI) -> None:
    out = tmp_path / "out"
    cli(["sweep", _sweep(tmp_path), "--out", out, "--workers", "1", "-q"])
    x, lines, table = summarize(out)
    assert x == "host.cpus"
    assert lines == ["host.scheduler", "vm[1].memory"]
    row = table[(table["metric"] == "a.cpu_run_ns") & (table["host.scheduler"] == "credit") & (table["host.cpus"] == 1)]
    values = [float(r["a.cpu_run_ns"]) for r in _rows(out) if r["host.scheduler"] == "credit" and r["host.cpus"] == "1"]
    assert (row["mean"].item(), row["ci95"].item()) == confidence_interval(values)
    assert row["n"].item() == 2
    assert "report:" in cli(["report", out])
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count("<img") == 3
    assert "a.cpu_run_ns" in page
    assert "is not a parameter" in flat(cli(["report", out, "--x", "host.memory"], code=2))


def test_confidence_intervals_use_students_t() -> None:
    assert confidence_interval([5.0]) == (5.0, 0.0)
    mean, half = confidence_interval([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert half == pytest.approx(4.303 * 1.0 / 3**0.5)


def test_the_sweep_spec_documents_every_field() -> None:
    for name, info in SweepSpec.model_fields.items():
        assert info.description, name


def test_the_sweep_tutorial_runs_as_written(tmp_path: Path, cli: CLI) -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "tutorials" / "sweep.md").read_text(encoding="utf-8")
    for name, text in re.findall(r"```\{code-block\} toml\n:caption: (\S+)\n\n(.*?)```", page, re.S):
        (tmp_path / name).write_text(text, encoding="utf-8")
    out = tmp_path / "caps"
    cli(["sweep", tmp_path / "caps.toml", "--out", out, "--workers", "2", "-q"])
    rows = _rows(out)
    assert len(rows) == 24
    assert {r["status"] for r in rows} == {"ok"}
    # The documented table: heavy's CPU under each bound (the same for every seed).
    heavy = {(r["host.scheduler"], r["@cap"]): round(int(r["heavy.cpu_run_ns"]) / 1e6, 1) for r in rows}
    documented = re.findall(r"^\| (credit|proportional) \| (none|\d+) \| ([\d.]+) \|", page, re.M)
    assert len(documented) == 8
    for scheduler, cap, ms in documented:
        assert heavy[scheduler, "0" if cap == "none" else cap] == float(ms), (scheduler, cap)
