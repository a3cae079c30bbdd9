"""Running experiments and writing their results: the helpers every experiment plugin shares.

The experiments themselves are plugins (:mod:`vframework.api.experiments` is their contract;
the plugin manager indexes what ``register_experiments()`` returns). This module gives them a
way to run a scenario given as data (:func:`simulate`), and gives the command line a runner by
name (:func:`run_experiment`) and the writer of an experiment's folder (:func:`write_experiment`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vframework.api.experiments import ExperimentResult
from vframework.api.manager import PluginManager
from vframework.run.results import atomic_folder
from vframework.run.scenario import parse_scenario
from vframework.run.simulation import TIMESERIES_METRICS, Simulation

__all__ = ["experiment_json", "run_experiment", "simulate", "table_csv", "timeseries_rows", "write_experiment"]


def simulate(plugins: PluginManager, scenario: dict[str, Any], label: str) -> Simulation:
    """Validate and run a scenario given as data; returns the finished simulation.

    ``label`` names the experiment in validation errors (``<experiment LABEL>``).
    """
    spec = parse_scenario(scenario, f"<experiment {label}>", plugins)
    sim = Simulation(spec, plugins)
    sim.run()
    return sim


def timeseries_rows(sim: Simulation) -> list[dict[str, Any]]:
    """The run's time series as dicts (``time_ns``, ``vm`` and every time-series metric)."""
    cols = ("time_ns", "vm", *TIMESERIES_METRICS)
    return [dict(zip(cols, row, strict=True)) for row in sim.timeseries]


def run_experiment(name: str, plugins: PluginManager, quick: bool = False) -> ExperimentResult:
    """Run the installed experiment ``name``; KeyError lists the installed ones."""
    return plugins.get_experiment(name).run(plugins, quick)


def table_csv(rows: Sequence[Mapping[str, object]]) -> str:
    """A table as CSV: the union of the rows' keys (first-seen order) as the header."""
    buf = io.StringIO()
    if rows:
        fields = list(dict.fromkeys(k for row in rows for k in row))
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", restval="")
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue()


def experiment_json(result: ExperimentResult) -> str:
    """The text of ``NAME.json``: figures, checks and tables, keys sorted."""
    doc = {
        "experiment": result.name,
        "figures": result.figures,
        "checks": {k: {"holds": ok, "statement": text} for k, (ok, text) in result.checks.items()},
        "tables": result.tables,
    }
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def write_experiment(result: ExperimentResult, out: Path) -> Path:
    """Write ``NAME.json``, one CSV per table and every plot into ``out``, all or nothing."""
    out = Path(out)
    with atomic_folder(out) as tmp:
        (tmp / f"{result.name}.json").write_text(experiment_json(result), encoding="utf-8")
        for table, rows in result.tables.items():
            (tmp / f"{table}.csv").write_text(table_csv(rows), encoding="utf-8")
        for filename, draw in result.plots.items():
            draw(tmp / filename)
    return out
