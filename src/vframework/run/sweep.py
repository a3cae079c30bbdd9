"""Sweeps: one base scenario, a grid of overrides and a list of seeds; every point an ordinary run.

A sweep file (TOML)::

    base = "scenario.toml"            # relative to the sweep file
    seeds = [1, 2, 3]
    metrics = ["cpu_run_ns", "web.cpu_ready_ns", "host.hypervisor_ns"]

    [grid]                            # the product of these lists
    "host.scheduler" = ["credit", "proportional"]
    "vm[0].workload.cap" = [0, 50]

    [zip]                             # lists walked together (all of one length)
    "host.cpus" = [2, 4]
    "host.memory" = ["2GiB", "4GiB"]

A key that starts with ``@`` is a label: it names a column of ``sweep.csv`` and sets nothing
(useful beside a zip whose scenario keys differ per point). A table value sets each of its keys
under the path: ``"vm[0]" = [{ cap = 50 }, { limit = 50 }]``.

Points are every combination of the grid, times every row of the zip, times every seed, in that
order. Point ``i`` runs into ``OUT/points/<i:04d>`` as ``vframework run --no-plot`` would: the
same files, written the same way (a folder that exists is complete). The sweep keeps its plan
in ``OUT/sweep.json`` and gathers the chosen metrics of every point, beside its parameters and
seed, into ``OUT/sweep.csv`` (and ``sweep.parquet`` when pyarrow is installed).

A point runs from the base scenario's *text*, never its path, and hands back its files' bytes:
the machine that runs it (a local process, a Dask worker) needs no shared file system, and the
same point gives the same files wherever it ran.
"""

from __future__ import annotations

import json
import math
import tempfile
import tomllib
from dataclasses import asdict, dataclass
from decimal import Decimal
from itertools import product
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vframework.api.manager import PluginManager
from vframework.errors import Problem, ScenarioError
from vframework.run.results import write_run
from vframework.run.scenario import parse_scenario_text
from vframework.run.simulation import Simulation

__all__ = [
    "Point",
    "PointResult",
    "SweepSpec",
    "gather",
    "load_sweep",
    "metric",
    "plan",
    "run_point",
    "toml_value",
]

#: The results folder of point ``i`` under the sweep's folder.
POINTS = "points"
#: The sweep's plan, written before any point runs (a resumed sweep must be the same sweep).
PLAN = "sweep.json"
#: A grid or zip key starting with this is a label: a column of sweep.csv, set in no scenario
#: (the cap of a zip that sets ``cap`` under credit and ``limit`` under proportional).
LABEL = "@"


class SweepSpec(BaseModel):
    """What a sweep file holds."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    base: str = Field(description="the base scenario file, relative to the sweep file")
    seeds: list[int] = Field(min_length=1, description="every point runs once per seed")
    metrics: list[str] = Field(
        min_length=1, description="what sweep.csv gathers: a VM counter (summed), VM.counter, host.counter, bill_total"
    )
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="--set paths -> values; their product")
    zip_: dict[str, list[Any]] = Field(
        default_factory=dict, alias="zip", description="--set paths -> values walked together"
    )

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: list[int]) -> list[int]:
        if any(s < 0 for s in seeds):
            raise ValueError("seeds must be >= 0")
        if len(set(seeds)) != len(seeds):
            raise ValueError("a seed is listed twice")
        return seeds

    @model_validator(mode="after")
    def _axes(self) -> SweepSpec:
        for table, axes in (("grid", self.grid), ("zip", self.zip_)):
            for key, values in axes.items():
                if not values:
                    raise ValueError(f"[{table}] {key!r} has no values")
        lengths = {len(v) for v in self.zip_.values()}
        if len(lengths) > 1:
            sizes = ", ".join(f"{k}: {len(v)}" for k, v in self.zip_.items())
            raise ValueError(f"[zip] lists must all have one length ({sizes})")
        both = sorted(set(self.grid) & set(self.zip_))
        if both:
            raise ValueError(f"{both[0]!r} is in both [grid] and [zip]")
        return self


@dataclass(frozen=True)
class Point:
    """One run of a sweep: its index, its overrides (``--set`` path -> value) and seed."""

    index: int
    params: dict[str, Any]
    seed: int

    @property
    def name(self) -> str:
        return f"{self.index:04d}"

    def overrides(self) -> list[str]:
        """Its ``--set`` overrides: a label (``@name``) sets nothing, and a table sets each of its
        keys under the path (``"vm[0]" = { cap = 50 }`` is ``vm[0].cap=50``)."""
        out = []
        for key, value in self.params.items():
            if key.startswith(LABEL):
                continue
            if isinstance(value, dict):
                out += [f"{key}.{sub}={toml_value(v)}" for sub, v in value.items()]
            else:
                out.append(f"{key}={toml_value(value)}")
        return out


@dataclass(frozen=True)
class PointResult:
    """What a point gave back: its files (name -> bytes), or the error that stopped it."""

    index: int
    files: dict[str, bytes] | None
    error: str | None = None


def toml_value(value: Any) -> str:
    """``value`` as a TOML literal, as ``--set KEY=VALUE`` reads it (a string stays a string)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"{value!r} is not a TOML value")


