"""The standard schedulers' promises, measured on whole runs: shares, reservation, limit, cap,
BOOST, Xen's credit bounds, fair share per VM; the water-fill they share; and scenario keys checked
per scheduler."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from vf_helpers import scenario, simulate
from vframework_schedulers._fill import water_fill
from vframework_schedulers.fair import FairParams, FairScheduler

from vframework import PluginManager
from vframework.run.scenario import ScenarioError, parse_scenario
from vframework.testing import ShareMachine


def vm(name: str, workload: Any = "cpu", vcpus: int = 1, **extra: Any) -> dict[str, Any]:
    if workload == "cpu":
        workload = {"name": "cpu"}
    return {"name": name, "vcpus": vcpus, "memory": "64MiB", "mode": "bare-metal", "workload": workload, **extra}


def run(
    plugins: PluginManager, scheduler: Any, vms: list[dict[str, Any]], duration: str = "2s", cpus: int = 1
) -> dict[str, dict[str, int]]:
    data = scenario(
        vms, name="sched", seed=3, duration=duration, cpus=cpus, scheduler=scheduler, memory_policy="static"
    )
    sim, _ = simulate(data, plugins)
    out = {v.name: dict(v.counters) for v in sim.vms}
    out["(host)"] = dict(sim.hypervisor.counters) | {"elapsed_ns": sim.engine.now}
    return out


def fractions(counters: dict[str, dict[str, int]], cpus: int = 1) -> dict[str, float]:
    elapsed = counters["(host)"]["elapsed_ns"] * cpus
    return {k: c["cpu_run_ns"] / elapsed for k, c in counters.items() if k != "(host)"}


# -- proportional --------------------------------------------------------------------------
def test_proportional_shares_3_2_1(plugins: PluginManager) -> None:
    got = fractions(run(plugins, "proportional", [vm("a", shares=3000), vm("b", shares=2000), vm("c", shares=1000)]))
    total = sum(got.values())
    for name, want in {"a": 0.5, "b": 1 / 3, "c": 1 / 6}.items():
        assert got[name] / total == pytest.approx(want, rel=0.01), got


def test_proportional_shares_are_per_vm_not_per_vcpu(plugins: PluginManager) -> None:
    got = fractions(run(plugins, "proportional", [vm("wide", vcpus=4), vm("narrow")], cpus=1))
    assert got["wide"] == pytest.approx(got["narrow"], rel=0.02), got


def test_proportional_limit_is_a_ceiling_even_on_an_idle_host(plugins: PluginManager) -> None:
    got = fractions(run(plugins, "proportional", [vm("limited", limit=20), vm("idle", "idle")]))
    assert 0.19 <= got["limited"] <= 0.2 + 0.01, got


def test_proportional_limit_is_reached_under_contention(plugins: PluginManager) -> None:
    # The bucket holds a full slice, so what the VM earns while it waits is not lost.
    got = fractions(run(plugins, "proportional", [vm("limited", limit=20), vm("busy")]))
    assert 0.19 <= got["limited"] <= 0.21, got
    assert got["busy"] >= 0.78, got


def test_proportional_reservation_beats_shares(plugins: PluginManager) -> None:
    got = fractions(run(plugins, "proportional", [vm("small", shares=1, reservation=40), vm("big", shares=100_000)]))
    assert got["small"] >= 0.39, got


def test_proportional_spare_vcpu_capacity_goes_to_others(plugins: PluginManager) -> None:
    # 2 CPUs: a 1-vCPU VM with nearly all the shares can use only one CPU; the rest is not lost.
    got = fractions(
        run(plugins, "proportional", [vm("one", shares=100_000), vm("two", vcpus=2, shares=1)], cpus=2), cpus=2
    )
    assert got["one"] == pytest.approx(0.5, abs=0.01), got
    assert got["two"] == pytest.approx(0.5, abs=0.01), got


# -- credit --------------------------------------------------------------------------------
def test_credit_weights_3_2_1_on_average(plugins: PluginManager) -> None:
    got = fractions(run(plugins, "credit", [vm("a", weight=768), vm("b", weight=512), vm("c", weight=256)], "3s"))
    total = sum(got.values())
    for name, want in {"a": 0.5, "b": 1 / 3, "c": 1 / 6}.items():
        assert got[name] / total == pytest.approx(want, rel=0.05), got


def test_credit_cap_parks_the_vm(plugins: PluginManager) -> None:
    counters = run(plugins, "credit", [vm("capped", cap=50), vm("idle", "idle")])
    elapsed = counters["(host)"]["elapsed_ns"]
    # Over any interval: at most the cap, plus one period's budget (15 ms) not yet renewed.
    assert 0.48 * elapsed <= counters["capped"]["cpu_run_ns"] <= 0.5 * elapsed + 15_000_000, counters["capped"]
    assert counters["(host)"]["idle_ns"] >= 0.45 * counters["(host)"]["elapsed_ns"]


def test_credit_cap_above_one_cpu(plugins: PluginManager) -> None:
    got = fractions(run(plugins, "credit", [vm("capped", vcpus=4, cap=150)], cpus=4), cpus=4)
    assert got["capped"] * 4 == pytest.approx(1.5, abs=0.03), got


def test_credit_boost_shortens_io_wakeups(plugins: PluginManager) -> None:
    io = {"name": "io", "compute": "50us", "nbytes": "4KiB"}
    latency = {}
    for scheduler in ("credit", "fair"):
        c = run(plugins, scheduler, [vm("io", io), vm("cpu")], "1s")["io"]
        latency[scheduler] = c["cpu_wakeup_latency_ns"] / c["cpu_wakeups"]
    assert latency["credit"] * 10 < latency["fair"], latency


def test_credit_upper_bound_discards_credit(plugins: PluginManager) -> None:
    """Xen's rule that halves a vCPU's credit above one period's worth makes a heavy 1-vCPU VM
    lose CPU to a light 2-vCPU one (the credit module doc explains why no share bound holds)."""
    got = fractions(run(plugins, "credit", [vm("heavy", weight=2048), vm("light", vcpus=2, weight=512)], "3s"))
    assert got["heavy"] < 0.8 - 0.03, got  # entitled to 80%
    assert got["heavy"] > 0.5, got


# -- fair ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("vcpus_a", "tslice"), [(1, "10ms"), (1, "3ms"), (2, "10ms"), (3, "5ms")])
def test_fair_share_between_identical_cpu_bound_vms(vcpus_a: int, tslice: str, plugins: PluginManager) -> None:
    """Fair share is per VM, whatever its vCPU count: on one CPU two busy VMs get the same CPU time
    within one time slice."""
    vms = [
        {"name": "a", "vcpus": vcpus_a, "memory": "64MiB", "workload": "cpu"},
        {"name": "b", "memory": "64MiB", "workload": "cpu"},
    ]
    data = scenario(
        vms,
        seed=4,
        duration="1s",
        sample_interval="20ms",
        memory="2GiB",
        cpus=1,
        scheduler={"name": "fair", "tslice": tslice},
    )
    _, summary = simulate(data, plugins)
    a, b = summary["vms"]["a"]["cpu_run_ns"], summary["vms"]["b"]["cpu_run_ns"]
    slice_ns = {"10ms": 10_000_000, "5ms": 5_000_000, "3ms": 3_000_000}[tslice]
    assert abs(a - b) <= slice_ns, (a, b)
    assert a + b >= 0.99 * summary["sim_time_ns"]


def test_fair_scheduler_is_work_conserving(plugins: PluginManager) -> None:
    vms = [
        {"name": "a", "vcpus": 2, "memory": "64MiB", "workload": "cpu"},
        {"name": "b", "memory": "64MiB", "workload": "idle"},
    ]
    data = scenario(vms, seed=4, duration="200ms", sample_interval="20ms", memory="2GiB", cpus=2)
    _, summary = simulate(data, plugins)
    # Two busy vCPUs, two CPUs: the CPUs are idle only while the idle VM's tick handler runs elsewhere.
    assert summary["vms"]["a"]["cpu_run_ns"] >= 2 * summary["sim_time_ns"] * 0.97


def test_fair_scheduler_keeps_its_proportional_share_bound(plugins: PluginManager) -> None:
    """The falsifying example of the kit's proportional-share property, replayed step by step."""
    machine = ShareMachine.for_component(plugins.get("scheduler", "fair"))()
    machine.setup(cpus=3)
    machine.add_vm(vcpus=2, share=1)
    machine.add_vm(vcpus=1, share=1)
    machine.run_for(span=106_000_000)
    machine.within_bound()
    machine.add_vm(vcpus=1, share=1)
    machine.add_vm(vcpus=1, share=1)
    machine.run_for(span=78_000_000)
    machine.within_bound()
    machine.teardown()


