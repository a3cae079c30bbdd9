"""Writing a run's results folder, all or nothing: summary.json, timeseries.csv and
host_timeseries.csv, the ledger
(ledger.csv, invoice.json), how it was made (provenance.json, scenario.toml), plots, and Parquet
copies of the tables when pyarrow is installed.

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
from decimal import Decimal
from pathlib import Path
from typing import Any

from vframework.errors import ResultsError

try:  # an extra (`vframework[parquet]`): without it, results are CSV only
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError:  # pragma: no cover - the test environments install it
    pa = pq = None
from vframework.run import report
from vframework.run.billing import LEDGER_COLUMNS, Bill
from vframework.run.provenance import provenance, scenario_toml
from vframework.run.simulation import HOST_TIMESERIES_METRICS, TIMESERIES_METRICS, Simulation

__all__ = [
    "ResultsError",
    "atomic_folder",
    "check_out",
    "default_results_dir",
    "summary_json",
    "timeseries_csv",
    "write_results",
    "write_run",
]


def summary_json(summary: Mapping[str, object]) -> str:
    """The canonical text of summary.json (sorted keys, so identical runs give identical bytes)."""
    return json.dumps(summary, indent=2, sort_keys=True) + "\n"


def timeseries_csv(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """The text of a CSV table (timeseries.csv: a header, then one row per sample time per VM;
    host_timeseries.csv: one row per sample time)."""
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


def _parquet(path: Path, columns: Sequence[str], rows: Sequence[Sequence[Any]], exact: Sequence[str] = ()) -> bool:
    """Write ``rows`` as Parquet beside the CSV, if pyarrow is installed; True if written.

    Columns in ``exact`` hold integers that may pass 2**63 (metered byte-ns) or decimal money:
    they are stored as decimal128, so nothing is rounded through a float."""
    if pa is None:
        return False
    data: dict[str, Any] = {}
    for i, name in enumerate(columns):
        values = [r[i] for r in rows]
        if name in exact:
            data[name] = pa.array([Decimal(str(v)) for v in values], type=pa.decimal128(38, _scale(values)))
        else:
            data[name] = values
    pq.write_table(pa.table(data), path)
    return True


def _scale(values: Sequence[Any]) -> int:
    """Decimal places of decimal-string values (0 for integers)."""
    for v in values:
        text = str(v)
        if "." in text:
            return len(text.split(".", 1)[1])
    return 0


def write_results(
    out: Path,
    summary: Mapping[str, object],
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    plot: bool = True,
    bill: Bill | None = None,
    provenance: Mapping[str, object] | None = None,
    scenario_toml: str | None = None,
    host: tuple[Sequence[str], Sequence[Sequence[Any]]] | None = None,
) -> Path:
    """Write the results folder ``out`` atomically; it must not exist yet (or be empty).
    ``host``: the columns and rows of the host's time series, if any."""
    out = Path(out)
    with atomic_folder(out) as tmp:
        (tmp / "summary.json").write_text(summary_json(summary), encoding="utf-8")
        (tmp / "timeseries.csv").write_text(timeseries_csv(columns, rows), encoding="utf-8")
        _parquet(tmp / "timeseries.parquet", columns, rows)
        if host is not None:
            (tmp / "host_timeseries.csv").write_text(timeseries_csv(*host), encoding="utf-8")
            _parquet(tmp / "host_timeseries.parquet", *host)
        if bill is not None:
            (tmp / "ledger.csv").write_text(timeseries_csv(LEDGER_COLUMNS, bill.ledger), encoding="utf-8")
            (tmp / "invoice.json").write_text(summary_json(bill.invoices()), encoding="utf-8")
            _parquet(tmp / "ledger.parquet", LEDGER_COLUMNS, bill.ledger, exact=("quantity", "amount"))
        if provenance is not None:
            (tmp / "provenance.json").write_text(summary_json(provenance), encoding="utf-8")
        if scenario_toml is not None:
            (tmp / "scenario.toml").write_text(scenario_toml, encoding="utf-8")
        if plot:
            report.plot_timeseries(columns, rows, tmp / "timeseries.png", title=str(summary.get("scenario", "")))
    return out


def check_out(out: Path) -> None:
    """Refuse ``out`` before a run starts: it must be new (its parent writable) or an empty folder."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ResultsError(f"{out} already exists and is not an empty folder; choose another --out")
    parent = out if out.exists() else next((p for p in out.absolute().parents if p.exists()), Path("/"))
    if not parent.is_dir():
        raise ResultsError(f"cannot create results in {out}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ResultsError(f"cannot create results in {out}: {parent} is not writable")


def write_run(sim: Simulation, out: Path, *, plot: bool, argv: Sequence[str]) -> Path:
    """Write a finished simulation's results folder as ``vframework run`` does: its summary,
    time series (the VMs' and the host's), bill, provenance (``argv``: the command that ran
    it) and resolved scenario."""
    assert sim.result is not None
    return write_results(
        out,
        sim.result,
        ("time_ns", "vm", *TIMESERIES_METRICS),
        sim.timeseries,
        plot=plot,
        bill=sim.bill,
        provenance=provenance(sim.scenario, sim.seed, sim.plugins, list(argv)),
        scenario_toml=scenario_toml(sim.scenario, sim.seed),
        host=(("time_ns", *HOST_TIMESERIES_METRICS), sim.host_timeseries),
    )