def load_sweep(path: Path) -> tuple[SweepSpec, Path]:
    """Read and check a sweep file; its spec and the base scenario's path. ScenarioError names
    every problem with its key."""
    source = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ScenarioError([Problem(source, "", f"cannot read the sweep file: {reason}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError([Problem(source, "", f"not valid TOML: {exc}")]) from None
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        problems = [
            Problem(source, ".".join(str(p) for p in err["loc"]), err["msg"].removeprefix("Value error, "))
            for err in exc.errors()
        ]
        raise ScenarioError(problems) from None
    base = (path.parent / spec.base).resolve()
    if not base.is_file():
        raise ScenarioError([Problem(source, "base", f"no scenario file at {base}")])
    return spec, base


def plan(spec: SweepSpec) -> list[Point]:
    """Every point: the grid's product, times the zip's rows, times the seeds."""
    grid_keys = list(spec.grid)
    zip_keys = list(spec.zip_)
    zip_rows = list(zip(*spec.zip_.values(), strict=True)) if zip_keys else [()]
    points: list[Point] = []
    for combo in product(*spec.grid.values()):
        for row in zip_rows:
            params = dict(zip(grid_keys, combo, strict=True)) | dict(zip(zip_keys, row, strict=True))
            for seed in spec.seeds:
                points.append(Point(len(points), params, seed))
    return points


def run_point(base_text: str, base_source: str, point: Point) -> PointResult:
    """Run one point from the base scenario's text: its results files as bytes, or its error.

    Module-level and self-contained, so that a process pool or a Dask worker can run it."""
    try:
        plugins = PluginManager()
        spec = parse_scenario_text(base_text, base_source, plugins, point.overrides())
        sim = Simulation(spec, plugins, point.seed)
        sim.run()
        argv = ["vframework", "run", base_source, "--seed", str(point.seed), "--no-plot"]
        argv += [a for o in point.overrides() for a in ("--set", o)]
        with tempfile.TemporaryDirectory(prefix="vframework-point-") as tmp:
            out = write_run(sim, Path(tmp) / point.name, plot=False, argv=argv)
            files = {f.name: f.read_bytes() for f in sorted(out.iterdir()) if f.is_file()}
        return PointResult(point.index, files)
    except ScenarioError as exc:
        return PointResult(point.index, None, "invalid scenario: " + "; ".join(str(p) for p in exc.problems))
    except Exception as exc:  # a point's failure is recorded; the sweep goes on
        return PointResult(point.index, None, f"{type(exc).__name__}: {exc}")


def metric(summary: dict[str, Any], name: str) -> float | None:
    """A metric of a summary: a VM counter summed over VMs, ``VM.counter`` for one VM,
    ``host.counter``, or ``bill_total`` / ``bill_<resource>`` (summed over VMs)."""
    vms: dict[str, dict[str, int]] = summary.get("vms", {})
    host: dict[str, int] = summary.get("host", {})
    billing: dict[str, Any] = summary.get("billing") or {}
    bills: dict[str, dict[str, Any]] = billing.get("vms", {})
    head, dot, tail = name.partition(".")
    if dot and head == "host":
        return host.get(tail)
    if dot:
        if tail.startswith("bill_"):
            value = bills.get(head, {}).get(tail)
            return float(Decimal(str(value))) if value is not None else None
        return vms.get(head, {}).get(tail)
    if name.startswith("bill_"):
        if not bills:
            return None
        return float(sum(Decimal(str(b.get(name, 0))) for b in bills.values()))
    values = [c[name] for c in vms.values() if name in c]
    return sum(values) if values else None


def gather(out: Path, spec: SweepSpec, points: list[Point], errors: dict[int, str]) -> list[dict[str, Any]]:
    """One row per point: its index, parameters, seed, status and metrics (from its results
    folder; a failed point has its error and no metrics)."""
    rows = []
    for point in points:
        row: dict[str, Any] = {"point": point.name, **point.params, "seed": point.seed}
        summary_path = out / POINTS / point.name / "summary.json"
        if summary_path.is_file():
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
            row["status"], row["error"] = "ok", ""
            for name in spec.metrics:
                value = metric(summary, name)
                row[name] = math.nan if value is None else value
        else:
            row["status"], row["error"] = "failed", errors.get(point.index, "not run")
            row.update(dict.fromkeys(spec.metrics, math.nan))
        rows.append(row)
    return rows


def plan_json(spec: SweepSpec, base_text: str, points: list[Point]) -> str:
    """What a results folder records of its sweep, to refuse resuming a different one in it."""
    doc = {
        "base_scenario": base_text,
        "metrics": spec.metrics,
        "points": [asdict(p) | {"name": p.name} for p in points],
    }
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"
