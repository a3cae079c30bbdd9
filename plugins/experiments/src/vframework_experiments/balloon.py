"""``esx-balloon``: what ballooning costs a guest (Waldspurger, OSDI 2002, §3.2, Fig. 2).

A VM configured large and ballooned down to a size is compared with a VM configured at that size
from the start. Published (dbench, Linux, a VM of 256 MB ballooned to 128-224 MB): the ballooned
VM's throughput is 1.4% to 4.4% below the other's, the gap larger the further it is ballooned,
because a guest sizes some of its own structures by the memory it was configured with.

Here both VMs run a guest whose kernel sets aside 64 bytes per page of configured memory for its
page frame table (``page_struct_bytes``, Linux's ``struct page``) and a workload referencing, at
random, as much memory as the VM is allowed. The ballooned VM is configured with twice the
paper's ratio in MiB (128 MiB, ballooned to 64-112 MiB) with ``mem_max`` at the size under the
``shares`` policy; its balloon inflates before the workload starts. Throughput is memory
references per simulated second over the second half of the run. The guests swap to the storage
of the ``esx-2002`` cost profile, fitted to the idle-tax experiment: these figures are a
prediction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vframework import PluginManager, Simulation, simulate, timeseries_rows
from vframework.api import ExperimentResult, experiment, pyplot
from vframework_experiments.idle_tax import PROFILE, references_per_second

#: The configured size of the ballooned VM, and the sizes it is ballooned to (the paper's
#: 256 MB and 128-224 MB, halved).
CONFIGURED_MIB = 128
SIZES_MIB = (64, 80, 96, 112)
QUICK_SIZES_MIB = (64, 112)
#: Linux's struct page, one per page frame.
PAGE_STRUCT_BYTES = 64
PUBLISHED = (0.014, 0.044)
#: When the workload starts: the balloon has inflated by then.
START = "2s"


def _run(plugins: PluginManager, size_mib: int, ballooned: bool, quick: bool) -> Simulation:
    vm: dict[str, Any] = {
        "name": "ballooned" if ballooned else "configured",
        "memory": f"{CONFIGURED_MIB if ballooned else size_mib}MiB",
        "swap": f"{CONFIGURED_MIB}MiB",
        "mode": "hardware-assisted",
        "page_struct_bytes": PAGE_STRUCT_BYTES,
        "workload": {
            "name": "memory",
            "working_set": f"{size_mib}MiB",
            "pattern": "random",
            "batch": 64,
            "compute_per_page": 20_000,
            "start_after": START,
        },
    }
    if ballooned:
        vm["mem_max"] = f"{size_mib}MiB"
    scenario = {
        "name": "esx-balloon",
        "seed": 1,
        "duration": "8s" if quick else "22s",
        "sample_interval": "1s",
        "host": {
            "cpus": 1,
            "memory": f"{2 * CONFIGURED_MIB}MiB",
            "costs": PROFILE,
            "memory_policy": {"name": "shares"},
            "memory_services": [{"name": "balloon", "rate": 65_536, "max_fraction": 0.65}],
        },
        "vm": [vm],
    }
    return simulate(plugins, scenario, "esx-balloon")


@experiment("esx-balloon", "a VM ballooned down runs nearly as fast as one configured at that size")
def esx_balloon(plugins: PluginManager, quick: bool) -> ExperimentResult:
    result = ExperimentResult("esx-balloon")
    rows: list[dict[str, Any]] = []
    for size in QUICK_SIZES_MIB if quick else SIZES_MIB:
        measured: dict[bool, dict[str, Any]] = {}
        for ballooned in (False, True):
            sim = _run(plugins, size, ballooned, quick)
            vm = sim.vms[0]
            measured[ballooned] = {
                "refs_per_s": references_per_second(timeseries_rows(sim), vm.name),
                "mem_balloon": vm.counters["mem_balloon"],
                "swap_ins": vm.counters["swap_ins"],
                "kernel_pages": int(vm.guest.page_frame_table.size) if vm.guest is not None else 0,
            }
        plain, small = measured[False], measured[True]
        rows.append(
            {
                "size_mib": size,
                "configured_refs_per_s": round(plain["refs_per_s"]),
                "ballooned_refs_per_s": round(small["refs_per_s"]),
                "overhead": round(1.0 - small["refs_per_s"] / plain["refs_per_s"], 4),
                "mem_balloon": small["mem_balloon"],
                "configured_kernel_pages": plain["kernel_pages"],
                "ballooned_kernel_pages": small["kernel_pages"],
                "configured_swap_ins": plain["swap_ins"],
                "ballooned_swap_ins": small["swap_ins"],
            }
        )
    result.tables["esx-balloon"] = rows
    overheads = [r["overhead"] for r in rows]
    result.figures["overhead_min"] = min(overheads)
    result.figures["overhead_max"] = max(overheads)
    lo, hi = PUBLISHED
    result.checks["ballooning_costs_little"] = (
        all(0.0 <= o < 2 * hi for o in overheads),
        f"throughput overhead {min(overheads):.1%} to {max(overheads):.1%} (published: {lo:.1%} to {hi:.1%})",
    )
    result.checks["overhead_grows_as_the_balloon_grows"] = (
        overheads[0] >= overheads[-1],
        f"{overheads[0]:.1%} ballooned to {rows[0]['size_mib']} MiB, {overheads[-1]:.1%} to {rows[-1]['size_mib']} MiB",
    )
    result.checks["balloon_reaches_its_target"] = (
        all(r["mem_balloon"] == (CONFIGURED_MIB - r["size_mib"]) * 256 for r in rows),
        ", ".join(f"{r['mem_balloon']} pages at {r['size_mib']} MiB" for r in rows),
    )
    result.plots["esx-balloon.png"] = lambda path: _plot(rows, path)
    return result


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    sizes = [r["size_mib"] for r in rows]
    width = 5
    ax.bar([s - width / 2 for s in sizes], [r["configured_refs_per_s"] / 1e3 for r in rows], width, label="configured")
    ax.bar([s + width / 2 for s in sizes], [r["ballooned_refs_per_s"] / 1e3 for r in rows], width, label="ballooned")
    ax.set_xlabel(f"VM size (MiB; the ballooned VM is configured with {CONFIGURED_MIB} MiB)")
    ax.set_ylabel("throughput (thousand references / s)")
    ax.set_xticks(sizes)
    ax.legend()
    ax.set_title("Balloon overhead (cf. Waldspurger 2002, Fig. 2)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
