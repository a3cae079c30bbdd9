"""Determinism: the same scenario and seed give byte-identical results; another seed does not.

The runs go through the real command line, in separate processes (with different hash seeds,
so nothing may depend on the order of a set or dict of strings) and in one process (so nothing
may depend on state left behind by an earlier run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from vf_helpers import summary_of, timeseries_of

from vframework import PluginManager
from vframework.run.scenario import load_default_scenario

#: The files that are the run's result (provenance.json records the time and versions: it differs).
FILES = ("summary.json", "timeseries.csv", "host_timeseries.csv", "ledger.csv", "invoice.json", "scenario.toml")
SHORT = ["--set", "duration=500ms"]


def run_process(out: Path, *args: str, hash_seed: str = "0") -> None:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "MPLBACKEND": "Agg"}
    env.pop("VFRAMEWORK_DISABLE_PLUGIN_AUTOLOAD", None)
    proc = subprocess.run(
        [sys.executable, "-m", "vframework", "run", *args, "--out", str(out), "-q", "--no-plot"],
        capture_output=True,
        text=True,
        env=env,
        cwd=out.parent,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr


def read(out: Path) -> dict[str, bytes]:
    assert set(FILES) <= {p.name for p in out.iterdir()}
    return {name: (out / name).read_bytes() for name in FILES}


@pytest.mark.invariants
def test_same_seed_same_bytes_across_processes(tmp_path: Path) -> None:
    run_process(tmp_path / "one", *SHORT, hash_seed="1")
    run_process(tmp_path / "two", *SHORT, hash_seed="2")
    one, two = read(tmp_path / "one"), read(tmp_path / "two")
    for name in FILES:
        assert one[name] == two[name], f"{name} differs between two runs of the same scenario and seed"
    # Not trivially equal: the run did something.
    summary = json.loads(one["summary.json"])
    assert summary["sim_time_ns"] == 500_000_000
    assert all(vm["cpu_run_ns"] > 0 for name, vm in summary["vms"].items() if name != "idle")


def test_different_seed_changes_results(tmp_path: Path) -> None:
    default_seed = load_default_scenario(PluginManager()).config.seed
    other = default_seed + 1
    run_process(tmp_path / "default", *SHORT)
    run_process(tmp_path / "explicit", *SHORT, "--seed", str(default_seed))
    run_process(tmp_path / "other", *SHORT, "--seed", str(other))
    run_process(tmp_path / "other-set", *SHORT, "--set", f"seed={other}")
    default, explicit = read(tmp_path / "default"), read(tmp_path / "explicit")
    assert default == explicit, "--seed with the scenario's own seed changed the results"
    changed = read(tmp_path / "other")
    assert changed["timeseries.csv"] != default["timeseries.csv"]
    # The default scenario's random workloads (zipf memory, random I/O writes) must see the seed.
    first, second = summary_of(tmp_path / "default"), summary_of(tmp_path / "other")
    assert second["seed"] == other
    assert first["seed"] == default_seed
    assert first["vms"] != second["vms"]
    assert read(tmp_path / "other-set") == changed, "--seed N and --set seed=N disagree"


RANDOM_MIX = """\
name = "mix"
seed = {seed}
duration = "100ms"
sample_interval = "10ms"

[host]
cpus = 2
memory = "2GiB"
scheduler = {{ name = "fair", tslice = "3ms" }}

[[vm]]
name = "random"
vcpus = 2
memory = "256MiB"
mode = "{mode}"
workload = {{ name = "memory", working_set = "32MiB", pattern = "random", batch = 512 }}

[[vm]]
name = "zipf"
memory = "256MiB"
workload = {{ name = "memory", working_set = "64MiB", pattern = "zipf", batch = 512 }}

[[vm]]
name = "io"
memory = "128MiB"
workload = {{ name = "io", compute = "50us", write_ratio = 0.5 }}

[[vm]]
name = "cpu"
memory = "128MiB"
workload = {{ name = "cpu", burst = "2ms", think = "1ms" }}
"""


@pytest.mark.invariants
@pytest.mark.parametrize("mode", ["bare-metal", "full", "paravirtual", "hardware-assisted"])
def test_same_seed_same_bytes_in_one_process(mode: str, cli, write_scenario, tmp_path: Path) -> None:
    path = write_scenario(RANDOM_MIX.format(seed=5, mode=mode))
    outs = [tmp_path / f"run{i}" for i in range(2)]
    for out in outs:
        cli(["run", path, "--out", out, "-q", "--no-plot"])
    assert read(outs[0]) == read(outs[1])


def test_seed_changes_random_workloads(cli, write_scenario, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    cli(["run", write_scenario(RANDOM_MIX.format(seed=5, mode="bare-metal"), "a.toml"), "--out", a, "-q", "--no-plot"])
    cli(["run", write_scenario(RANDOM_MIX.format(seed=6, mode="bare-metal"), "b.toml"), "--out", b, "-q", "--no-plot"])
    for vm in ("random", "zipf"):
        assert _rows(a, vm) != _rows(b, vm), f"VM {vm!r} ran the same with seeds 5 and 6"


def test_plot_is_deterministic_too(cli, write_scenario, tmp_path: Path) -> None:
    """The README promises byte-identical results; the results folder includes the plot."""
    path = write_scenario(RANDOM_MIX.format(seed=1, mode="bare-metal").replace('"100ms"', '"40ms"'))
    for name in ("p1", "p2"):
        cli(["run", path, "--out", tmp_path / name, "-q"])
    png = [(tmp_path / name / "timeseries.png").read_bytes() for name in ("p1", "p2")]
    assert png[0][:8] == b"\x89PNG\r\n\x1a\n"
    assert png[0] == png[1]


def _rows(out: Path, vm: str) -> list[dict[str, str]]:
    return [row for row in timeseries_of(out)[1] if row["vm"] == vm]


def test_adding_a_vm_does_not_change_another_vms_stream(cli, write_scenario, tmp_path: Path) -> None:
    """Each workload draws from its own named stream: a new VM (on its own CPU, so nothing is
    shared) must not change a word of another VM's results."""
    base = """\
        name = "streams"
        seed = 11
        duration = "100ms"
        sample_interval = "10ms"

        [host]
        cpus = 3
        memory = "2GiB"

        [[vm]]
        name = "watched"
        memory = "256MiB"
        workload = { name = "memory", working_set = "64MiB", pattern = "random", batch = 512 }
        """
    extra = """
        [[vm]]
        name = "newcomer"
        memory = "256MiB"
        workload = { name = "memory", working_set = "64MiB", pattern = "zipf", batch = 512 }
        """
    alone, together = tmp_path / "alone", tmp_path / "together"
    cli(["run", write_scenario(base, "alone.toml"), "--out", alone, "-q", "--no-plot"])
    cli(["run", write_scenario(base + extra, "together.toml"), "--out", together, "-q", "--no-plot"])
    assert summary_of(alone)["vms"]["watched"] == summary_of(together)["vms"]["watched"]
    assert _rows(alone, "watched") == _rows(together, "watched")
