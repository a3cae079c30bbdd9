"""Run the benchmarks: ``python benchmarks/run.py [NAME ...] [--quick] [--repeat N] [--output FILE]``.

Every module ``benchmarks/bench_<name>.py`` is a benchmark called ``<name>``; its
``run(quick=..., size=..., repeat=...)`` returns rows, each comparing a measurement with a
baseline measured in the same run (see ``benchmarks/README.md``). The rows are printed as a
table and written, with the machine and the versions that produced them, to
``benchmarks/results.json``. Nothing here passes or fails on a figure: the ratios are the result.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from common import REQUIRED_KEYS  # noqa: E402

__all__ = ["discover", "environment", "load", "main"]


def discover() -> list[str]:
    """Names of the benchmarks in this folder (``bench_engine.py`` -> ``engine``), sorted."""
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def load(name: str) -> Any:
    """The module of benchmark ``name``."""
    return importlib.import_module(f"bench_{name}")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """What produced the figures: the machine, the interpreter and the packages that matter."""
    return {
        "date": _dt.date.today().isoformat(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "packages": {d: _version(d) for d in ("vframework", "numpy", "simpy")},
    }


def _format_value(value: float) -> str:
    """Three significant digits, with k/M/G for large values: 1234567 -> 1.23M."""
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


def _print_table(rows: list[dict[str, Any]], env: dict[str, Any], title: str) -> None:
    table = Table(
        title=title,
        caption=(
            f"python {env['python']}, numpy {env['packages']['numpy']}, simpy {env['packages']['simpy']}, "
            f"{env['cpus']} CPUs; ratio = times better than the baseline (value / baseline; "
            f"baseline / value where lower is better)"
        ),
    )
    table.add_column("benchmark")
    table.add_column("variant")
    table.add_column("value", justify="right")
    table.add_column("unit")
    table.add_column("baseline")
    table.add_column("baseline value", justify="right")
    table.add_column("ratio", justify="right", style="bold")
    for r in rows:
        table.add_row(
            r["benchmark"],
            r["variant"],
            _format_value(r["value"]),
            r["unit"],
            r["baseline_name"],
            _format_value(r["baseline"]),
            f"{r['ratio']:.3g}x",
        )
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 110))  # a pipe or a CI log: do not truncate
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    available = discover()
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description="Run vframework's benchmarks; each prints a ratio against a baseline measured in the same run.",
    )
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"benchmarks to run (default: all of {', '.join(available)})"
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes (the whole run in well under 30 s)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        metavar="N",
        help="rounds per measurement, the best kept (default: 5 for engine, 3 for run)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=HERE / "results.json",
        metavar="FILE",
        help="where to write the rows (default: benchmarks/results.json)",
    )
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in available]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(available)}")
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    names = args.names or available

    env = environment()
    rows: list[dict[str, Any]] = []
    timings: dict[str, float] = {}
    for name in names:
        print(f"running {name}{' (quick)' if args.quick else ''} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        produced = load(name).run(quick=args.quick, repeat=args.repeat)
        timings[name] = time.perf_counter() - start
        for r in produced:
            missing = [k for k in REQUIRED_KEYS if k not in r]
            if missing:
                raise ValueError(f"benchmark {name!r} returned a row without {missing}: {r}")
        rows.extend(produced)

    _print_table(rows, env, "vframework benchmarks" + (" (--quick)" if args.quick else ""))
    document = {
        "environment": env,
        "quick": args.quick,
        "benchmarks": names,
        "wall_seconds": {n: round(s, 2) for n, s in timings.items()},
        "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_name(args.output.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    tmp.replace(args.output)
    total = sum(timings.values())
    print(f"wrote {args.output} ({len(rows)} rows, {total:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
