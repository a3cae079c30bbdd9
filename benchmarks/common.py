"""Helpers shared by the benchmark modules (not a benchmark itself: no ``bench_`` prefix).

A benchmark module ``bench_<name>.py`` exposes ``run(quick=False, size=None, repeat=None)``
returning rows made by :func:`row`, and ``SMOKE_SIZE``, a ``size`` small enough for a smoke test
to run it in well under a second. Every row compares a measurement with a baseline measured in
the same run, on the same machine, in the same process: the ratio is the result, never the
absolute figure.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vframework.api.manager import PluginManager

__all__ = ["REQUIRED_KEYS", "best_of_interleaved", "in_child", "installed", "row", "timed"]

#: The keys every row has.
REQUIRED_KEYS = ("benchmark", "variant", "value", "unit", "baseline", "baseline_name", "ratio", "better")


def row(
    benchmark: str,
    variant: str,
    value: float,
    unit: str,
    baseline: float,
    baseline_name: str,
    lower_is_better: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """One result: ``value`` and ``baseline`` in the same ``unit``. The ratio reads "times
    better than the baseline": ``value / baseline`` when higher is better (rates, the usual
    case), ``baseline / value`` when lower is better (memory per page); ``better`` says which."""
    ratio = float(baseline) / float(value) if lower_is_better else float(value) / float(baseline)
    return {
        "benchmark": benchmark,
        "variant": variant,
        "value": float(value),
        "unit": unit,
        "baseline": float(baseline),
        "baseline_name": baseline_name,
        "ratio": ratio,
        "better": "lower" if lower_is_better else "higher",
        **extra,
    }


def timed(setup: Callable[[], Callable[[], Any]]) -> float:
    """Wall seconds of one call of the callable that ``setup()`` returns (setup is not timed).

    A full collection runs first so no measurement pays for another's garbage; the collector stays
    enabled during the measurement, as it is in a real run.
    """
    body = setup()
    gc.collect()
    start = time.perf_counter()
    body()
    return time.perf_counter() - start


def best_of_interleaved(setups: dict[str, Callable[[], Callable[[], Any]]], repeat: int) -> dict[str, float]:
    """The best (least) wall time of each named measurement over ``repeat`` rounds.

    The rounds are interleaved (A, B, C, A, B, C, ...) so a slow spell of the machine penalizes
    every contender alike instead of one of them.
    """
    best = {name: float("inf") for name in setups}
    for _ in range(max(1, repeat)):
        for name, setup in setups.items():
            best[name] = min(best[name], timed(setup))
    return best


def installed(kind: str, baseline: str) -> dict[str, type]:
    """Every installed component of ``kind`` by name (sorted), found as ``vframework`` finds
    them; the one named ``baseline`` must be among them."""
    plugins = PluginManager()
    names = sorted(plugins.components[kind])
    if baseline not in names:
        raise RuntimeError(f"the baseline {kind} {baseline!r} is not installed")
    return {name: plugins.get(kind, name) for name in names}


def in_child(module: str, call: str, what: str) -> dict[str, Any]:
    """Run ``module.call`` in a fresh Python process (so that its memory is its own) and return
    the JSON object the child printed last; ``what`` names the run in an error."""
    here = str(Path(__file__).resolve().parent)
    code = f"import sys; sys.path.insert(0, {here!r}); import {module}; {module}.{call}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {what} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
