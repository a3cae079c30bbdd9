"""The sharing services on real scenarios: what they share, what they must not, their counters."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, settings
from vf_helpers import scenario
from vframework_memory import EsxSharing, HostSwap, Ksm

from vframework.api.manager import PluginManager
from vframework.errors import ScenarioError
from vframework.guest.mm import PTE_COW, PTE_WRITABLE
from vframework.guest.os import GuestOS
from vframework.hv import sharing, swap
from vframework.run.scenario import parse_scenario
from vframework.run.simulation import Simulation, Summary
from vframework.testing.sharing import SharingMachine

WORKLOAD = {
    "name": "memory",
    "working_set": "4MiB",
    "image_fraction": 0.5,
    "zero_fraction": 0.25,
    "private_fraction": 0.125,
}


def _data(service: dict[str, Any], vms: int = 3, image: str = "linux", mode: str = "full") -> dict[str, Any]:
    return scenario(
        vms=[
            {"name": f"vm{i}", "memory": "8MiB", "mode": mode, "image": image if i else "linux", "workload": WORKLOAD}
            for i in range(vms)
        ],
        duration="200ms",
        sample_interval="50ms",
        memory_services=[service],
    )


def _run(plugins: PluginManager, data: dict[str, Any], run_ahead: bool = True) -> tuple[Summary, list[Any]]:
    sim = Simulation(parse_scenario(data, "test.toml", plugins), plugins)
    sim.hypervisor.run_ahead = run_ahead
    summary = sim.run()
    summary["host"].pop("events_fired")
    return summary, sim.timeseries


ESX = {"name": "esx-sharing", "period": "10ms", "scan_time": "20ms", "max_rate": 10**7}
KSM = {"name": "ksm", "pages_to_scan": 2000, "sleep_millisecs": 5}

IMAGE, ZERO = 512, 256  # pages of the 4 MiB working set


@pytest.mark.parametrize("service", [ESX, KSM], ids=["esx-sharing", "ksm"])
def test_image_and_zero_pages_are_shared_across_vms(plugins: PluginManager, service: dict[str, Any]) -> None:
    summary, _ = _run(plugins, _data(service))
    host = summary["host"]
    # Three VMs: each image page on one frame (saving 2 of 3), the zero pages on one frame.
    assert host["pages_sharing"] >= 2 * IMAGE + 3 * ZERO - 1 - 64
    for vm in summary["vms"].values():
        assert vm["mem_shared"] >= IMAGE + ZERO - 64
        assert vm["mem_consumed"] < vm["mem_granted"]


@pytest.mark.parametrize("service", [ESX, KSM], ids=["esx-sharing", "ksm"])
def test_a_vm_without_share_pages_is_left_alone(plugins: PluginManager, service: dict[str, Any]) -> None:
    # libvirt's nosharepages: the other two VMs still share with each other, never with vm1.
    data = _data(service)
    data["vm"][1]["share_pages"] = False
    summary, _ = _run(plugins, data)
    vms = summary["vms"]
    assert vms["vm1"]["mem_shared"] == 0
    assert vms["vm1"]["mem_consumed"] == vms["vm1"]["mem_granted"]
    for name in ("vm0", "vm2"):
        assert vms[name]["mem_shared"] >= IMAGE + ZERO - 64
    # Two VMs' image pages on one frame each (saving 1 of 2), their zero pages on one frame.
    assert summary["host"]["pages_sharing"] <= IMAGE + 2 * ZERO


@pytest.mark.parametrize("service", [ESX, KSM], ids=["esx-sharing", "ksm"])
def test_different_images_share_only_zero_pages(plugins: PluginManager, service: dict[str, Any]) -> None:
    summary, _ = _run(plugins, _data(service, vms=2, image="windows"))
    # vm0 boots linux, vm1 windows: image pages differ; zero pages (and nothing else) match.
    assert summary["host"]["pages_shared"] <= 2
    assert summary["host"]["pages_sharing"] >= 2 * ZERO - 1 - 32


@pytest.mark.parametrize("service", [ESX, KSM], ids=["esx-sharing", "ksm"])
def test_running_ahead_changes_nothing_under_sharing(plugins: PluginManager, service: dict[str, Any]) -> None:
    data = _data(service, vms=2)
    assert _run(plugins, data, True) == _run(plugins, data, False)


def test_a_one_bit_hash_collides_but_never_shares_unequal_pages(plugins: PluginManager) -> None:
    # Every content hashes to 0 or 1: the table is all collisions; the full comparison (and the
    # kernel's own check, which would raise) keeps different pages apart, equal ones still share.
    summary, _ = _run(plugins, _data({**ESX, "hash_bits": 1}))
    assert summary["host"]["pages_sharing"] > 0


def test_ksm_leaves_volatile_pages_alone(plugins: PluginManager) -> None:
    summary, _ = _run(plugins, _data(KSM))
    host = summary["host"]
    assert host["full_scans"] >= 2
    assert host["pages_volatile"] > 0  # the volatile eighth the workload keeps writing
    assert host["pages_scanned"] > 0


def test_the_same_seed_gives_the_same_sharing(plugins: PluginManager) -> None:
    data = _data(ESX)
    assert _run(plugins, data) == _run(plugins, data)


def test_fractions_above_one_are_refused(plugins: PluginManager) -> None:
    data = _data(ESX)
    data["vm"][0]["workload"] = {**WORKLOAD, "image_fraction": 0.9}
    with pytest.raises(ScenarioError, match="at most 1"):
        parse_scenario(data, "test.toml", plugins)


def _hunt(machine: type[SharingMachine], examples: int) -> None:
    """Run ``machine`` for ``examples`` examples on a fixed seed (the same examples every run),
    generating only: finding the bug is the point, and shrinking would take minutes."""
    machine.TestCase.settings = settings(
        max_examples=examples,
        stateful_step_count=30,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        report_multiple_bugs=False,
        derandomize=True,
        # On a loaded machine generation can be slow; a health check would end the hunt early.
        suppress_health_check=list(HealthCheck),
    )
    machine.TestCase().runTest()


def test_the_kit_catches_writes_to_shared_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    machine = SharingMachine.for_component(Ksm)
    monkeypatch.setattr(GuestOS, "_unshare", lambda self, vcpu, ppns: 0)
    # The machine's rules grew (reclaim_now, writes in the middle of a scan): 300 examples on
    # the fixed seed stopped reaching a write to a shared page; random runs find it at 300.
    with pytest.raises(AssertionError, match=r"changed what vm|was written|but reads"):
        _hunt(machine, 1000)


def test_the_kit_catches_a_fork_without_copy_on_write(monkeypatch: pytest.MonkeyPatch) -> None:
    # A guest whose fork leaves both processes' pages writable: a write through one changes
    # what the other reads. The kit forks and writes at random, so it must notice.
    fork = GuestOS.fork

    def careless_fork(self: GuestOS, vcpu: Any, parent: Any) -> Any:
        child, cycles = fork(self, vcpu, parent)
        for proc in (parent, child):
            present = proc.mapped()
            proc.pte_flags[present] = (proc.pte_flags[present] & ~np.uint8(PTE_COW)) | PTE_WRITABLE
        return child, cycles

    monkeypatch.setattr(GuestOS, "fork", careless_fork)
    machine = SharingMachine.for_component(Ksm)
    # Found in most random runs, not all: a fixed seed makes the test deterministic. It once
    # passed alone and failed in the suite: the machine sampled process objects, whose hashes
    # (their addresses) went into Hypothesis's labels; it samples indices now.
    with pytest.raises(AssertionError, match=r"changed what vm\d+ process \d+ reads"):
        _hunt(machine, 300)


class _Draws:
    """Stands in for Hypothesis's ``data``: hands out the given values in order."""

    def __init__(self, *values: Any) -> None:
        self.values = list(values)

    def draw(self, strategy: Any, label: str | None = None) -> Any:
        return self.values.pop(0)


