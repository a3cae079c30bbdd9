"""The path a new user walks: refused folders before the run, named culprits, warnings, formats,
and `vframework top`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from vf_helpers import PLUGGED, flat, summary_of

from vframework.run.simulation import Simulation
from vframework.run.top import COLUMNS, KEYS, TopView


@pytest.fixture
def no_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building a simulation fails the test: the command must refuse before the run starts."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the simulation was built: --out must be refused before the run")

    monkeypatch.setattr(Simulation, "__init__", refuse)


@pytest.mark.usefixtures("no_run")
def test_a_non_empty_out_is_refused_before_the_run(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "full"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    output = cli(["run", "--set", "duration=1h", "--out", out], code=2)
    assert "already exists and is not an empty folder" in output
    assert (out / "keep.txt").read_text(encoding="utf-8") == "mine"


@pytest.mark.usefixtures("no_run")
def test_an_out_that_cannot_be_created_is_refused_before_the_run(cli: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    output = flat(cli(["run", "--set", "duration=1h", "--out", blocker / "out"], code=2))
    assert "is a file, not a folder" in output


def test_set_errors_name_the_set(cli: Any, write_scenario: Any) -> None:
    path = write_scenario(PLUGGED.format(workload="cpu"))
    output = flat(cli(["run", path, "--set", "host.cpus=many"], code=2))
    assert "--set host.cpus=many: host.cpus:" in output
    assert f"{path}: host.cpus" not in output


def test_huge_input_is_never_echoed_whole(cli: Any, write_scenario: Any) -> None:
    vms = "".join(f'[[vm]]\nname = "v{i}"\nmemory = "64MiB"\n' for i in range(40_000))
    path = write_scenario(f'name = "huge"\n[host]\ncpus = 2\nmemory = "1TiB"\n{vms}')
    output = cli(["validate", path], code=2)
    assert "List should have at most 32752 items" in output
    assert len(output) < 2000, f"{len(output)} characters of error"


def test_decimal_units_warn_with_the_binary_spelling(cli: Any, write_scenario: Any) -> None:
    path = write_scenario(PLUGGED.format(workload="cpu").replace('memory = "512MiB"', 'memory = "1GB"'))
    output = flat(cli(["validate", path]))
    assert "warning: size '1GB' is decimal (1,000,000,000 bytes); write '1GiB' for 1,073,741,824 bytes" in output


def test_a_component_that_raises_is_named(cli: Any, make_dist: Any, write_scenario: Any, tmp_path: Path) -> None:
    make_dist(
        "acme-sched",
        """
        from vframework import Scheduler, Params, hookimpl
        from vframework_schedulers import FairScheduler

        class Crashy(FairScheduler):
            name = "acme-crashy"
            def pick(self, cpu, now):
                if now > 5_000_000:
                    return {}["no such vcpu"]
                return super().pick(cpu, now)

        @hookimpl
        def register_schedulers():
            return [Crashy]
        """,
    )
    path = write_scenario(PLUGGED.format(workload="cpu").replace('memory = "512MiB"', 'scheduler = "acme-crashy"'))
    out = tmp_path / "out"
    output = flat(cli(["run", path, "--out", out, "-q"], code=1))
    assert "plugin 'acme-sched': scheduler 'acme-crashy' raised in pick(): KeyError: 'no such vcpu'" in output
    assert "no results were written" in output
    assert "--debug shows the traceback" in output
    assert not out.exists()
    result = cli.invoke(["run", path, "--out", out, "-q", "--debug"])
    assert result.exit_code == 1
    assert "Traceback" in result.output


def test_a_broken_plugin_breaks_only_what_uses_it(cli: Any, make_dist: Any, tmp_path: Path) -> None:
    make_dist("acme-broken", "raise RuntimeError('the acme plugin cannot start')\n")
    out = tmp_path / "out"
    output = flat(cli(["run", "--set", "duration=50ms", "--out", out, "-q", "--no-plot"]))
    assert "warning: plugin distribution 'acme-broken'" in output
    assert "the acme plugin cannot start" in output
    assert (out / "summary.json").exists()
    output = flat(cli(["run", "--set", "host.scheduler=acme", "--out", tmp_path / "o2"], code=2))
    assert "unknown scheduler 'acme'" in output
    assert "acme-broken" in output


def test_formats_for_scripts(cli: Any, tmp_path: Path) -> None:
    name = "a-very-long-virtual-machine-name-that-a-narrow-table-would-cut-short"
    args = ["run", "--set", "duration=50ms", "--set", f"vm[0].name={name}", "--no-plot"]
    data = json.loads(cli([*args, "--out", tmp_path / "a", "--format", "json"]))
    assert name in {row["vm"] for row in data["vms"]}
    assert data["bill_total"]
    text = cli([*args, "--out", tmp_path / "b", "--format", "csv"])
    assert any(line.startswith("vm,mode,workload,run_s") for line in text.splitlines())
    assert any(line.startswith(name + ",") for line in text.splitlines())
    table = cli([*args, "--out", tmp_path / "c"])
    assert name in table, "a table printed to a pipe must not cut names"


def test_a_vm_with_no_cpu_is_warned_about(cli: Any, write_scenario: Any, tmp_path: Path) -> None:
    # The guest's first timer tick comes after the run's 50 ms: it never runs.
    text = PLUGGED.format(workload="cpu").replace(
        'name = "guest"\nmemory = "64MiB"\nworkload = "cpu"',
        'name = "guest"\nmemory = "64MiB"\nworkload = { name = "idle", tick = "1s" }',
    )
    out = tmp_path / "out"
    output = flat(cli(["run", write_scenario(text), "--out", out, "-q", "--no-plot"]))
    assert summary_of(out)["vms"]["guest"]["cpu_run_ns"] == 0
    assert "warning: VM 'guest' received no CPU time in this run" in output
    assert "'neighbour' received no CPU" not in output


# -- vframework top ----------------------------------------------------------------------------


def test_top_shows_the_columns_and_writes_the_same_results(cli: Any, tmp_path: Path) -> None:
    top, run = tmp_path / "top", tmp_path / "run"
    output = cli(["top", "--set", "duration=500ms", "--out", top, "--no-plot", "--sort", "MEMSZ"])
    for title in ("VM", *COLUMNS):
        assert title in output, title
    assert "simulated s per wall s" in output
    # Sorted by MEMSZ, largest first: db and web (1 GiB) before batch (512 MiB) before idle.
    assert output.rindex("batch") < output.rindex("idle")
    cli(["run", "--set", "duration=500ms", "--out", run, "-q", "--no-plot"])
    for name in ("summary.json", "timeseries.csv", "ledger.csv", "invoice.json"):
        assert (top / name).read_bytes() == (run / name).read_bytes(), name


def test_top_refuses_an_unknown_sort_column(cli: Any) -> None:
    assert "--sort: no column 'CPU'" in cli(["top", "--sort", "CPU"], code=2)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_top_in_a_terminal(tmp_path: Path) -> None:
    """A real terminal (tmux): the live table is drawn and refreshed while the run goes on."""
    session = f"vf-top-{os.getpid()}"
    out = tmp_path / "out"
    cmd = f"COLUMNS=160 {sys.executable} -m vframework top --set duration=3s --no-plot --out {out}; sleep 30"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "40", cmd], check=True)
    try:

        def screen() -> str:
            return subprocess.run(
                ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True, check=True
            ).stdout

        def wait_for(text: str) -> str:
            shown = ""
            for _ in range(240):
                shown = screen()
                if text in shown:
                    break
                time.sleep(0.25)
            return shown

        shown = wait_for("%RUN ▼")
        assert "MCTLSZ" in shown, shown
        assert "sort: v:VM r:%RUN" in shown, shown  # a terminal: keys sort the table
        subprocess.run(["tmux", "send-keys", "-t", session, "m"], check=True)
        shown = wait_for("MEMSZ ▼")
        assert "MEMSZ ▼" in shown, shown
        shown = wait_for("results:")
        assert "results:" in shown, shown
        assert (out / "summary.json").exists()
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)


def test_top_keys_sort_by_every_column() -> None:
    class VM:
        def __init__(self, name: str, pages: int) -> None:
            self.name, self.memory_pages, self.counters = name, pages, {}

    counters = dict.fromkeys(
        ("cpu_run_ns", "cpu_ready_ns", "cpu_stolen_ns", "io_requests", "net_bytes_sent", "net_bytes_received"), 0
    ) | dict.fromkeys(("mem_granted", "mem_shared", "mem_balloon", "mem_swapped"), 0)
    view = TopView("t", [VM("small", 256), VM("big", 1024)])
    view.update(10**9, {"small": {**counters, "cpu_run_ns": 10**9}, "big": counters})
    assert view.ordered() == ["small", "big"]  # by %RUN
    assert view.press("m")
    assert view.sort == "MEMSZ"
    assert view.ordered() == ["big", "small"]
    assert not view.press("x")
    assert view.sort == "MEMSZ"
    assert set(KEYS.values()) == {"VM", *COLUMNS}
