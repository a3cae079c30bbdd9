"""``xen03``: Barham et al.'s lmbench rows, native Linux against Xen, beside their figures.

Barham et al., "Xen and the Art of Virtualization", SOSP 2003 (BDF03), Tables 3 to 5: lmbench
3.0-a3 on a 2.4 GHz Xeon, Linux 2.4.21 native (the uniprocessor kernel, L-UP) and XenoLinux on
Xen, in microseconds. Each row runs on the ``xeon-2003`` cost profile under ``bare-metal``
(native) and ``paravirtual`` (Xen's direct paging and hypercalls) on pre-VT ``x86``, one VM
alone on one CPU, as a marginal cost (the difference between runs of ``2n`` and ``n``
operations, divided by ``n``).

A row whose kernel path the reference guest kernel lacked would be listed with the paper's
figures and ``not modelled``; today every row is modelled. As in ``aa06``, each row says whether
a value of the profile was fitted to it or it is a prediction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vframework import PluginManager
from vframework.api import ExperimentResult, cost_profiles, experiment, pyplot

from .modes import check_orderings, marginal

PROFILE = "xeon-2003"
#: The timer frequency of the paper's Linux 2.4.21 (HZ = 100).
HZ = 100
#: Configuration -> the mode it runs under.
CONFIGS: dict[str, str] = {"native": "bare-metal", "xen": "paravirtual"}
#: BDF03 Tables 3-5, microseconds: L-UP (native Linux, uniprocessor kernel), Xen.
PAPER: dict[str, tuple[float, float]] = {
    "null call": (0.45, 0.46),
    "fork proc": (110, 198),
    "exec proc": (530, 768),
    "sh proc": (4000, 4800),
    "ctx 2p/0K": (0.77, 1.97),
    "page fault": (1.42, 2.73),
    "mmap lat": (68.0, 139),
}
#: Benchmark -> (lmbench test, what it does), or (None, why it is not modelled).
TESTS: dict[str, tuple[str | None, str]] = {
    "null call": ("null_syscall", "a null system call through the guest kernel's syscall path"),
    "fork proc": ("fork", "fork a process mapping 1 MiB; the child exits; the parent waits"),
    "exec proc": (
        "exec",
        "fork the 1 MiB process; the child execs a 53-page hello world, which exits; the parent waits",
    ),
    "sh proc": ("shell", "as exec proc, through a 137-page /bin/sh -c that execs hello in place"),
    "ctx 2p/0K": ("context_switch", "a context switch between two processes (a page-table switch)"),
    "page fault": ("page_fault", "a page fault on a fresh page, handled by the guest kernel"),
    "mmap lat": ("mmap", "mmap 8 MiB of a cached file, write every 16 KiB of its first tenth (52 faults), munmap"),
}
#: Tests whose one operation is a whole process or mapping (fewer of them make a run).
_LONG = ("fork", "exec", "shell", "mmap")
TOLERANCE = 0.25
#: Orderings the paper reports: (benchmark, faster config, slower config).
ORDERINGS: dict[str, tuple[str, str, str]] = {
    "fork: native faster than Xen": ("fork proc", "native", "xen"),
    "exec: native faster than Xen": ("exec proc", "native", "xen"),
    "sh: native faster than Xen": ("sh proc", "native", "xen"),
    "mmap: native faster than Xen": ("mmap lat", "native", "xen"),
    "ctx switch: native faster than Xen": ("ctx 2p/0K", "native", "xen"),
    "page fault: native faster than Xen": ("page fault", "native", "xen"),
}


@experiment("xen03", "Barham et al. 2003: lmbench native against Xen on their Xeon, beside the paper's")
def xen03(plugins: PluginManager, quick: bool) -> ExperimentResult:
    result = ExperimentResult("xen03")
    fitted = cost_profiles()[PROFILE].fitted("xen03")
    clock = cost_profiles()[PROFILE].model().clock_hz
    rows: list[dict[str, Any]] = []
    for bench, (test, what) in TESTS.items():
        paper = dict(zip(CONFIGS, PAPER[bench], strict=True))
        measured: dict[str, float] = {}
        if test is not None:
            iterations = (100 if quick else 1_000) if test in _LONG else (1_000 if quick else 10_000)
            for config, mode in CONFIGS.items():
                measured[config] = marginal(plugins, mode, test, iterations, PROFILE, arch="x86", hz=HZ) / clock * 1e6
        for config in CONFIGS:
            paper_ratio = paper[config] / paper["native"]
            row: dict[str, Any] = {
                "benchmark": bench,
                "config": config,
                "what": what,
                "us_per_op": None,
                "paper_us_per_op": paper[config],
                "ratio_to_native": None,
                "paper_ratio_to_native": round(paper_ratio, 3),
                "ours_over_paper": None,
                "within_25_percent": None,
                "calibration": "not modelled",
            }
            if measured:
                ratio = measured[config] / measured["native"]
                row.update(
                    us_per_op=round(measured[config], 3),
                    ratio_to_native=round(ratio, 3),
                    ours_over_paper=round(ratio / paper_ratio, 3),
                    within_25_percent=abs(ratio / paper_ratio - 1) <= TOLERANCE,
                    calibration="fitted" if (bench, config) in fitted else "prediction",
                )
            rows.append(row)
    result.tables["xen03"] = rows
    virtual = [r for r in rows if r["config"] == "xen" and r["ratio_to_native"] is not None]
    met = sum(1 for r in virtual if r["within_25_percent"])
    native = [r for r in rows if r["config"] == "native" and r["us_per_op"] is not None]
    result.figures["ratios_within_25_percent"] = f"{met} of {len(virtual)} modelled"
    result.figures["native_within_25_percent_of_l_up"] = sum(
        1 for r in native if abs(r["us_per_op"] / r["paper_us_per_op"] - 1) <= TOLERANCE
    )
    result.figures["not_modelled"] = [b for b, (t, _) in TESTS.items() if t is None]
    check_orderings(result, rows, ORDERINGS)
    result.checks["every modelled ratio within 25% of the paper's"] = (
        met == len(virtual),
        f"{met} of {len(virtual)} modelled Xen ratios within 25%"
        + ("; not modelled: " + ", ".join(result.figures["not_modelled"]) if result.figures["not_modelled"] else ""),
    )
    result.plots["xen03.png"] = lambda path: _plot(rows, path)
    return result


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Xen's ratio to native per benchmark: the paper's beside ours (none: not modelled)."""
    plt = pyplot()
    benches = list(TESTS)
    by = {(r["benchmark"], r["config"]): r for r in rows}
    fig, ax = plt.subplots(figsize=(10, 4))
    xs = range(len(benches))
    ax.bar([x - 0.2 for x in xs], [by[(b, "xen")]["paper_ratio_to_native"] for b in benches], 0.4, label="paper")
    ours = [by[(b, "xen")]["ratio_to_native"] or 0 for b in benches]
    ax.bar([x + 0.2 for x in xs], ours, 0.4, label="vframework")
    ax.set_xticks(list(xs), benches)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_ylabel("Xen / native Linux; no bar: not modelled")
    ax.legend()
    ax.set_title("Barham et al. 2003 on the xeon-2003 profile: the paper against vframework")
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)