@pytest.mark.parametrize("how", ["swapped", "shared"])
def test_the_kit_catches_a_pinned_frame_swapped_or_shared(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    # A kernel that forgets its pins pages out, or shares, a page under I/O. The machine's own
    # steps, directed: a random run reaches them, but which run depends on the whole suite.
    def no_pins(vm: Any) -> Any:
        return np.empty(0, dtype=np.int64)

    monkeypatch.setattr(sharing, "pinned_frames", no_pins)
    monkeypatch.setattr(swap, "pinned_frames", no_pins)
    machine = SharingMachine.for_component(EsxSharing)()
    for _ in range(2):
        machine.add_vm(image=0, layout=(16, 0, 0), touched=list(range(16)), writes=False, share_pages=True, mem_min=0)
    machine.run_for(20_000)
    machine.direct_io_pins(_Draws((0, 0), [3]))
    machine.pinned_frames_stay_put()
    ppn = int(machine.procs[0][0].page_table[3])
    if how == "swapped":
        machine.hv.memory.swap_out(0, [ppn], 1_000)
    else:  # vm1's equal page becomes the target, as a scanner would choose it
        machine.hv.memory.share(0, [ppn], [int(machine.hv.vms[1].p2m[ppn])])
    with pytest.raises(AssertionError, match=r"pinned for I/O on frame \d+, (is now on|which is)"):
        machine.pinned_frames_stay_put()


def test_the_kit_catches_hypervisor_swap_below_mem_min(monkeypatch: pytest.MonkeyPatch) -> None:
    # A kernel that forgets the guarantee when it pages: host-swap's victims take VMs below
    # the mem_min the kit gives them.
    guard = swap.swap_out

    def careless(hv: Any, vm: Any, ppns: Any, read_ns: int) -> int:
        floor, vm.mem_min = vm.mem_min, 0
        try:
            return guard(hv, vm, ppns, read_ns)
        finally:
            vm.mem_min = floor

    monkeypatch.setattr(swap, "swap_out", careless)
    monkeypatch.setattr("vframework.hv.contexts.swap_out", careless)
    with pytest.raises(AssertionError, match=r"below its mem_min"):
        _hunt(SharingMachine.for_component(HostSwap), 300)


def test_the_kit_checks_the_limits_of_a_service_that_says_it_holds_them(monkeypatch: pytest.MonkeyPatch) -> None:
    # The machine's own steps, in the order a random run reaches them in a few hundred
    # examples: a VM touches its 16 pages, its mem_max drops to 4, the service runs.
    def steps() -> SharingMachine:
        machine = SharingMachine.for_component(HostSwap)()
        machine.add_vm(image=0, layout=(0, 0, 0), touched=list(range(16)), writes=True, share_pages=True, mem_min=0)
        machine.run_for(20_000)
        machine.hv.vms[0].mem_max = 4
        machine.scan(1)
        return machine

    assert steps().hv.vms[0].counters["mem_granted"] == 4
    monkeypatch.setattr(HostSwap, "_enforce_limits", lambda self, memory, budget: 0)
    with pytest.raises(AssertionError, match=r"holding 16 pages, above its mem_max \(4 pages\), with 16 private"):
        steps()
