"""The experiment registry, runner and writer."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vframework.api.manager import PluginManager
from vframework.run.results import ResultsError
from vframework.run.scenario import parse_scenario
from vframework.run.simulation import TIMESERIES_METRICS, Simulation

__all__ = ["Experiment", "ExperimentResult", "EXPERIMENTS", "experiment", "run_experiment", "write_experiment",
           "simulate"]


@dataclass
class ExperimentResult:
    """Tables (lists of row dicts), figures (name -> value), checks and plots of one experiment."""

    name: str
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    #: Claims the experiment tests: name -> (holds, one-line statement with the measured value).
    checks: dict[str, tuple[bool, str]] = field(default_factory=dict)
    #: Plot file name -> function drawing it into a path.
    plots: dict[str, Callable[[Path], None]] = field(default_factory=dict)


@dataclass(frozen=True)
class Experiment:
    """A registered experiment."""

    name: str
    description: str
    run: Callable[[PluginManager, bool], ExperimentResult]


EXPERIMENTS: dict[str, Experiment] = {}


def experiment(name: str, description: str) -> Callable[..., Any]:
    """Register ``fn(plugins, quick) -> ExperimentResult`` as an experiment."""

    def register(fn: Callable[[PluginManager, bool], ExperimentResult]) -> Callable[..., Any]:
        EXPERIMENTS[name] = Experiment(name, description, fn)
        return fn

    return register


def simulate(plugins: PluginManager, scenario: dict[str, Any], label: str) -> Simulation:
    """Validate and run a scenario given as data; returns the finished simulation."""
    spec = parse_scenario(scenario, f"<experiment {label}>", plugins)
    sim = Simulation(spec, plugins)
    sim.run()
    return sim


def timeseries_rows(sim: Simulation) -> list[dict[str, Any]]:
    """The run's time series as dicts."""
    cols = ("time_ns", "vm", *TIMESERIES_METRICS)
    return [dict(zip(cols, row)) for row in sim.timeseries]


def run_experiment(name: str, plugins: PluginManager, quick: bool = False) -> ExperimentResult:
    """Run a registered experiment by name."""
    if name not in EXPERIMENTS:
        raise KeyError(f"unknown experiment {name!r}; known: {', '.join(sorted(EXPERIMENTS))}")
    return EXPERIMENTS[name].run(plugins, quick)


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        fields = list(dict.fromkeys(k for row in rows for k in row))
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", restval="")
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue()


def write_experiment(result: ExperimentResult, out: Path) -> Path:
    """Write ``NAME.json``, one CSV per table and every plot into ``out``, all or nothing."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ResultsError(f"{out} already exists and is not an empty folder; choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        doc = {
            "experiment": result.name,
            "figures": result.figures,
            "checks": {k: {"holds": ok, "statement": text} for k, (ok, text) in result.checks.items()},
            "tables": result.tables,
        }
        (tmp / f"{result.name}.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        for table, rows in result.tables.items():
            (tmp / f"{table}.csv").write_text(_csv(rows), encoding="utf-8")
        for filename, draw in result.plots.items():
            draw(tmp / filename)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
