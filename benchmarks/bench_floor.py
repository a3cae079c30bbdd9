"""The exact model's floor: what drawing the memory workloads' references costs by itself.

A memory workload draws every page it references from its own random stream (a zipf or uniform
draw per reference, in chunks of 64 Ki). Results must stay byte-identical, so those draws are
fixed work: however cheap everything else becomes, a run cannot go faster than its references
can be drawn. This benchmark measures that ceiling, so a speed goal can be checked against it
before anyone works towards it.

For a scenario, each VM's workload is built again with a random stream of its own and its
generator is pulled, alone, until it has drawn :data:`DRAWN` references (or ends): wall
seconds per reference drawn, per VM. The scenario is then run (timed, as ``bench_run`` does)
and each VM's references counted (its ``tlb_hits`` plus ``tlb_misses``: every reference looks
the TLB up once). The ceiling is the simulated seconds divided by the sum, over VMs, of
references times seconds per reference drawn.

Rows:

* ``floor.default`` -- the ceiling for the default scenario, in simulated seconds per wall
  second; baseline: the scenario's own speed in this run (the ratio is how much faster the run
  could become if everything but its draws cost nothing).
* ``floor.scale`` -- the same for ``bench_scale``'s 200-VM host (quick: 50 VMs); baseline:
  that run's own speed.
* ``floor.draw`` -- references drawn per wall second by the default scenario's busiest memory
  workload (its VM makes most references); baseline: one numpy gather of as many int64
  values from a table of the working set's size, measured in this run (the least any
  per-reference step costs).

Each scenario runs in a fresh process (``common.in_child``).
"""

from __future__ import annotations

import json
import time
from typing import Any

from common import in_child, row

#: References drawn per VM to time its workload's draws (quick: an eighth).
DRAWN = 1 << 20
#: Simulated duration (ns) of the default scenario's run (its own), and of the 200-VM host's.
DEFAULT_NS = 5_000_000_000
SCALE_NS = 50_000_000
#: With ``--quick``: shorter runs, and 50 VMs instead of 200.
QUICK_DEFAULT_NS = 200_000_000
QUICK_SCALE_NS = 10_000_000
QUICK_VMS = 50
#: Small enough for the smoke test.
SMOKE_SIZE = 2_000_000
#: Gathers timed for the draw row's baseline (the fastest kept: one is too noisy).
GATHERS = 5
#: Operations pulled without a reference before a workload counts as drawing none.
NO_TOUCH_AFTER = 10_000


