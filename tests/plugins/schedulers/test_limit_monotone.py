"""Found by the sweep tutorial: proportional's limit must be monotone, at one full CPU too (a
full bucket used to drop what a running vCPU earned during its slice: half a CPU at 100%)."""

from __future__ import annotations

from vf_helpers import scenario, simulate

from vframework import PluginManager


def _heavy_run_ns(plugins: PluginManager, limit: float) -> int:
    vms = [
        {"name": "heavy", "memory": "64MiB", "limit": limit, "workload": "cpu"},
        {"name": "db", "memory": "64MiB", "workload": "cpu"},
        {"name": "web", "memory": "64MiB", "workload": {"name": "cpu", "burst": "2ms", "think": "3ms"}},
    ]
    _, summary = simulate(scenario(vms, duration="500ms", cpus=2, scheduler="proportional"), plugins)
    run_ns: int = summary["vms"]["heavy"]["cpu_run_ns"]
    return run_ns


LIMITS = (25, 50, 75, 99, 100, 150)


def test_raising_a_limit_never_lowers_what_a_vm_gets(plugins: PluginManager) -> None:
    got = [_heavy_run_ns(plugins, limit) for limit in LIMITS]
    assert got == sorted(got), dict(zip(LIMITS, got, strict=True))
    # The bound itself: limit x 0.5 s, plus at most one banked slice (10 ms).
    for limit, ns in zip(LIMITS, got, strict=True):
        assert ns <= limit / 100 * 500_000_000 + 10_000_000, limit
    assert got[LIMITS.index(100)] > 400_000_000, "a whole CPU's limit barely binds here"
