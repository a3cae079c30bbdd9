"""``modes``: what each virtualization mode costs, lmbench style, in simulated cycles.

One VM alone on one CPU runs one kernel path many times under each mode; the table gives
cycles per operation with ``bare-metal`` = 1.0, for a native and a hosted hypervisor, and for
first-generation hardware assist (``nested_paging = false``). Beside it,
the orderings published for real systems (see the docs page): hardware assist wins on system
calls, binary translation beats first-generation hardware assist on page-table-heavy work
(Adams & Agesen, ASPLOS 2006), and para-virtualization stays close to native (Barham et al.,
SOSP 2003). The para-virtual port's changed share of the guest kernel is reported too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vframework import GuestKernel, PluginManager, port_share, simulate
from vframework.api import ExperimentResult, experiment, pyplot

TESTS = ("null_syscall", "cli_sti", "context_switch", "timer_interrupt", "device_register", "page_fault", "fork")
MODES = ("bare-metal", "full", "paravirtual", "hardware-assisted", "trap-and-emulate")
#: (mode, hypervisor type) columns of the table.
COLUMNS = (*tuple((m, "native") for m in MODES), ("full", "hosted"), ("hardware-assisted", "hosted"))
#: First-generation hardware assist (shadow paging), after the columns above.
NO_NESTED = "hardware-assisted (no nested paging)"
_NO_NESTED_MODE = {"name": "hardware-assisted", "nested_paging": False}


def measure(
    plugins: PluginManager,
    mode: str | dict[str, Any],
    test: str,
    hypervisor_type: str,
    iterations: int,
    arch: str = "x86-vt",
    costs: str | dict[str, Any] | None = None,
    workload: dict[str, Any] | None = None,
    hz: int = 0,
) -> dict[str, Any]:
    """Run ``test`` under ``mode`` (a name, or a table with its parameters), on the cost
    profile or overrides ``costs`` (the default profile when None); returns its per-operation
    figures. ``workload`` replaces the lmbench test with another workload table (its
    ``iterations`` are set to ``iterations``). The guest's timer runs at ``hz`` (by default
    none, as in a nanobenchmark kernel: the figures are the operation's alone)."""
    name = mode if isinstance(mode, str) else mode["name"]
    scenario = {
        "name": f"modes-{name}-{test}-{hypervisor_type}",
        "seed": 1,
        "duration": "30s",
        "sample_interval": "1s",
        "host": {
            "cpus": 1,
            "memory": "1GiB",
            "arch": arch,
            "hypervisor_type": hypervisor_type,
            "scheduler": "fair",
            "memory_policy": "static",
            **({"costs": costs} if costs is not None else {}),
        },
        "vm": [
            {
                "name": "guest",
                "memory": "256MiB",
                "hz": hz,
                "mode": mode,
                "workload": (
                    {**workload, "iterations": iterations}
                    if workload is not None
                    else {"name": "lmbench", "test": test, "iterations": iterations}
                ),
            }
        ],
    }
    sim = simulate(plugins, scenario, "modes")
    c = sim.vms[0].counters
    clock = sim.machine.costs.clock_hz
    return {
        "cycles_per_op": c["cpu_run_ns"] * clock / 1e9 / iterations,
        "wall_ns_per_op": (c["cpu_run_ns"] + c["cpu_stolen_ns"]) / iterations,
        "traps": c["traps"],
        "vm_exits": c["vm_exits"],
        "hypercalls": c["hypercalls"],
        "bt_translations": c["bt_translations"],
        "bt_callouts": c["bt_callouts"],
        "world_switches": c["world_switches"],
        "direct_share": c["instructions_direct"] / max(1, c["instructions_direct"] + c["instructions_emulated"]),
    }


def marginal(
    plugins: PluginManager,
    mode: str | dict[str, Any],
    test: str,
    iterations: int,
    costs: str,
    workload: dict[str, Any] | None = None,
    arch: str = "x86-vt",
    hz: int = 0,
) -> float:
    """Cycles per operation as a paper's calibrated loop measures them: the difference between
    runs of ``2 * iterations`` and ``iterations`` on cost profile ``costs``, so that what
    happens once (boot, the first touch of the process's pages, translating a block) is not
    spread over the operations. The guest's timer runs at ``hz`` (0: none)."""
    runs: list[float] = [
        measure(plugins, mode, test, "native", n, arch=arch, costs=costs, workload=workload, hz=hz)["cycles_per_op"] * n
        for n in (iterations, 2 * iterations)
    ]
    return (runs[1] - runs[0]) / iterations


def check_orderings(
    result: ExperimentResult, rows: list[dict[str, Any]], orderings: dict[str, tuple[str, str, str]]
) -> None:
    """One check per ordering a paper reports: ``label -> (benchmark, faster config, slower
    config)``, against the rows' ``ratio_to_native``."""
    by = {(r["benchmark"], r["config"]): r["ratio_to_native"] for r in rows}
    for label, (bench, faster, slower) in orderings.items():
        a, b = by[(bench, faster)], by[(bench, slower)]
        result.checks[label] = (a < b, f"{bench}: {faster} {a}x native, {slower} {b}x native")


