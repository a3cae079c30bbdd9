"""Writing a run's results folder: summary.json, timeseries.csv and plots, all or nothing.

Everything is written into a hidden temporary folder beside the destination, which is renamed
into place only when every file is complete. A run that fails leaves no folder that looks
complete (at most the temporary one, which is removed on the way out).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vframework.errors import ResultsError
from vframework.run import report

__all__ = ["ResultsError", "atomic_folder", "default_results_dir", "summary_json", "timeseries_csv", "write_results"]


def summary_json(summary: Mapping[str, object]) -> str:
    """The canonical text of summary.json (sorted keys, so identical runs give identical bytes)."""
    return json.dumps(summary, indent=2, sort_keys=True) + "\n"


def timeseries_csv(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """The text of timeseries.csv: a header, then one row per sample time per VM."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buf.getvalue()


def default_results_dir(scenario: str, seed: int, base: Path | None = None) -> Path:
    """A new folder under ./vframework-results/ named after the scenario and seed."""
    base = base or Path("vframework-results")
    n = 1
    while (candidate := base / f"{scenario}-seed{seed}-{n:03d}").exists():
        n += 1
    return candidate


@contextmanager
def atomic_folder(out: Path) -> Iterator[Path]:
    """Yield a new hidden temporary folder beside ``out``; on success it is renamed to ``out``.

    ``out`` must not exist yet, or be an empty folder (:class:`ResultsError` otherwise, before
    anything is written). If the ``with`` block raises, the temporary folder is removed and
    ``out`` is left as it was: a folder at ``out`` is always complete.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ResultsError(f"{out} already exists and is not an empty folder; choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_results(
    out: Path,
    summary: Mapping[str, object],
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    plot: bool = True,
) -> Path:
    """Write the results folder ``out`` atomically; it must not exist yet (or be empty)."""
    out = Path(out)
    with atomic_folder(out) as tmp:
        (tmp / "summary.json").write_text(summary_json(summary), encoding="utf-8")
        (tmp / "timeseries.csv").write_text(timeseries_csv(columns, rows), encoding="utf-8")
        if plot:
            report.plot_timeseries(columns, rows, tmp / "timeseries.png", title=str(summary.get("scenario", "")))
    return out
