"""The default scenario end to end, against the bare engine measured in the same run.

A :class:`vframework.run.simulation.Simulation` of the scenario shipped in the package (five VMs on
a two-CPU host, every standard component it names loaded through the plugin manager, as
``vframework run`` does) is built (not timed) and run (timed: ``Simulation.run``, which
includes sampling and the summary, but not writing the results folder).

Rows:

* ``run.events`` -- engine events fired per wall second by the full run; baseline: the bare
  engine's timeout throughput (``bench_engine``'s model, vframework only) measured in this
  run. The ratio is the fraction of bare-engine speed that a full run achieves: what the
  hypervisor, guests, workloads and MMU cost per event.
* ``run.speed`` -- simulated seconds per wall second; baseline: real time (1 simulated second
  per second), so the ratio reads "times faster than real time". This baseline is a constant,
  not a measurement: it is the row to watch for a user's patience, not for the engine.
* ``run.metering`` -- simulated seconds per wall second of the run with metering and billing
  (the default); baseline: the same scenario with ``billing.enabled = false``, in the same
  interleaved rounds. The ratio is what the meter and the pricing cost (1 = nothing).
"""

from __future__ import annotations

from typing import Any

from bench_engine import make_delays, vframework_timeouts
from common import best_of_interleaved, row

from vframework.api.manager import PluginManager
from vframework.run.scenario import load_default_scenario
from vframework.run.simulation import Simulation

#: Simulated duration (ns) with ``--quick``; the default run uses the scenario's own (5 s).
QUICK_SIZE = 500_000_000
#: Small enough for the smoke test.
SMOKE_SIZE = 20_000_000
#: Sleeps in the bare-engine baseline (quick: a fifth).
BASELINE_SIZE = 500_000


def run(quick: bool = False, size: int | None = None, repeat: int | None = None) -> list[dict[str, Any]]:
    """Rows for ``run.events`` and ``run.speed``.

    ``size`` is the simulated duration in ns (default: the scenario's, 5 s; 0.5 s with
    ``quick``); ``repeat`` the number of interleaved rounds whose best is kept (default 3).
    """
    repeat = repeat or 3
    plugins = PluginManager()
    if size is None and quick:
        size = QUICK_SIZE
    overrides = [f"duration={size}ns"] if size else []
    scenario = load_default_scenario(plugins, overrides)
    unbilled = load_default_scenario(plugins, [*overrides, "billing.enabled=false"])
    duration = scenario.config.duration
    outcome: dict[str, int] = {}

    def full_run(spec: Any = scenario) -> Any:
        sim = Simulation(spec, plugins)

        def body() -> None:
            sim.run()
            outcome["events"] = sim.engine.events_fired
            outcome["sim_ns"] = sim.engine.now

        return body

    # The baseline's size follows the run's, so a smoke test stays tiny.
    baseline_size = max(1000, min(BASELINE_SIZE // (5 if quick else 1), duration // 10_000))
    delays = make_delays(baseline_size)
    bare_events = sum(len(ds) for ds in delays) + len(delays)
    best = best_of_interleaved(
        {
            "run": full_run,
            "unbilled": lambda: full_run(unbilled),
            "bare": lambda: vframework_timeouts(delays),
        },
        repeat,
    )
    events, sim_ns = outcome["events"], outcome["sim_ns"]
    assert sim_ns == duration, (sim_ns, duration)
    common = {
        "scenario": scenario.name,
        "sim_seconds": sim_ns / 1e9,
        "events": events,
        "repeat": repeat,
        "seconds": best["run"],
    }
    return [
        row(
            "run.events",
            "default scenario",
            events / best["run"],
            "events/s",
            bare_events / best["bare"],
            "bare engine",
            baseline_seconds=best["bare"],
            baseline_events=bare_events,
            **common,
        ),
        row("run.speed", "default scenario", sim_ns / 1e9 / best["run"], "sim s/s", 1.0, "real time", **common),
        row(
            "run.metering",
            "default scenario, billed",
            sim_ns / 1e9 / best["run"],
            "sim s/s",
            sim_ns / 1e9 / best["unbilled"],
            "billing.enabled = false",
            baseline_seconds=best["unbilled"],
            **common,
        ),
    ]


if __name__ == "__main__":
    import sys

    sys.exit(__import__("run").main(["run", *sys.argv[1:]]))