@experiment("modes", "lmbench-style kernel paths under each mode, native and hosted, bare-metal = 1.0")
def modes(plugins: PluginManager, quick: bool) -> ExperimentResult:
    result = ExperimentResult("modes")
    rows: list[dict[str, Any]] = []
    detail: list[dict[str, Any]] = []
    for test in TESTS:
        iterations = (200 if quick else 2_000) if test == "fork" else (2_000 if quick else 20_000)
        base = measure(plugins, "bare-metal", test, "native", iterations)
        row: dict[str, Any] = {"test": test, "bare_metal_cycles": round(base["cycles_per_op"], 1)}
        for mode, kind in COLUMNS:
            got = base if (mode, kind) == ("bare-metal", "native") else measure(plugins, mode, test, kind, iterations)
            label = mode if kind == "native" else f"{mode} (hosted)"
            row[label] = round(got["cycles_per_op"] / base["cycles_per_op"], 3)
            detail.append(
                {
                    "test": test,
                    "mode": mode,
                    "hypervisor": kind,
                    **{k: round(v, 4) if isinstance(v, float) else v for k, v in got.items()},
                }
            )
        got = measure(plugins, _NO_NESTED_MODE, test, "native", iterations)
        row[NO_NESTED] = round(got["cycles_per_op"] / base["cycles_per_op"], 3)
        detail.append(
            {
                "test": test,
                "mode": "hardware-assisted, nested_paging = false",
                "hypervisor": "native",
                **{k: round(v, 4) if isinstance(v, float) else v for k, v in got.items()},
            }
        )
        rows.append(row)
    result.tables["modes"] = rows
    result.tables["modes_detail"] = detail
    changed, total = port_share(GuestKernel.build())
    result.figures["pv_port_changed_instructions"] = changed
    result.figures["pv_port_kernel_instructions"] = total
    result.figures["pv_port_share_percent"] = round(100 * changed / total, 2)
    ratio = {r["test"]: r for r in rows}
    result.checks["hardware_assist_wins_syscalls"] = (
        ratio["null_syscall"]["hardware-assisted"] < ratio["null_syscall"]["full"],
        f"null syscall: hardware-assisted {ratio['null_syscall']['hardware-assisted']}x native, "
        f"full (BT) {ratio['null_syscall']['full']}x",
    )
    geo = {m: _geomean([r[m] for r in rows]) for m in ("full", "paravirtual", "hardware-assisted")}
    result.figures["geomean_ratio"] = {m: round(v, 3) for m, v in geo.items()}
    worst_pv = max(r["paravirtual"] for r in rows)
    result.checks["paravirtual_close_to_native"] = (
        geo["paravirtual"] <= min(geo["full"], geo["hardware-assisted"]),
        f"paravirtual: geometric mean {geo['paravirtual']:.2f}x native, the lowest of the modes "
        f"(full {geo['full']:.2f}x, hardware-assisted {geo['hardware-assisted']:.2f}x); worst path {worst_pv}x",
    )
    result.checks["binary_translation_beats_first_generation_hardware_on_fork"] = (
        ratio["fork"][NO_NESTED] > ratio["fork"]["full"],
        f"fork: hardware-assisted without nested paging {ratio['fork'][NO_NESTED]}x native, "
        f"full (BT) {ratio['fork']['full']}x (Adams & Agesen 2006)",
    )
    result.checks["hosted_costs_more"] = (
        all(r["full (hosted)"] >= r["full"] for r in rows),
        f"device register access: full native {ratio['device_register']['full']}x, "
        f"hosted {ratio['device_register']['full (hosted)']}x (world switches to the host OS)",
    )
    result.plots["modes.png"] = lambda path: _plot(rows, path)
    return result


def _geomean(values: list[float]) -> float:
    product = 1.0
    for v in values:
        product *= v
    mean: float = product ** (1 / len(values))  # float ** float is typed Any (a complex for x < 0)
    return mean


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    labels = [*(m if k == "native" else f"{m} (hosted)" for m, k in COLUMNS), NO_NESTED]
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / len(labels)
    for i, label in enumerate(labels):
        xs = [t + i * width for t in range(len(rows))]
        ax.bar(xs, [r[label] for r in rows], width, label=label)
    ax.set_xticks([t + 0.4 - width / 2 for t in range(len(rows))], [r["test"] for r in rows])
    ax.set_yscale("log")
    ax.set_ylabel("cycles per operation / bare metal (log)")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.legend(fontsize=8, ncol=4)
    ax.set_title("virtualization modes, lmbench-style kernel paths")
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)
