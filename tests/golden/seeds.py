"""Results in distribution: the contract for a change that may move results, not only hashes.

A change that reorders same-instant events or random draws (coalescing events, say) cannot keep
every result byte-identical, but it must keep the model the same in distribution. This script
makes that check executable: over many seeds of every recorded scenario (the default scenario
and each scenario in ``scenarios/``), every reported metric's mean must move by less than its
seed-to-seed standard deviation.

``python tests/golden/seeds.py record OUT [--seeds 20] [CASE...]`` runs each case once per
seed (as ``vframework sweep`` points, ``--workers`` processes) and writes ``OUT/<case>.json``:
per metric (every number of summary.json: ``host.X``, ``VM.X``, ``billing.VM.X``), the mean,
the standard deviation over seeds and the values. ``python tests/golden/seeds.py compare BEFORE
AFTER`` compares two such folders (record one on the commit before the change, one after) and
prints each metric whose mean moved by its standard deviation or more (a metric that does not
vary with the seed must not move at all); exit 1 if any did.

The simulator's own counter ``host.events_fired`` is left out, as in the hash check: it counts
the simulator's work, not the model's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE / "scenarios"
DEFAULT = HERE.parents[1] / "src" / "vframework" / "run" / "scenarios" / "default.toml"
#: Numbers of summary.json that describe the simulator, not the model.
NOT_MODEL = {"host.events_fired", "seed"}


def cases() -> dict[str, Path]:
    """Case name -> scenario file (the run cases of ``hashes.py``)."""
    found = {"run/default": DEFAULT}
    for path in sorted(SCENARIOS.glob("*.toml")):
        found[f"run/{path.stem}"] = path
    return found


def flatten(summary: dict[str, Any]) -> dict[str, float]:
    """Every number of a summary, by dotted name (host and VM counters, billing amounts)."""
    out: dict[str, float] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, bool):
            return
        elif isinstance(value, int | float):
            out[prefix] = float(value)
        elif isinstance(value, str):
            with contextlib.suppress(ArithmeticError):  # billing amounts are decimal strings
                out[prefix] = float(Decimal(value))

    walk("", {k: summary[k] for k in ("host", "vms", "billing", "sim_time_ns") if k in summary})
    return {k.removeprefix("vms."): v for k, v in out.items() if k not in NOT_MODEL}


def stats(values: list[float]) -> dict[str, Any]:
    mean = math.fsum(values) / len(values)
    var = math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return {"mean": mean, "std": math.sqrt(var), "values": values}


def record(out: Path, seeds: int, names: list[str], workers: int) -> int:
    out.mkdir(parents=True, exist_ok=True)
    chosen = cases()
    unknown = [n for n in names if n not in chosen]
    if unknown:
        print(f"unknown case {unknown[0]!r}; known: {', '.join(chosen)}", file=sys.stderr)
        return 2
    for name, scenario in chosen.items():
        if names and name not in names:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            spec = Path(tmp) / "seeds.toml"
            spec.write_text(
                f'base = {json.dumps(str(scenario))}\nseeds = {list(range(1, seeds + 1))}\nmetrics = ["cpu_run_ns"]\n'
            )
            points = Path(tmp) / "sweep"
            cmd = ["vframework", "sweep", str(spec), "--out", str(points), "--workers", str(workers), "-q"]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(f"FAILED {name}:\n{done.stderr}", file=sys.stderr)
                return 1
            per_seed = [
                flatten(json.loads((folder / "summary.json").read_text()))
                for folder in sorted((points / "points").iterdir())
            ]
        metrics = sorted(set().union(*per_seed))
        table = {m: stats([run.get(m, 0.0) for run in per_seed]) for m in metrics}
        path = out / f"{name.replace('/', '__')}.json"
        path.write_text(json.dumps({"case": name, "seeds": seeds, "metrics": table}, indent=1) + "\n")
        print(f"recorded {name} ({seeds} seeds, {len(metrics)} metrics)")
    return 0


def moved(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, float, float, float]]:
    """(metric, mean before, mean after, std before) of every metric that moved too far."""
    rows = []
    for metric in sorted(set(before) | set(after)):
        b, a = before.get(metric), after.get(metric)
        if b is None or a is None:
            rows.append((metric, math.nan if b is None else b["mean"], math.nan if a is None else a["mean"], 0.0))
            continue
        shift = abs(a["mean"] - b["mean"])
        if (b["std"] == 0.0 and shift > 0.0) or (b["std"] > 0.0 and shift >= b["std"]):
            rows.append((metric, b["mean"], a["mean"], b["std"]))
    return rows


def compare(before_dir: Path, after_dir: Path) -> int:
    failed = 0
    for path in sorted(before_dir.glob("*.json")):
        other = after_dir / path.name
        case = json.loads(path.read_text())
        if not other.is_file():
            print(f"missing {case['case']}: not in {after_dir}")
            failed += 1
            continue
        rows = moved(case["metrics"], json.loads(other.read_text())["metrics"])
        print(f"{'moved' if rows else 'same in distribution'} {case['case']} ({len(case['metrics'])} metrics)")
        for metric, b, a, std in rows:
            print(f"    {metric}: mean {b:.6g} -> {a:.6g} (seed-to-seed std {std:.3g})")
        failed += bool(rows)
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="run every case over many seeds and write the statistics")
    rec.add_argument("out", type=Path)
    rec.add_argument("cases", nargs="*", help="case names (default: all)")
    rec.add_argument("--seeds", type=int, default=20)
    rec.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    cmp = sub.add_parser("compare", help="compare two recorded folders")
    cmp.add_argument("before", type=Path)
    cmp.add_argument("after", type=Path)
    args = parser.parse_args()
    if args.command == "record":
        return record(args.out, args.seeds, args.cases, args.workers)
    return compare(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())
