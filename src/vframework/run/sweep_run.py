"""Running a sweep's points: here (a process pool) or on a Dask cluster, resumably.

:func:`prepare` checks the sweep file and every point's scenario before anything runs, and
claims the results folder (a folder that holds another sweep's plan is refused); points whose
results folder exists are done and are not run again. :func:`run` then runs the rest and writes
each point's files as they come back; a point that fails is recorded with its error and the
others go on. :func:`finish` gathers ``sweep.csv`` (and ``sweep.parquet``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from importlib.metadata import version
from importlib.util import find_spec
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pandas as pd

from vframework.api.manager import PluginManager
from vframework.errors import Problem, ResultsError, ScenarioError
from vframework.run.results import atomic_folder
from vframework.run.scenario import parse_scenario_text
from vframework.run.sweep import PLAN, POINTS, Point, PointResult, SweepSpec, gather, load_sweep, plan, plan_json
from vframework.run.sweep import run_point as _run_point

__all__ = ["Sweep", "finish", "installed", "prepare", "run"]

#: sweep.parquet is written beside sweep.csv when pyarrow is installed (vframework[parquet]).
_HAVE_PYARROW = find_spec("pyarrow") is not None


@dataclass
class Sweep:
    """A prepared sweep: its spec, base scenario, points, folder and what is left to run."""

    spec: SweepSpec
    base_text: str
    base_source: str
    points: list[Point]
    out: Path
    pending: list[Point]
    #: point index -> why it failed (this time)
    errors: dict[int, str] = field(default_factory=dict)


def installed() -> dict[str, str]:
    """vframework and every plugin distribution installed here, with their versions (what a
    Dask worker must have too)."""
    pm = PluginManager()
    found = {"vframework": version("vframework")}
    found.update({name: info.version for name, info in pm.plugins.items()})
    return found


def prepare(sweep_file: Path, out: Path) -> Sweep:
    """Check the sweep and every point's scenario; claim ``out``. Raises ScenarioError (bad
    sweep or point) or ResultsError (``out`` is not this sweep's folder)."""
    spec, base = load_sweep(sweep_file)
    base_text = base.read_text(encoding="utf-8")
    points = plan(spec)
    plugins = PluginManager()
    problems: list[Problem] = []
    seen: set[str] = set()
    for point in points:
        key = repr(point.params)
        if key in seen:
            continue  # seeds do not change whether a scenario is valid
        seen.add(key)
        try:
            parse_scenario_text(base_text, str(base), plugins, point.overrides())
        except ScenarioError as exc:
            where = f"{sweep_file} point {point.name} ({', '.join(point.overrides()) or 'the base scenario'})"
            problems += [Problem(where, p.path, p.message) for p in exc.problems]
    if problems:
        raise ScenarioError(problems)
    text = plan_json(spec, base_text, points)
    recorded = out / PLAN
    if recorded.is_file():
        if recorded.read_text(encoding="utf-8") != text:
            raise ResultsError(
                f"{out} holds another sweep (its {PLAN} differs: other points, metrics or base scenario); "
                "give a new --out, or remove the folder to start again"
            )
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ResultsError(f"{out} exists and is not a sweep's results folder (no {PLAN}); give a new or empty --out")
    (out / POINTS).mkdir(parents=True, exist_ok=True)
    recorded.write_text(text, encoding="utf-8")
    pending = [p for p in points if not (out / POINTS / p.name).is_dir()]
    return Sweep(spec, base_text, str(base), points, out, pending)


def _store(sweep: Sweep, result: PointResult) -> None:
    if result.files is None:
        sweep.errors[result.index] = result.error or "failed"
        return
    with atomic_folder(sweep.out / POINTS / f"{result.index:04d}") as tmp:
        for name, data in result.files.items():
            (tmp / name).write_bytes(data)


def _local(sweep: Sweep, workers: int) -> Iterator[PointResult]:
    if workers == 1:
        for point in sweep.pending:
            yield _run_point(sweep.base_text, sweep.base_source, point)
        return
    # spawn, not fork: the parent has threads (the progress bar), and a forked child could
    # inherit a lock one of them held.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_run_point, sweep.base_text, sweep.base_source, p) for p in sweep.pending]
        for future in as_completed(futures):
            yield future.result()


def _dask(sweep: Sweep, address: str) -> Iterator[PointResult]:
    try:
        # Optional (vframework[dask]): imported only for --scheduler.
        from distributed import Client  # noqa: PLC0415
        from distributed import as_completed as dask_completed  # noqa: PLC0415
    except ImportError:
        raise ResultsError("--scheduler needs Dask's distributed scheduler: pip install 'vframework[dask]'") from None
    try:
        client = Client(address, timeout="10s")  # type: ignore[no-untyped-call]
    except OSError as exc:
        raise ResultsError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    with client:
        _check_workers(client)
        futures = [client.submit(_run_point, sweep.base_text, sweep.base_source, p, pure=False) for p in sweep.pending]
        for future in dask_completed(futures):  # type: ignore[no-untyped-call]
            yield future.result()


def _check_workers(client: Any) -> None:
    """Every worker must have vframework and the plugins installed here; a different version is
    allowed (results say which versions ran them) but one missing is an error, by name."""
    here = installed()
    there: dict[str, dict[str, str]] = client.run(installed)
    if not there:
        raise ResultsError("the Dask cluster has no workers")
    problems = []
    for worker, dists in sorted(there.items()):
        missing = sorted(set(here) - set(dists))
        if missing:
            problems.append(f"{worker} lacks {', '.join(missing)}")
    if problems:
        raise ResultsError("Dask workers need vframework and the same plugins as this machine: " + "; ".join(problems))


def run(
    sweep: Sweep,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Run every pending point (on ``scheduler``, a Dask address, or on ``workers`` local
    processes: default the core count), storing each as it comes back."""
    total = len(sweep.pending)
    results = _dask(sweep, scheduler) if scheduler else _local(sweep, workers or os.cpu_count() or 1)
    try:
        for done, result in enumerate(results, start=1):
            _store(sweep, result)
            if progress is not None:
                progress(done, total)
    except (ResultsError, OSError):
        raise
    except Exception as exc:
        # A point's own failure comes back as a result; this is the pool or the cluster
        # (a worker killed, the scheduler gone).
        where = f"the Dask cluster at {scheduler}" if scheduler else "the local process pool"
        raise ResultsError(f"{where} failed: {type(exc).__name__}: {exc}") from exc


def finish(sweep: Sweep) -> list[dict[str, Any]]:
    """Write ``sweep.csv`` (and ``sweep.parquet`` with pyarrow); the rows."""
    rows = gather(sweep.out, sweep.spec, sweep.points, sweep.errors)
    params = list(sweep.spec.grid) + list(sweep.spec.zip_)
    columns = ["point", *params, "seed", "status", "error", *sweep.spec.metrics]
    frame = pd.DataFrame(rows, columns=columns)
    frame.to_csv(sweep.out / "sweep.csv", index=False)
    if _HAVE_PYARROW:
        # Parameters can mix types across points (0 and "auto"): stored as written in the CSV.
        frame.astype({p: str for p in params}).to_parquet(sweep.out / "sweep.parquet", index=False)
    return rows