def _workload(spec: Any) -> Any:
    """VM ``spec``'s workload, built again with a random stream of its own (vCPU 0)."""
    import numpy as np  # noqa: PLC0415  (child side only)

    from vframework.api import PAGE_SIZE, WorkloadContext  # noqa: PLC0415

    cfg = spec.config
    context = WorkloadContext(cfg.name, 0, cfg.memory // PAGE_SIZE // cfg.vcpus, np.random.default_rng(0))
    return spec.workload.cls(spec.workload.params, context)


def _draw_seconds(spec: Any, drawn: int) -> float:
    """Wall seconds per reference that VM ``spec``'s workload draws alone, after its first
    reference (0 when its first operations reference no page). The generator's own per-operation
    work (a few microseconds per batch of thousands) is in it: it is how the workload draws."""
    from vframework.api import Touch  # noqa: PLC0415

    workload = _workload(spec)
    ops = workload.run()
    # The first reference builds the pattern's tables (once per VM): not a draw.
    for pulled, op in enumerate(ops):
        if type(op) is Touch or pulled > NO_TOUCH_AFTER:
            break
    else:
        return 0.0
    if type(op) is not Touch:
        return 0.0  # not a memory workload (or one that waits first)
    refs = 0
    start = time.perf_counter()
    for op in ops:
        if type(op) is Touch:
            refs += op.vpns.size
            if refs >= drawn:
                break
    seconds = time.perf_counter() - start
    return seconds / refs if refs else 0.0


def _child(which: str, duration_ns: int, vms: int, drawn: int) -> None:
    """In the child process: time each VM's draws, run the scenario (timed), print one JSON line."""
    import numpy as np  # noqa: PLC0415

    from vframework.api.manager import PluginManager  # noqa: PLC0415
    from vframework.run.scenario import load_default_scenario, parse_scenario  # noqa: PLC0415
    from vframework.run.simulation import Simulation  # noqa: PLC0415

    plugins = PluginManager()
    if which == "default":
        scenario = load_default_scenario(plugins, [f"duration={duration_ns}ns"])
    else:
        from bench_scale import scale_scenario  # noqa: PLC0415

        data = scale_scenario(vms, duration_ns)
        scenario = parse_scenario(data, str(data["name"]), plugins)
    cost: dict[str, float] = {}
    known: dict[str, float] = {}  # VMs with the same workload and memory draw alike
    for spec in scenario.vms:
        key = json.dumps([spec.workload.name, spec.workload.params.model_dump(mode="json"), spec.config.memory])
        if key not in known:
            known[key] = _draw_seconds(spec, drawn)
        cost[spec.config.name] = known[key]
    sim = Simulation(scenario, plugins)
    start = time.perf_counter()
    sim.run()
    wall = time.perf_counter() - start
    refs = {vm.name: vm.counters["tlb_hits"] + vm.counters["tlb_misses"] for vm in sim.vms}
    drawing = sum(refs[name] * cost[name] for name in refs)
    most = max(refs, key=lambda name: refs[name])
    # The baseline of the draw row: one gather of as many int64 as the busiest VM's draws.
    busiest = next(spec for spec in scenario.vms if spec.config.name == most)
    table = np.arange(max(1, _workload(busiest).address_space_pages()), dtype=np.int64)
    index = np.random.default_rng(1).integers(0, table.size, size=drawn)
    gather = float("inf")
    for _ in range(GATHERS):
        start = time.perf_counter()
        table[index]
        gather = min(gather, (time.perf_counter() - start) / drawn)
    out = {
        "sim_s": sim.engine.now / 1e9,
        "wall": wall,
        "refs": sum(refs.values()),
        "drawing": drawing,
        "busiest": most,
        "busiest_draw": cost[most],
        "gather": gather,
    }
    print(json.dumps(out))


def run(quick: bool = False, size: int | None = None, repeat: int | None = None) -> list[dict[str, Any]]:
    """Rows for ``floor.default``, ``floor.scale`` and ``floor.draw``.

    ``size`` is the simulated duration in ns of both runs (which also shrinks the host to
    a few VMs and the draws to 64 Ki per VM); ``repeat`` is not used (each figure is one run in
    a fresh process: the draws are timed over a million references).
    """
    del repeat
    if size is not None:
        default_ns, scale_ns, vms, drawn = size, size, 4, 1 << 16
    elif quick:
        default_ns, scale_ns, vms, drawn = QUICK_DEFAULT_NS, QUICK_SCALE_NS, QUICK_VMS, DRAWN // 8
    else:
        default_ns, scale_ns, vms, drawn = DEFAULT_NS, SCALE_NS, 200, DRAWN
    rows = []
    for which, ns, count in (("default", default_ns, 0), ("scale", scale_ns, vms)):
        got = in_child("bench_floor", f"_child({which!r}, {ns}, {count}, {drawn})", f"{which} run")
        speed = got["sim_s"] / got["wall"]
        ceiling = got["sim_s"] / got["drawing"] if got["drawing"] else float("inf")
        name = "default scenario" if which == "default" else f"{count}-VM host"
        rows.append(
            row(
                "floor",
                which,
                ceiling,
                "sim s/s",
                speed,
                f"the {name}'s own speed",
                references=got["refs"],
                references_per_sim_s=got["refs"] / got["sim_s"],
                draw_seconds=got["drawing"],
                sim_s=got["sim_s"],
            )
        )
        if which == "default":
            rows.append(
                row(
                    "floor",
                    f"draw ({got['busiest']})",
                    1 / got["busiest_draw"],
                    "refs/s",
                    1 / got["gather"],
                    "one numpy gather per reference",
                )
            )
    return rows
