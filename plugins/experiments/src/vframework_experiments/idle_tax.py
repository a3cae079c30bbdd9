"""``esx-idle-tax``: the idle memory tax moves memory from an idle VM to an active one.

Two VMs with equal memory shares on an overcommitted host (Waldspurger, OSDI 2002, §5.3): one
touches its memory once and then idles, the other keeps referencing a working set larger than
half the host. Under the ``shares`` policy, memory is revoked from the VM with the fewest shares
per page *adjusted for idleness*; with the tax rate tau = 0 that is plain proportional share
(each VM gets half), with tau = 0.75 an idle page costs four times an active one and the idle
VM's balloon inflates, handing its pages to the active VM, whose own balloon deflates.

Reported per tax rate: each VM's memory target and pages held at the end, its active-memory
estimate, and the active VM's throughput (memory references completed per simulated second)
over the second half of the run, once the allocation has settled. Published: the active VM's
throughput rises by over 30% with tau = 0.75. How much paging slows the active VM depends on
the storage it swaps to: the ``esx-2002`` cost profile's, fitted to that figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vframework import PluginManager, Simulation, simulate, timeseries_rows
from vframework.api import ExperimentResult, experiment, pyplot

TAX_RATES = (0.0, 0.75)
PUBLISHED_GAIN = 0.30
#: The cost profile of the ESX memory experiments: the default costs with the guests' swap
#: storage fitted to this experiment's published gain (see the fidelity page).
PROFILE = "esx-2002"


def _run(plugins: PluginManager, tax_rate: float, quick: bool) -> Simulation:
    vm = {"memory": "128MiB", "swap": "128MiB", "mode": "hardware-assisted"}
    scenario = {
        "name": "esx-idle-tax",
        "seed": 1,
        "duration": "20s" if quick else "60s",
        "sample_interval": "1s",
        "host": {
            "cpus": 2,
            "memory": "192MiB",
            "costs": PROFILE,
            "memory_policy": {"name": "shares", "tax_rate": tax_rate, "sample_period": "2s"},
            "memory_services": [{"name": "balloon", "rate": 8192}],
        },
        "vm": [
            {
                **vm,
                "name": "idle",
                "workload": {
                    "name": "memory",
                    "working_set": "96MiB",
                    "pattern": "sequential",
                    "batch": 256,
                    "batches": 400,
                },
            },
            {
                **vm,
                "name": "active",
                "workload": {
                    "name": "memory",
                    "working_set": "112MiB",
                    "pattern": "random",
                    "batch": 64,
                    "compute_per_page": 20_000,
                },
            },
        ],
    }
    return simulate(plugins, scenario, "esx-idle-tax")


def references_per_second(rows: list[dict[str, Any]], vm: str) -> float:
    """References per simulated second over the second half of the run."""
    mine = [r for r in rows if r["vm"] == vm]
    first, last = mine[len(mine) // 2], mine[-1]
    refs = (last["tlb_hits"] + last["tlb_misses"]) - (first["tlb_hits"] + first["tlb_misses"])
    return float(refs / ((last["time_ns"] - first["time_ns"]) / 1e9))


@experiment("esx-idle-tax", "the idle memory tax moves memory from an idle VM to an active one")
def esx_idle_tax(plugins: PluginManager, quick: bool) -> ExperimentResult:
    result = ExperimentResult("esx-idle-tax")
    rows: list[dict[str, Any]] = []
    series: dict[float, list[tuple[float, int]]] = {}
    for tax in TAX_RATES:
        sim = _run(plugins, tax, quick)
        ts = timeseries_rows(sim)
        series[tax] = [(r["time_ns"] / 1e9, r["mem_target"]) for r in ts if r["vm"] == "active"]
        for vm in sim.vms:
            c = vm.counters
            rows.append(
                {
                    "tax_rate": tax,
                    "vm": vm.name,
                    "mem_target": c["mem_target"],
                    "mem_granted": c["mem_granted"],
                    "mem_balloon": c["mem_balloon"],
                    "mem_active": c["mem_active"],
                    "swap_ins": c["swap_ins"],
                    "refs_per_s": round(references_per_second(ts, vm.name)),
                }
            )
    result.tables["esx-idle-tax"] = rows
    active = {r["tax_rate"]: r for r in rows if r["vm"] == "active"}
    idle = {r["tax_rate"]: r for r in rows if r["vm"] == "idle"}
    gain = active[0.75]["refs_per_s"] / active[0.0]["refs_per_s"] - 1.0
    result.figures["active_throughput_gain"] = round(gain, 4)
    result.checks["memory_moves_to_the_active_vm"] = (
        active[0.75]["mem_target"] > active[0.0]["mem_target"] and idle[0.75]["mem_target"] < idle[0.0]["mem_target"],
        f"active VM's target {active[0.0]['mem_target']} -> {active[0.75]['mem_target']} pages, idle VM's "
        f"{idle[0.0]['mem_target']} -> {idle[0.75]['mem_target']} (tau 0 -> 0.75)",
    )
    result.checks["active_throughput_rises"] = (
        gain > 0,
        f"active VM's throughput {gain:+.0%} with tau = 0.75 (published: over +{PUBLISHED_GAIN:.0%})",
    )
    result.plots["esx-idle-tax.png"] = lambda path: _plot(series, path)
    return result


def _plot(series: dict[float, list[tuple[float, int]]], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for tax, points in series.items():
        ax.plot([t for t, _ in points], [p * 4 / 1024 for _, p in points], label=f"active VM, tau = {tax}")
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("memory target (MiB)")
    ax.legend()
    ax.set_title("Idle memory tax (cf. Waldspurger 2002, Fig. 6)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