# -- scenario keys -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("scheduler", "key", "value"),
    [
        ("proportional", "weight", 256),
        ("proportional", "cap", 50),
        ("credit", "shares", 1000),
        ("credit", "limit", 20),
        ("fair", "shares", 10),
    ],
)
def test_a_key_the_scheduler_does_not_use_is_an_error_naming_it(
    plugins: PluginManager, scheduler: str, key: str, value: int
) -> None:
    data = scenario([vm("a", **{key: value})], name="x", cpus=1, scheduler=scheduler)
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data, "bad.toml", plugins)
    message = str(info.value)
    assert f"vm[0].{key}" in message, message
    assert scheduler in message, message


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"shares": 0}, "vm[0].shares"),
        ({"reservation": 60, "limit": 50}, "exceeds limit"),
    ],
)
def test_proportional_rejects_bad_values(plugins: PluginManager, extra: dict[str, Any], fragment: str) -> None:
    data = scenario([vm("a", **extra)], name="x", cpus=1, scheduler="proportional")
    with pytest.raises(ScenarioError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        parse_scenario(data, "bad.toml", plugins)


# -- the water-fill ------------------------------------------------------------------------
bounds = st.lists(st.tuples(st.floats(0.01, 100), st.floats(0, 4), st.floats(0, 4)), min_size=1, max_size=8)


@given(capacity=st.floats(0.1, 16), rows=bounds)
def test_water_fill_sums_to_capacity_within_bounds(capacity: float, rows: list[tuple[float, float, float]]) -> None:
    weights = [w for w, _, _ in rows]
    lo = [min(a, b) for _, a, b in rows]
    hi = [max(a, b) for _, a, b in rows]
    fill, lam = water_fill(capacity, weights, lo, hi)
    if sum(hi) <= capacity:
        assert fill == hi
        assert lam == float("inf")
        return
    assert sum(fill) == pytest.approx(capacity, rel=1e-9, abs=1e-9)
    if sum(lo) >= capacity:
        return  # reservations scaled down together
    for f, w, a, b in zip(fill, weights, lo, hi, strict=True):
        assert a - 1e-9 <= f <= b + 1e-9
        # Between its bounds, a share is exactly proportional to its weight.
        if a + 1e-9 < f < b - 1e-9:
            assert f == pytest.approx(lam * w, rel=1e-9)


def _fair_vcpu(vm_id: int) -> Any:
    vm = SimpleNamespace(id=vm_id, vcpus=[])
    vcpu = SimpleNamespace(vm=vm, name=f"vm{vm_id}/vcpu0")
    vm.vcpus.append(vcpu)
    return vcpu


def test_fair_vms_arriving_at_an_idle_host_start_level_with_the_vm_there_before() -> None:
    """VM a runs alone for 700 ms and sleeps; b and c arrive while the host is idle; a wakes.
    They must not start at 0 and starve a while they catch up its 700 ms (the conformance
    kit's liveness property found a vCPU waiting over a second so): a runs again within one
    slice of each."""
    sched = FairScheduler(FairParams(), 1)
    a, b, c = (_fair_vcpu(i) for i in range(3))
    sched.attach(a, None)
    sched.wake(a, 0)
    now = 0
    for _ in range(70):
        vcpu, slice_ns = sched.pick(0, now)
        assert vcpu is a
        now += slice_ns
        sched.charge(a, slice_ns, now, runnable=True)
    vcpu, slice_ns = sched.pick(0, now)
    now += slice_ns
    sched.charge(a, slice_ns, now, runnable=False)  # a sleeps: no VM competes
    for other in (b, c):
        sched.attach(other, None)
        sched.wake(other, now)
    sched.wake(a, now)
    ran = []
    for _ in range(3):
        vcpu, slice_ns = sched.pick(0, now)
        ran.append(vcpu.vm.id)
        now += slice_ns
        sched.charge(vcpu, slice_ns, now, runnable=True)
    assert 0 in ran, ran
