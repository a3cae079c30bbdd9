"""``aa06``: Adams & Agesen's nanobenchmarks and forkwait on their machine, beside their figures.

Adams & Agesen, "A Comparison of Software and Hardware Techniques for x86 Virtualization",
ASPLOS 2006 (AA06): Figure 4 (nanobenchmarks, CPU cycles on a 3.8 GHz Pentium 4 672; the
exact values from the paper's raw-data appendix) and the forkwait macrobenchmark (40,000
fork + wait: 6.02 s native, 36.95 s software VMM, 106.4 s hardware VMM). Each runs on the
``pentium4-2006`` cost profile under ``bare-metal`` (native), ``full`` (binary translation) and
``hardware-assisted`` with ``nested_paging = false`` (first-generation VT-x), one VM alone on
one CPU, and is reported as a ratio to native beside the paper's ratio.

The goal of the fidelity issue is every ratio within 25% of the paper's and every ordering the
paper reports. This experiment measures how far the simulator is from it; it calibrates
nothing. Three nanobenchmarks have no counterpart in the simulator yet (a ``%cr8`` write and a
call/return pair are not in its instruction set; no test writes a live PTE in a loop): their
rows say so instead of showing a number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vframework import PluginManager
from vframework.api import ExperimentResult, experiment, pyplot

from .modes import measure

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
#: Benchmark -> the lmbench workload test that stands for it (None: not modelled yet, and why).
TESTS: dict[str, tuple[str | None, str]] = {
    "syscall": ("null_syscall", "a null system call"),
    "in": ("device_register", "a device register access (OUT then IN; AA06's in is one IN to port 0x80)"),
    "cr8wr": (None, "not modelled: the simulated instruction set has no %cr8 (task priority) write"),
    "call/ret": (None, "not modelled: no call/return instructions, so no translated indirect branches"),
    "pgfault": ("page_fault", "a page fault on a fresh page, handled by the guest kernel"),
    "divzero": ("divzero", "a divide error delivered to the guest kernel's handler"),
    "ptemod": (None, "not measured yet: no test writes a live PTE in a loop"),
    "forkwait": ("fork", "fork, the child exits, the parent waits"),
}
#: A ratio within this factor of the paper's meets the fidelity goal.
TOLERANCE = 0.25


@experiment("aa06", "Adams & Agesen 2006: nanobenchmarks and forkwait on their P4, beside the paper's ratios")
def aa06(plugins: PluginManager, quick: bool) -> ExperimentResult:
    result = ExperimentResult("aa06")
    rows: list[dict[str, Any]] = []
    for bench, (test, what) in TESTS.items():
        paper = dict(zip(CONFIGS, PAPER[bench], strict=True))
        measured: dict[str, float] = {}
        if test is not None:
            iterations = (100 if quick else 1_000) if test == "fork" else (1_000 if quick else 10_000)
            for config, mode in CONFIGS.items():
                got = measure(plugins, mode, test, "native", iterations, costs=PROFILE)
                measured[config] = got["cycles_per_op"]
        for config in CONFIGS:
            paper_ratio = paper[config] / paper["native"]
            row: dict[str, Any] = {"benchmark": bench, "config": config, "what": what}
            if measured:
                ratio = measured[config] / measured["native"]
                row["cycles_per_op"] = round(measured[config], 1)
                row["ratio_to_native"] = round(ratio, 3)
                row["paper_ratio_to_native"] = round(paper_ratio, 3)
                row["ours_over_paper"] = round(ratio / paper_ratio, 3)
                row["within_25_percent"] = abs(ratio / paper_ratio - 1) <= TOLERANCE
            else:
                row.update(
                    cycles_per_op=None,
                    ratio_to_native=None,
                    paper_ratio_to_native=round(paper_ratio, 3),
                    ours_over_paper=None,
                    within_25_percent=None,
                )
            rows.append(row)
    result.tables["aa06"] = rows
    measured_rows = [r for r in rows if r["ratio_to_native"] is not None and r["config"] != "native"]
    met = sum(1 for r in measured_rows if r["within_25_percent"])
    result.figures["ratios_within_25_percent"] = f"{met} of {len(measured_rows)} measured"
    result.figures["not_measured"] = sorted({r["benchmark"] for r in rows if r["ratio_to_native"] is None})
    by = {(r["benchmark"], r["config"]): r["ratio_to_native"] for r in rows}
    orderings = {
        "syscall: hardware faster than binary translation": (
            "syscall",
            "hardware-no-nested-paging",
            "binary-translation",
        ),
        "pgfault: binary translation faster than hardware": (
            "pgfault",
            "binary-translation",
            "hardware-no-nested-paging",
        ),
        "forkwait: binary translation faster than hardware": (
            "forkwait",
            "binary-translation",
            "hardware-no-nested-paging",
        ),
        "in: binary translation faster than hardware": ("in", "binary-translation", "hardware-no-nested-paging"),
    }
    for label, (bench, faster, slower) in orderings.items():
        a, b = by[(bench, faster)], by[(bench, slower)]
        result.checks[label] = (a < b, f"{bench}: {faster} {a}x native, {slower} {b}x native")
    result.checks["every measured ratio within 25% of the paper's"] = (
        met == len(measured_rows),
        f"{met} of {len(measured_rows)} measured ratios within 25%; not measured: "
        + ", ".join(result.figures["not_measured"]),
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
            ys = [by[(b, config)][key] or 0 for b in benches]
            ax.bar(
                xs, ys, width, label=f"{config}, {label}", hatch="//" if j == 0 else None, alpha=0.6 if j == 0 else 1
            )
    ax.set_xticks([b + 0.4 - width / 2 for b in range(len(benches))], benches)
    ax.set_yscale("log")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_ylabel("ratio to native (log); no bar: not modelled")
    ax.legend(fontsize=8, ncol=2)
    ax.set_title("Adams & Agesen 2006 on the pentium4-2006 profile: the paper against vframework")
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)
