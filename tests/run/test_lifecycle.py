"""Lifecycle hooks during a run: called in order, with what they promise; observers change no
result; a hook that raises stops the run with a message naming the plugin, and writes nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from vf_helpers import PLUGGED, results_left_behind, summary_of

from vframework import PluginManager

OBSERVER = """\
from vframework import hookimpl

CALLS = []


@hookimpl
def simulation_configured(scenario):
    CALLS.append(("simulation_configured", scenario.name, 0))


@hookimpl
def vm_created(simulation, vm):
    CALLS.append(("vm_created", vm.name, simulation.engine.now))


@hookimpl
def simulation_started(simulation):
    CALLS.append(("simulation_started", len(simulation.vms), simulation.engine.now))


@hookimpl
def vm_destroyed(simulation, vm):
    CALLS.append(("vm_destroyed", vm.name, simulation.engine.now))


@hookimpl
def simulation_finished(simulation, summary):
    CALLS.append(("simulation_finished", summary["sim_time_ns"], simulation.engine.now))
"""


def test_lifecycle_hooks_are_called_in_order(make_dist, cli, write_scenario, tmp_path: Path) -> None:
    module = make_dist("acme-observer", OBSERVER)
    path = write_scenario(PLUGGED.format(workload="idle"))
    cli(["run", path, "--out", tmp_path / "out", "-q", "--no-plot"])
    calls = sys.modules[module].CALLS
    end = 50_000_000
    assert calls == [
        ("simulation_configured", "plugged", 0),
        ("vm_created", "guest", 0),
        ("vm_created", "neighbour", 0),
        ("simulation_started", 2, 0),
        ("vm_destroyed", "guest", end),
        ("vm_destroyed", "neighbour", end),
        ("simulation_finished", end, end),
    ]


def test_vm_destroyed_when_its_last_vcpu_halts(make_dist, cli, write_scenario, tmp_path: Path) -> None:
    module = make_dist("acme-observer", OBSERVER)
    text = PLUGGED.format(workload="cpu").replace(
        'workload = "cpu"\n\n[[vm]]', 'workload = { name = "cpu", burst = "5ms", total = "5ms" }\n\n[[vm]]', 1
    )
    cli(["run", write_scenario(text), "--out", tmp_path / "out", "-q", "--no-plot"])
    destroyed = {name: t for hook, name, t in sys.modules[module].CALLS if hook == "vm_destroyed"}
    assert set(destroyed) == {"guest", "neighbour"}
    assert 5_000_000 <= destroyed["guest"] < 50_000_000, "the finished VM is reported when it halts"
    assert destroyed["neighbour"] == 50_000_000


def test_observers_do_not_change_results(make_dist, cli, write_scenario, tmp_path: Path) -> None:
    path = write_scenario(PLUGGED.format(workload="io"))
    cli(["run", path, "--out", tmp_path / "plain", "-q", "--no-plot"])
    make_dist("acme-observer", OBSERVER)
    cli(["run", path, "--out", tmp_path / "observed", "-q", "--no-plot"])
    plain, observed = summary_of(tmp_path / "plain"), summary_of(tmp_path / "observed")
    assert {k: v for k, v in plain.items() if k != "plugins"} == {k: v for k, v in observed.items() if k != "plugins"}
    series = [(tmp_path / name / "timeseries.csv").read_bytes() for name in ("plain", "observed")]
    assert series[0] == series[1]


def test_observer_cannot_alter_written_summary(make_dist, cli, write_scenario, tmp_path: Path) -> None:
    path = write_scenario(PLUGGED.format(workload="cpu"))
    cli(["run", path, "--out", tmp_path / "plain", "-q", "--no-plot"])
    make_dist(
        "acme-meddler",
        """\
        from vframework import hookimpl

        @hookimpl
        def simulation_finished(simulation, summary):
            summary["vms"]["guest"]["cpu_run_ns"] = -1
            summary["scenario"] = "tampered"
        """,
    )
    cli(["run", path, "--out", tmp_path / "meddled", "-q", "--no-plot"])
    meddled = summary_of(tmp_path / "meddled")
    assert meddled["scenario"] == "plugged"
    assert meddled["vms"]["guest"] == summary_of(tmp_path / "plain")["vms"]["guest"]


def test_lifecycle_hooks_run_in_registration_order(
    make_dist, cli, write_scenario, hook_order: list[str], tmp_path: Path
) -> None:
    """PluginManager.call: 'Call a lifecycle hook on every plugin, in registration order'."""
    source = """\
        import builtins
        from vframework import hookimpl

        @hookimpl
        def simulation_configured(scenario):
            builtins.VFRAMEWORK_TEST_ORDER.append(__name__)
        """
    first = make_dist("acme-a-first", source)
    second = make_dist("acme-b-second", source)
    pm = PluginManager()
    order = list(pm.plugins)
    assert order.index("acme-a-first") < order.index("acme-b-second")
    cli(["run", write_scenario(PLUGGED.format(workload="idle")), "--out", tmp_path / "out", "-q", "--no-plot"])
    assert hook_order == [first, second]


LIFECYCLE_HOOKS = {
    "simulation_configured": "scenario",
    "simulation_started": "simulation",
    "vm_created": "simulation, vm",
    "vm_destroyed": "simulation, vm",
    "simulation_finished": "simulation, summary",
}


@pytest.mark.parametrize("hook", sorted(LIFECYCLE_HOOKS))
def test_lifecycle_hook_that_raises_stops_the_run(hook: str, make_dist, cli, write_scenario, tmp_path: Path) -> None:
    make_dist(
        "acme-faulty",
        f"""\
        from vframework import hookimpl

        @hookimpl
        def {hook}({LIFECYCLE_HOOKS[hook]}):
            raise ValueError("observer exploded")
        """,
    )
    out = tmp_path / "results" / "run"
    output = cli(["run", write_scenario(PLUGGED.format(workload="cpu")), "--out", out, "-q", "--no-plot"], code=1)
    assert "acme-faulty" in output
    assert hook in output
    assert "observer exploded" in output
    assert "no results were written" in output
    assert not out.exists()
    assert results_left_behind(out) == [], "a partial results folder was left behind"


def test_error_message_with_brackets_is_printed_verbatim(make_dist, cli, write_scenario, tmp_path: Path) -> None:
    make_dist(
        "acme-brackets",
        """\
        from vframework import hookimpl

        @hookimpl
        def simulation_started(simulation):
            raise OSError("cannot open [/var/lib/acme] or [bold]")
        """,
    )
    out = tmp_path / "out"
    output = cli(["run", write_scenario(PLUGGED.format(workload="cpu")), "--out", out, "-q", "--no-plot"], code=1)
    assert "cannot open [/var/lib/acme] or [bold]" in output
    assert not out.exists()
