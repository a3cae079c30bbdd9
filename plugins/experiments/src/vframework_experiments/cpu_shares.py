"""``cpu-shares``: do the CPU schedulers deliver what they promise?

1. Proportional share: three cpu-bound VMs with shares 3:2:1 on one physical CPU under
   ``proportional`` receive CPU 3:2:1, each within 1% of its entitled fraction.
2. Cap: under ``credit``, a cpu-bound VM capped at 50 receives at most 50% of a CPU while the
   other VMs idle (a cap is not work-conserving: the CPU idles rather than exceed it).
3. BOOST: under ``credit``, an I/O-bound VM that wakes with BOOST preempts cpu-bound VMs, so
   its wake-up latency is far below a cpu-bound VM's (and below its own under ``fair``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vframework import PluginManager, simulate, timeseries_rows
from vframework.api import ExperimentResult, experiment, pyplot

SHARES = {"a": 3000, "b": 2000, "c": 1000}
#: The share check passes when every VM is within this relative error of its entitlement.
SHARE_TOLERANCE = 0.01
#: The credit cap given to the capped VM, in percent of one CPU.
CAP_PERCENT = 50


def _vm(name: str, workload: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "vcpus": 1, "memory": "64MiB", "mode": "bare-metal", "workload": workload, **extra}


def _scenario(name: str, scheduler: Any, vms: list[dict[str, Any]], duration: str, cpus: int = 1) -> dict[str, Any]:
    return {
        "name": name,
        "seed": 1,
        "duration": duration,
        "sample_interval": "50ms",
        "host": {"cpus": cpus, "memory": "1GiB", "scheduler": scheduler, "memory_policy": "static"},
        "vm": vms,
    }


@experiment("cpu-shares", "shares 3:2:1 under proportional; a 50% cap and BOOST under credit")
def cpu_shares(plugins: PluginManager, quick: bool) -> ExperimentResult:
    result = ExperimentResult("cpu-shares")
    duration = "3s" if quick else "10s"

    # 1. Proportional share.
    vms = [_vm(n, {"name": "cpu"}, shares=s) for n, s in SHARES.items()]
    sim = simulate(plugins, _scenario("shares-3-2-1", "proportional", vms, duration), "cpu-shares")
    total = sum(vm.counters["cpu_run_ns"] for vm in sim.vms)
    rows: list[dict[str, Any]] = []
    for vm in sim.vms:
        entitled = SHARES[vm.name] / sum(SHARES.values())
        got = vm.counters["cpu_run_ns"] / total
        rows.append(
            {
                "vm": vm.name,
                "shares": SHARES[vm.name],
                "cpu_run_ns": vm.counters["cpu_run_ns"],
                "fraction": round(got, 6),
                "entitled": round(entitled, 6),
                "relative_error": round(abs(got - entitled) / entitled, 6),
            }
        )
    result.tables["shares"] = rows
    worst = max(float(r["relative_error"]) for r in rows)
    result.figures["shares_worst_relative_error"] = worst
    result.checks["shares_within_1pct"] = (
        worst <= SHARE_TOLERANCE,
        f"3:2:1 shares on one CPU: worst relative error {worst:.4%} (must be <= 1%)",
    )
    share_series = timeseries_rows(sim)

    # 2. A 50% cap under credit, everyone else idle.
    vms = [_vm("capped", {"name": "cpu"}, cap=CAP_PERCENT), _vm("idle1", "idle"), _vm("idle2", "idle")]
    # A cap holds per accounting period (30 ms): the run covers whole periods (100 or 300), as
    # over a partial last period the VM may already have used that period's whole budget.
    cap_duration = "3s" if quick else "9s"
    sim = simulate(plugins, _scenario("credit-cap-50", "credit", vms, cap_duration), "cpu-shares")
    capped = sim.vms[0].counters["cpu_run_ns"] / sim.engine.now
    result.tables["cap"] = [
        {
            "vm": vm.name,
            "cap": CAP_PERCENT if vm.name == "capped" else 0,
            "cpu_run_ns": vm.counters["cpu_run_ns"],
            "fraction_of_cpu": round(vm.counters["cpu_run_ns"] / sim.engine.now, 6),
        }
        for vm in sim.vms
    ]
    result.tables["cap"].append(
        {
            "vm": "(host idle)",
            "cap": 0,
            "cpu_run_ns": sim.hypervisor.counters["idle_ns"],
            "fraction_of_cpu": round(sim.hypervisor.counters["idle_ns"] / sim.engine.now, 6),
        }
    )
    result.figures["capped_fraction_of_cpu"] = round(capped, 6)
    result.checks["cap_at_most_50pct"] = (
        capped <= CAP_PERCENT / 100,
        f"cap = 50 with the CPU otherwise idle: the VM got {capped:.2%} of a CPU over "
        f"{cap_duration} of whole accounting periods (must be <= 50%)",
    )

    # 3. Wake-up latency: an I/O-bound VM against a cpu-bound one that also blocks now and then.
    latency_rows: list[dict[str, Any]] = []
    for scheduler in ("credit", "fair"):
        vms = [
            _vm("io", {"name": "io", "compute": "50us", "nbytes": "4KiB"}),
            _vm("cpu-think", {"name": "cpu", "burst": "20ms", "think": "1ms"}),
            _vm("cpu", {"name": "cpu"}),
        ]
        sim = simulate(plugins, _scenario(f"boost-{scheduler}", scheduler, vms, duration), "cpu-shares")
        for vm in sim.vms[:2]:
            c = vm.counters
            mean = c["cpu_wakeup_latency_ns"] / c["cpu_wakeups"] if c["cpu_wakeups"] else 0.0
            latency_rows.append(
                {
                    "scheduler": scheduler,
                    "vm": vm.name,
                    "wakeups": c["cpu_wakeups"],
                    "mean_wakeup_latency_us": round(mean / 1000, 3),
                    "cpu_run_ns": c["cpu_run_ns"],
                }
            )
    result.tables["wakeup_latency"] = latency_rows
    lat: dict[tuple[str, str], float] = {
        (r["scheduler"], r["vm"]): float(r["mean_wakeup_latency_us"]) for r in latency_rows
    }
    result.figures["credit_io_wakeup_us"] = lat[("credit", "io")]
    result.figures["credit_cpu_wakeup_us"] = lat[("credit", "cpu-think")]
    result.figures["fair_io_wakeup_us"] = lat[("fair", "io")]
    result.checks["boost_lowers_io_latency"] = (
        lat[("credit", "io")] < lat[("credit", "cpu-think")],
        f"under credit the I/O-bound VM waits {lat[('credit', 'io')]:.1f} us per wake-up, "
        f"the cpu-bound VM {lat[('credit', 'cpu-think')]:.1f} us (fair, no BOOST: {lat[('fair', 'io')]:.1f} us)",
    )

    result.plots["cpu-shares.png"] = lambda path: _plot(share_series, result, path)
    return result


def _plot(series: list[dict[str, Any]], result: ExperimentResult, path: Path) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, shares in SHARES.items():
        pts = [(r["time_ns"] / 1e9, r["cpu_run_ns"] / 1e9) for r in series if r["vm"] == name]
        left.plot([p[0] for p in pts], [p[1] for p in pts], label=f"{name} ({shares} shares)")
    left.set_xlabel("simulated time (s)")
    left.set_ylabel("cumulative CPU (s)")
    left.set_title("proportional: shares 3:2:1 on one CPU")
    left.legend()
    left.grid(alpha=0.3)
    rows = result.tables["wakeup_latency"]
    labels = [f"{r['scheduler']}\n{r['vm']}" for r in rows]
    right.bar(labels, [r["mean_wakeup_latency_us"] for r in rows], color=["C0", "C1", "C0", "C1"])
    right.set_ylabel("mean wake-up latency (us)")
    right.set_title("BOOST: I/O-bound vs cpu-bound wake-ups")
    right.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)
