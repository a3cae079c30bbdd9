"""Plots of a run, drawn from the time series only (never from live objects)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vframework.api.experiments import pyplot

__all__ = ["plot_timeseries"]

#: The metrics drawn, one panel each: (column, y-axis label, scale).
PANELS = (
    ("cpu_run_ns", "CPU run (s, cumulative)", 1e-9),
    ("cpu_ready_ns", "CPU ready (s, cumulative)", 1e-9),
    ("mem_consumed", "memory consumed (MiB)", 4096 / 2**20),
    ("mem_active", "memory active (MiB)", 4096 / 2**20),
)


def plot_timeseries(columns: Sequence[str], rows: Sequence[Sequence[Any]], path: Path, title: str = "") -> None:
    """Draw one panel per metric of :data:`PANELS`, a line per VM, into a PNG at ``path``."""
    plt = pyplot()
    index = {name: i for i, name in enumerate(columns)}
    vms = sorted({row[1] for row in rows})
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(8, 2.2 * len(PANELS)), sharex=True)
    for ax, (metric, label, scale) in zip(axes, PANELS, strict=True):
        for vm in vms:
            pts = [(r[0] * 1e-9, r[index[metric]] * scale) for r in rows if r[1] == vm]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=vm)
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, ncol=max(1, len(vms)))
    axes[-1].set_xlabel("simulated time (s)")
    if title:
        fig.suptitle(f"vframework: {title}")
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)
