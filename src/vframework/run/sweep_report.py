"""A sweep's report: each metric against one parameter, a line per combination of the others
(the policy, a cap...; table-valued parameters are left to their labels), the mean over seeds
with its 95% confidence interval.

The interval is Student's t over the seeds (``mean ± t(n-1) · sd / sqrt(n)``): with three seeds
a normal interval would be half as wide as it should be. A point that failed is left out of its
mean, and the page says how many did.
"""

from __future__ import annotations

import html
import math
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from vframework.errors import ResultsError
from vframework.run.html import html_table, png_base64

__all__ = ["confidence_interval", "render_sweep_report", "summarize"]

#: Two-sided 95% Student's t quantiles for 1..30 degrees of freedom (beyond: the normal 1.96).
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
_FIXED = ("point", "seed", "status", "error")


def confidence_interval(values: list[float]) -> tuple[float, float]:
    """Mean and 95% half-width of ``values`` (half-width 0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:  # noqa: PLR2004
        return mean, 0.0
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    t = _T95[n - 2] if n - 1 <= len(_T95) else 1.96
    return mean, t * sd / math.sqrt(n)


def _read(folder: Path) -> tuple[pd.DataFrame, list[str], list[str]]:
    path = folder / "sweep.csv"
    try:
        frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{folder} is not a sweep's folder: cannot read sweep.csv: {exc}") from None
    columns = list(frame.columns)
    if not set(_FIXED) <= set(columns):
        raise ResultsError(f"{path} lacks the columns {', '.join(sorted(set(_FIXED) - set(columns)))}")
    params = columns[1 : columns.index("seed")]
    metrics = columns[columns.index("error") + 1 :]
    return frame, params, metrics


def summarize(folder: Path, x: str | None = None) -> tuple[str | None, list[str], pd.DataFrame]:
    """``(x, line parameters, table)``: for each metric, each line and each value of ``x``, the
    mean over seeds, its 95% half-width and the seeds that count."""
    frame, params, metrics = _read(folder)
    if x is not None and x not in params:
        raise ResultsError(f"--x {x!r} is not a parameter of this sweep; its parameters: {', '.join(params) or 'none'}")
    if x is None and params:
        numeric = [p for p in params if pd.api.types.is_numeric_dtype(frame[p])]
        x = numeric[0] if numeric else params[0]
    # A table-valued parameter (``"vm[0]" = [{ cap = 50 }, { limit = 50 }]``) goes with a label
    # that the plot uses instead: a line per table would be a line per point.
    lines = [p for p in params if p != x and not frame[p].astype(str).str.startswith("{").any()]
    ok = frame[frame["status"] == "ok"]
    rows: list[dict[str, Any]] = []
    keys = [*lines, x] if x else []
    groups = ok.groupby(keys, sort=False, dropna=False) if keys else [((), ok)]
    for key, group in groups:
        values = key if isinstance(key, tuple) else (key,)
        for name in metrics:
            seen = [float(v) for v in group[name] if not pd.isna(v)]
            if not seen:
                continue
            mean, half = confidence_interval(seen)
            rows.append(
                {**dict(zip(keys, values, strict=True)), "metric": name, "mean": mean, "ci95": half, "n": len(seen)}
            )
    return x, lines, pd.DataFrame(rows)


def render_sweep_report(folder: Path, x: str | None = None) -> str:
    """The text of a sweep's report.html: a plot per metric and the table behind it."""
    frame, _, metrics = _read(folder)
    x, lines, table = summarize(folder, x)
    failed = int((frame["status"] != "ok").sum())
    body = [f"<h1>vframework sweep: {html.escape(folder.name)}</h1>"]
    body.append(
        f"<p>{len(frame)} points, {frame['seed'].nunique()} seeds, {failed} failed (left out); "
        "mean over seeds with its 95% confidence interval (Student's t).</p>"
    )
    for name in metrics:
        part = table[table["metric"] == name] if not table.empty else table
        if part.empty:
            continue
        body.append(f"<h2>{html.escape(name)}</h2>")
        if x is not None:
            png = png_base64(partial(_draw, part=part, x=x, lines=lines, name=name))
            body.append(f'<img alt="{html.escape(name)}" src="data:image/png;base64,{png}">')
        body.append(html_table(part.drop(columns="metric").set_index([*lines, x] if x else "n")))
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:auto}table.t{border-collapse:collapse;font-size:80%}"
        "table.t td,table.t th{padding:2px 6px;border-bottom:1px solid #ddd;text-align:right}img{max-width:100%}"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>vframework sweep: {html.escape(folder.name)}</title><style>{style}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _draw(ax: Any, *, part: pd.DataFrame, x: str, lines: list[str], name: str) -> None:
    groups = part.groupby(lines, sort=False, dropna=False) if lines else [((), part)]
    for key, group in groups:
        values = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{k}={v}" for k, v in zip(lines, values, strict=True)) or name
        xs = list(range(len(group))) if not pd.api.types.is_numeric_dtype(group[x]) else list(group[x])
        ax.errorbar(xs, group["mean"], yerr=group["ci95"], marker="o", capsize=3, label=label)
        if not pd.api.types.is_numeric_dtype(group[x]):
            ax.set_xticks(xs, [str(v) for v in group[x]])
    ax.set_xlabel(x)
    ax.set_ylabel(name)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
