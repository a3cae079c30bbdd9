"""``esx-sampling``: the active-memory estimate rises fast and decays slowly.

One VM idles, then references a 128 MiB working set, then stops (Waldspurger, OSDI 2002, §5.2
and Fig. 7). The ``shares`` policy samples its activity: every sample period it invalidates the
mappings of 100 random pages and counts how many are referenced before the next sample; the
estimate is the largest of a slow moving average, a fast one and the last sample. A rise shows
in the first sample after the VM starts; a fall only as the slow average decays, so a VM that
pauses briefly keeps its memory. ESX samples every 30 s; the experiment compresses time to 2 s
sample periods (the dynamics are the same in periods).

Reported: the estimate (``mem_active``) and the pages the VM really references, per sample,
and the periods it takes the estimate to rise to 90% of the working set and to decay below 10%.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vframework import PluginManager, simulate, timeseries_rows
from vframework.api import ExperimentResult, experiment, pyplot

WORKING_SET_PAGES = 32_768  # 128 MiB
PERIOD_S = 2
START_S, STOP_S = 10, 40
#: Risen: the estimate covers this much of the working set; decayed: at most this much.
RISEN, DECAYED = 0.9, 0.1


def _scenario(quick: bool) -> dict[str, Any]:
    duration = 70 if quick else 100
    # Sequential batches of 2,048 pages, 30 ms of computing each: the whole working set every
    # 0.5 s (four times a sample period), 1,000 batches, 30 s of work.
    batches = (STOP_S - START_S) * 1000 // 30
    return {
        "name": "esx-sampling",
        "seed": 1,
        "duration": f"{duration}s",
        "sample_interval": f"{PERIOD_S}s",
        "host": {
            "cpus": 1,
            "memory": "1GiB",
            "memory_policy": {"name": "shares", "sample_period": f"{PERIOD_S}s"},
        },
        "vm": [
            {
                "name": "vm",
                "memory": "256MiB",
                "mode": "hardware-assisted",
                "workload": {
                    "name": "memory",
                    "working_set": "128MiB",
                    "pattern": "sequential",
                    "batch": 2048,
                    "write_ratio": 0.0,
                    "compute_per_page": 44_000,
                    "start_after": f"{START_S}s",
                    "batches": batches,
                },
            }
        ],
    }


@experiment("esx-sampling", "the active-memory estimate tracks a VM that starts and stops: fast rise, slow decay")
def esx_sampling(plugins: PluginManager, quick: bool) -> ExperimentResult:
    result = ExperimentResult("esx-sampling")
    sim = simulate(plugins, _scenario(quick), "esx-sampling")
    rows: list[dict[str, Any]] = []
    previous = 0
    for r in timeseries_rows(sim):
        refs = r["tlb_hits"] + r["tlb_misses"]
        busy = refs > previous
        previous = refs
        rows.append(
            {
                "time_s": r["time_ns"] / 1e9,
                "estimate_pages": r["mem_active"],
                "working_set_pages": WORKING_SET_PAGES if busy else 0,
            }
        )
    result.tables["esx-sampling"] = rows
    started = next(i for i, r in enumerate(rows) if r["working_set_pages"])
    stopped = max(i for i, r in enumerate(rows) if r["working_set_pages"]) + 1
    rise = next(
        (i - started for i in range(started, len(rows)) if rows[i]["estimate_pages"] >= 0.9 * WORKING_SET_PAGES), None
    )
    decay = next(
        (i - stopped for i in range(stopped, len(rows)) if rows[i]["estimate_pages"] <= 0.1 * WORKING_SET_PAGES), None
    )
    result.figures["rise_periods"] = rise
    result.figures["decay_periods"] = decay
    result.checks["fast_rise_slow_decay"] = (
        rise is not None and (decay is None or decay > rise),
        f"the estimate reaches 90% of the working set {rise} sample periods after the VM starts and falls "
        f"below 10% {decay if decay is not None else 'more than ' + str(len(rows) - stopped)} periods after it stops",
    )
    result.plots["esx-sampling.png"] = lambda path: _plot(rows, path)
    return result


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    t = [r["time_s"] for r in rows]
    ax.step(t, [r["working_set_pages"] * 4 / 1024 for r in rows], where="post", label="pages referenced (truth)")
    ax.plot(t, [r["estimate_pages"] * 4 / 1024 for r in rows], marker=".", label="active-memory estimate")
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("MiB")
    ax.legend()
    ax.set_title("Active-memory sampling (cf. Waldspurger 2002, Fig. 7)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
