"""``aa06``: Adams & Agesen's nanobenchmarks and forkwait on their machine, beside their figures.

Adams & Agesen, "A Comparison of Software and Hardware Techniques for x86 Virtualization",
ASPLOS 2006 (AA06): Figure 4 (nanobenchmarks, CPU cycles on a 3.8 GHz Pentium 4 672; the
exact values from the paper's raw-data appendix) and the forkwait macrobenchmark (40,000
fork + wait: 6.02 s native, 36.95 s software VMM, 106.4 s hardware VMM). Each runs on the
``pentium4-2006`` cost profile under ``bare-metal`` (native), ``full`` (binary translation) and
``hardware-assisted`` with ``nested_paging = false`` (first-generation VT-x), one VM alone on
one CPU, and is reported as a ratio to native beside the paper's ratio.

Each figure is a marginal cost, as the paper's calibrated loops measure it: the difference
between a run of ``2n`` operations and one of ``n``, divided by ``n``.

The goal of the fidelity issue is every ratio within 25% of the paper's and every ordering the
paper reports. Some of the profile's values were fitted to rows of this table (the profile
names them); those rows match by construction and are marked ``fitted``. Every other row is a
``prediction`` of the model from those values, and is the test of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vframework import PluginManager
from vframework.api import ExperimentResult, cost_profiles, experiment, pyplot

from .modes import check_orderings, marginal

PROFILE = "pentium4-2006"
#: Configuration -> the mode table it runs under.
CONFIGS: dict[str, str | dict[str, Any]] = {
    "native": "bare-metal",
    "binary-translation": "full",
    "hardware-no-nested-paging": {"name": "hardware-assisted", "nested_paging": False},
}
#: AA06 Figure 4 (raw data), cycles: native, software VMM (BT), hardware VMM (VT); forkwait in
#: seconds for 40,000 iterations (raw data: 6.02, 36.95, 106.4).
PAPER: dict[str, tuple[float, float, float]] = {
    "syscall": (242, 2308, 246),
    "in": (3209, 216, 15826),
    "cr8wr": (150, 35, 177),
    "call/ret": (11, 51, 11),
    "pgfault": (1093, 3927, 11242),
    "divzero": (889, 3223, 1014),
    "ptemod": (1, 391, 12733),
    "forkwait": (6.02, 36.95, 106.4),
}
#: Benchmark -> (the lmbench test that stands for it, what it does).
TESTS: dict[str, tuple[str, str]] = {
    "syscall": ("nano_syscall", "a system call into a handler that returns at once"),
    "in": ("nano_in", "one IN from port 0x80, the BIOS POST port"),
    "cr8wr": ("nano_cr8wr", "one write of %cr8, the task priority (never unmasking a pending interrupt)"),
    "call/ret": ("nano_callret", "a call to a leaf subroutine and its return"),
    "pgfault": ("nano_pgfault", "a page fault into a handler that returns at once"),
    "divzero": ("nano_divzero", "a divide error into a handler that returns at once"),
    "ptemod": ("nano_ptemod", "a kernel store to a live page-table entry"),
    "forkwait": ("fork", "fork; the child writes 16 of the parent's 1,024 pages and exits; the parent waits"),
}
#: forkwait's process: the ``fork`` workload's defaults, spelled out (the profile's
#: page_reference was fitted to the native row with exactly these).
FORKWAIT = {"name": "fork", "working_set": "4MiB", "touch": 16}
#: A ratio within this factor of the paper's meets the fidelity goal.
TOLERANCE = 0.25
#: Orderings the paper reports: (benchmark, faster config, slower config).
_BT, _HW = "binary-translation", "hardware-no-nested-paging"
ORDERINGS: dict[str, tuple[str, str, str]] = {
    "syscall: hardware faster than binary translation": ("syscall", _HW, _BT),
    "in: binary translation faster than native": ("in", _BT, "native"),
    "in: binary translation faster than hardware": ("in", _BT, _HW),
    "cr8wr: binary translation faster than native": ("cr8wr", _BT, "native"),
    "call/ret: hardware faster than binary translation": ("call/ret", _HW, _BT),
    "pgfault: binary translation faster than hardware": ("pgfault", _BT, _HW),
    "divzero: hardware faster than binary translation": ("divzero", _HW, _BT),
    "ptemod: binary translation faster than hardware": ("ptemod", _BT, _HW),
    "forkwait: binary translation faster than hardware": ("forkwait", _BT, _HW),
}


@experiment("aa06", "Adams & Agesen 2006: nanobenchmarks and forkwait on their P4, beside the paper's ratios")
def aa06(plugins: PluginManager, quick: bool) -> ExperimentResult:
    result = ExperimentResult("aa06")
    fitted = cost_profiles()[PROFILE].fitted("aa06")
    clock = cost_profiles()[PROFILE].model().clock_hz
    rows: list[dict[str, Any]] = []
    for bench, (test, what) in TESTS.items():
        paper = dict(zip(CONFIGS, PAPER[bench], strict=True))
        measured: dict[str, float] = {}
        fork = test == "fork"
        iterations = (100 if quick else 1_000) if fork else (1_000 if quick else 10_000)
        for config, mode in CONFIGS.items():
            measured[config] = marginal(plugins, mode, test, iterations, PROFILE, FORKWAIT if fork else None)
        for config in CONFIGS:
            paper_ratio = paper[config] / paper["native"]
            ratio = measured[config] / measured["native"]
            rows.append(
                {
                    "benchmark": bench,
                    "config": config,
                    "what": what,
                    "cycles_per_op": round(measured[config], 1),
                    "paper_cycles_per_op": round(paper[config] / 40_000 * clock) if fork else paper[config],
                    "ratio_to_native": round(ratio, 3),
                    "paper_ratio_to_native": round(paper_ratio, 3),
                    "ours_over_paper": round(ratio / paper_ratio, 3),
                    "within_25_percent": abs(ratio / paper_ratio - 1) <= TOLERANCE,
                    "calibration": "fitted" if (bench, config) in fitted else "prediction",
                }
            )
    result.tables["aa06"] = rows
    virtual = [r for r in rows if r["config"] != "native"]
    met = sum(1 for r in virtual if r["within_25_percent"])
    predictions = [r for r in virtual if r["calibration"] == "prediction"]
    predicted_met = sum(1 for r in predictions if r["within_25_percent"])
    result.figures["ratios_within_25_percent"] = f"{met} of {len(virtual)}"
    result.figures["predictions_within_25_percent"] = f"{predicted_met} of {len(predictions)}"
    result.figures["fitted_rows"] = sorted(
        f"{r['benchmark']}:{r['config']}" for r in rows if r["calibration"] == "fitted"
    )
    result.figures["outside_25_percent"] = [
        f"{r['benchmark']}:{r['config']} {r['ours_over_paper']}x the paper's ratio"
        for r in virtual
        if not r["within_25_percent"]
    ]
    check_orderings(result, rows, ORDERINGS)
    result.checks["every ratio within 25% of the paper's"] = (
        met == len(virtual),
        f"{met} of {len(virtual)} ratios within 25% ({predicted_met} of {len(predictions)} predictions); outside: "
        + ("; ".join(result.figures["outside_25_percent"]) or "none"),
    )
    result.plots["aa06.png"] = lambda path: _plot(rows, path)
    return result


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Ours against the paper's ratio to native, per benchmark, for the two virtualized configs."""
    plt = pyplot()
    benches = list(TESTS)
    configs = [c for c in CONFIGS if c != "native"]
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / (2 * len(configs))
    by = {(r["benchmark"], r["config"]): r for r in rows}
    for i, config in enumerate(configs):
        for j, (key, label) in enumerate((("paper_ratio_to_native", "paper"), ("ratio_to_native", "vframework"))):
            k = 2 * i + j
            xs = [b + k * width for b in range(len(benches))]
            ys = [by[(b, config)][key] for b in benches]
            ax.bar(
                xs, ys, width, label=f"{config}, {label}", hatch="//" if j == 0 else None, alpha=0.6 if j == 0 else 1
            )
    ax.set_xticks([b + 0.4 - width / 2 for b in range(len(benches))], benches)
    ax.set_yscale("log")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_ylabel("ratio to native (log)")
    ax.legend(fontsize=8, ncol=2)
    ax.set_title("Adams & Agesen 2006 on the pentium4-2006 profile: the paper against vframework")
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)
