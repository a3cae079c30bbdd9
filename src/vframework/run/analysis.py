"""Reading a results folder back as pandas DataFrames, with units in the column names.

``load(DIR)`` gives the per-VM summary (one row per VM: its counters and, when billed, its
amounts), the host's counters, the time series and the ledger. Counters measured in a physical
unit carry it as a suffix (``mem_granted_pages``, ``cpu_run_ns`` already has it); counts of
events keep their name (``traps``). Ledger quantities stay exact Python integers (they can pass
2**63: storage is metered in byte-ns) and amounts :class:`~decimal.Decimal`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from vframework.errors import ResultsError
from vframework.hv.metrics import HOST_METRICS, VM_METRICS

__all__ = ["Results", "column_name", "load"]

#: Units written into column names; other units are counts of what the name says.
_PHYSICAL = {"ns": "ns", "pages": "pages", "frames": "frames", "bytes": "bytes"}


def column_name(metric: str) -> str:
    """``metric`` with its unit as a suffix, when it is a physical unit not already in the name."""
    m = VM_METRICS.get(metric) or HOST_METRICS.get(metric)
    if m is None:
        return metric
    suffix = _PHYSICAL.get(m.unit)
    if suffix is None or metric.endswith(f"_{suffix}"):
        return metric
    return f"{metric}_{suffix}"


@dataclass
class Results:
    """One results folder, read back."""

    path: Path
    #: summary.json as written.
    raw: dict[str, Any]
    #: One row per VM (index ``vm``): components, counters, and ``bill_*`` amounts when billed.
    summary: pd.DataFrame
    #: The host's counters (a Series, units in the index names).
    host: pd.Series
    #: timeseries.csv: ``time_ns``, ``vm`` and every VM counter.
    timeseries: pd.DataFrame
    #: ledger.csv (None for a run without billing): quantities as ints, amounts as Decimal.
    ledger: pd.DataFrame | None = None
    #: provenance.json (None for folders written before it existed).
    provenance: dict[str, Any] | None = field(default=None)
    #: host_timeseries.csv: ``time_ns`` and every host counter (empty for folders written
    #: before it existed).
    host_timeseries: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def name(self) -> str:
        return str(self.raw.get("scenario", self.path.name))


def load(path: str | Path) -> Results:
    """Read the results folder ``path`` (written by ``vframework run``)."""
    path = Path(path)
    summary_file = path / "summary.json"
    if not summary_file.is_file():
        raise ResultsError(f"{path} is not a results folder: it has no summary.json")
    try:
        raw = json.loads(summary_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ResultsError(f"cannot read {summary_file}: {exc}") from None
    rows = []
    comps = raw.get("components", {}).get("vms", {})
    billing = raw.get("billing", {}).get("vms", {})
    for vm, counters in raw.get("vms", {}).items():
        row: dict[str, Any] = {"vm": vm}
        c = comps.get(vm, {})
        row.update(mode=c.get("mode"), workload=c.get("workload"), devices=",".join(c.get("devices", [])))
        row.update({column_name(k): v for k, v in counters.items()})
        for key, value in billing.get(vm, {}).items():
            if key.startswith("bill_"):
                row[key] = Decimal(value)
        rows.append(row)
    summary = pd.DataFrame(rows).set_index("vm") if rows else pd.DataFrame()
    host = pd.Series({column_name(k): v for k, v in raw.get("host", {}).items()}, name="host")
    ts_file = path / "timeseries.csv"
    timeseries = pd.read_csv(ts_file) if ts_file.is_file() else pd.DataFrame()
    timeseries = timeseries.rename(columns=column_name)
    ledger = None
    ledger_file = path / "ledger.csv"
    if ledger_file.is_file():
        ledger = pd.read_csv(ledger_file, dtype={"quantity": str, "amount": str, "price": str}, keep_default_na=False)
        ledger["quantity"] = ledger["quantity"].map(int)
        ledger["amount"] = ledger["amount"].map(Decimal)
    prov_file = path / "provenance.json"
    provenance = json.loads(prov_file.read_text(encoding="utf-8")) if prov_file.is_file() else None
    host_file = path / "host_timeseries.csv"
    host_series = pd.read_csv(host_file).rename(columns=column_name) if host_file.is_file() else pd.DataFrame()
    return Results(path, raw, summary, host, timeseries, ledger, provenance, host_series)
