"""``report.html``: one self-contained page for a results folder (plots embedded as PNG data,
the summary and invoice tables, the provenance), drawn from the files only. Ring occupancy is
shown as each VM's outstanding requests at every sample (submitted, not yet completed or
failed): what is on its rings, or in an emulated device's queue.

A panel with no data is left out (a CPU-only run has no memory-state or sharing panel). With
many VMs, plots show the :data:`TOP` VMs with the most of what they plot and one line for the
others together, so legends stay readable at 1,000 VMs; the tables list every VM.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from vframework.api.experiments import pyplot
from vframework.run.analysis import Results

__all__ = ["TOP", "html_table", "png_base64", "render_report"]

#: VMs drawn individually in a plot; the rest are summed into "others".
TOP = 8
_MIB = 4096 / 2**20


def png_base64(draw: Callable[[Any], None], height: float = 3.0) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, height))
    draw(ax)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _top(per_vm: pd.Series) -> tuple[list[str], list[str]]:
    """The :data:`TOP` VMs by value, and the others."""
    order = per_vm.sort_values(ascending=False, kind="stable").index.tolist()
    return order[:TOP], order[TOP:]


def _lines(ts: pd.DataFrame, column: str, scale: float, label: str, rate: bool) -> str | None:
    if column not in ts or ts.empty:
        return None
    wide = ts.pivot_table(index="time_ns", columns="vm", values=column, aggfunc="sum").sort_index()
    if rate:
        dt = np.diff(wide.index.to_numpy(), prepend=0).astype(float)
        dt[dt == 0] = np.nan
        wide = wide.diff().fillna(0).div(dt, axis=0).fillna(0) * 100
    else:
        wide = wide * scale
    if not wide.to_numpy().any():
        return None
    top, rest = _top(wide.sum())
    t = wide.index.to_numpy() * 1e-9

    def draw(ax: Any) -> None:
        for vm in top:
            ax.plot(t, wide[vm].to_numpy(), label=vm)
        if rest:
            ax.plot(t, wide[rest].sum(axis=1).to_numpy(), label=f"others ({len(rest)} VMs)", color="grey")
        ax.set_xlabel("simulated time (s)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=3)

    return png_base64(draw)


def _memory_states(r: Results) -> str | None:
    s = r.summary
    need = ("mem_granted_pages", "mem_shared_pages", "mem_balloon_pages", "mem_swapped_pages")
    if s.empty or not all(c in s for c in need) or not s[list(need)].to_numpy().any():
        return None
    private = (s["mem_granted_pages"] - s["mem_shared_pages"]).clip(lower=0)
    parts = {
        "private": private,
        "shared": s["mem_shared_pages"],
        "ballooned": s["mem_balloon_pages"],
        "swapped out": s["mem_swapped_pages"],
    }
    total = sum(parts.values())
    top, rest = _top(total)
    labels = top + ([f"others ({len(rest)})"] if rest else [])

    def draw(ax: Any) -> None:
        bottom = np.zeros(len(labels))
        for state, values in parts.items():
            v = np.array([values[vm] for vm in top] + ([values[rest].sum()] if rest else [])) * _MIB
            ax.bar(labels, v, bottom=bottom, label=state)
            bottom += v
        if "mem_active_pages" in s:
            act = [s["mem_active_pages"][vm] for vm in top] + ([s["mem_active_pages"][rest].sum()] if rest else [])
            ax.plot(labels, np.array(act) * _MIB, "k_", markersize=20, label="active")
        ax.set_ylabel("MiB at the end of the run")
        ax.legend(fontsize=7, ncol=5)
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)

    return png_base64(draw)


def _bill(r: Results) -> str | None:
    if r.ledger is None or r.ledger.empty:
        return None
    per = r.ledger.groupby(["vm", "resource"])["amount"].sum().map(float).unstack(fill_value=0.0)
    per = per.loc[:, per.sum() > 0]
    if per.empty:
        return None
    top, rest = _top(per.sum(axis=1))
    labels = top + ([f"others ({len(rest)})"] if rest else [])
    currency = r.raw.get("billing", {}).get("currency", "")

    def draw(ax: Any) -> None:
        bottom = np.zeros(len(labels))
        for resource in per.columns:
            v = np.array([per[resource][vm] for vm in top] + ([per[resource][rest].sum()] if rest else []))
            ax.bar(labels, v, bottom=bottom, label=resource)
            bottom += v
        ax.set_ylabel(f"amount ({currency})")
        ax.legend(fontsize=7, ncol=4)
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)

    return png_base64(draw)


def html_table(df: pd.DataFrame) -> str:
    return str(df.to_html(border=0, classes="t", escape=True))


def _outstanding(ts: pd.DataFrame) -> pd.DataFrame:
    """Requests submitted and not yet completed or failed, per sample: what sits on a VM's I/O
    rings (or a device model's queue)."""
    if not {"io_requests", "io_completed", "io_errors"} <= set(ts.columns):
        return ts
    return ts.assign(io_outstanding=ts["io_requests"] - ts["io_completed"] - ts["io_errors"])


def render_report(r: Results) -> str:
    """The text of report.html for the results ``r``."""
    ts = _outstanding(r.timeseries)
    panels = [
        ("CPU per VM", _lines(ts, "cpu_run_ns", 1e-9, "% of one CPU", rate=True)),
        ("CPU ready per VM", _lines(ts, "cpu_ready_ns", 1e-9, "% of one CPU waiting", rate=True)),
        ("Memory consumed per VM", _lines(ts, "mem_consumed_pages", _MIB, "MiB", rate=False)),
        ("Memory per VM by state", _memory_states(r)),
        ("Pages shared per VM", _lines(ts, "mem_shared_pages", _MIB, "MiB shared copy-on-write", rate=False)),
        ("Ballooned per VM", _lines(ts, "mem_balloon_pages", _MIB, "MiB in the balloon", rate=False)),
        ("I/O completed per VM", _lines(ts, "io_completed", 1, "requests completed (cumulative)", rate=False)),
        (
            "I/O outstanding per VM (ring or device queue occupancy)",
            _lines(ts, "io_outstanding", 1, "requests in flight", rate=False),
        ),
        ("Bill per VM", _bill(r)),
    ]
    body = [f"<h1>vframework: {html.escape(r.name)}</h1>"]
    secs = r.raw.get("sim_time_ns", 0) / 1e9
    body.append(f"<p>seed {r.raw.get('seed')}, {secs:g} s simulated, {len(r.summary)} VMs</p>")
    for title, png in panels:
        if png is not None:
            body.append(
                f'<h2>{html.escape(title)}</h2><img alt="{html.escape(title)}" src="data:image/png;base64,{png}">'
            )
    keep = [c for c in ("mode", "workload", "cpu_run_ns", "cpu_ready_ns", "mem_consumed_pages") if c in r.summary]
    if keep:
        body.append("<h2>Summary</h2>" + html_table(r.summary[keep]))
    host = r.raw.get("host", {})
    sharing = {k: host[k] for k in ("pages_shared", "pages_sharing", "pages_unshared", "full_scans") if k in host}
    if any(sharing.values()):
        body.append("<h2>Sharing</h2>" + html_table(pd.DataFrame([sharing], index=["host"])))
    billing = r.raw.get("billing")
    if billing:
        rows = {vm: {k: v for k, v in b.items() if k.startswith("bill_")} for vm, b in billing["vms"].items()}
        body.append(
            f"<h2>Invoice ({html.escape(billing['currency'])}, total {html.escape(billing['bill_total'])})</h2>"
            + html_table(pd.DataFrame.from_dict(rows, orient="index"))
        )
    if r.provenance is not None:
        body.append("<h2>Provenance</h2><pre>" + html.escape(json.dumps(r.provenance, indent=2)) + "</pre>")
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:auto}table.t{border-collapse:collapse;font-size:80%}"
        "table.t td,table.t th{padding:2px 6px;border-bottom:1px solid #ddd;text-align:right}img{max-width:100%}"
        "pre{font-size:75%;background:#f6f6f6;padding:1em;overflow:auto}"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>vframework: {html.escape(r.name)}</title><style>{style}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
