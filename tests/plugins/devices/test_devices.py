"""Device plugins: the emulated disk and the ring block device, end to end in a simulation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from vf_helpers import scenario, simulate
from vframework_devices.ring_block import BlkRequest, RingBlock

from vframework.api.manager import PluginManager
from vframework.errors import ScenarioError
from vframework.hv.contexts import HostMemory
from vframework.hv.sharing import pinned_frames
from vframework.run.scenario import parse_scenario
from vframework.run.simulation import Simulation


def _vm(name: str, device: str | dict[str, Any], mode: str = "paravirtual", **io: Any) -> dict[str, Any]:
    return {
        "name": name,
        "memory": "64MiB",
        "mode": mode,
        "workload": {"name": "io", "nbytes": "16KiB", **io},
        "devices": [device],
    }


def test_ring_devices_copy_nothing_and_emulated_devices_copy_every_byte(plugins: PluginManager) -> None:
    data = scenario(
        [_vm("ring", "ring-block", "hardware-assisted"), _vm("emu", "emulated-disk", "hardware-assisted")],
        duration="300ms",
    )
    _, summary = simulate(data, plugins)
    ring, emu = summary["vms"]["ring"], summary["vms"]["emu"]
    for vm in (ring, emu):
        assert vm["io_completed"] >= vm["io_requests"] - 1 > 100  # one may be in flight at the end
        assert vm["io_errors"] == 0
    assert ring["io_bytes_copied"] == 0
    # 16 KiB: four granted pages each, mapped when the back end takes the request.
    assert 4 * ring["io_completed"] <= ring["grant_maps"] <= 4 * ring["io_requests"]
    assert ring["io_register_accesses"] == 0
    assert emu["io_bytes_copied"] == 16 * 1024 * emu["io_requests"]
    assert emu["io_register_accesses"] == 14 * emu["io_requests"]
    # Every register access of the emulated disk exits; the ring device exits once per kick.
    assert emu["vm_exits_io"] > 10 * emu["io_requests"]
    assert ring["vm_exits_io"] < 4 * ring["io_requests"]


def _seek_per_request(plugins: PluginManager, elevator: str) -> float:
    device = {"name": "ring-block", "elevator": elevator}
    data = scenario([_vm("r", device, pattern="random", depth=16, span="32GiB", write_ratio=0.5)], duration="1s")
    sim, _ = simulate(data, plugins)
    dev = sim.vms[0].devices["disk"]
    assert isinstance(dev, RingBlock)
    return dev.disk.seek_ns / dev.disk.served


def test_the_elevator_cuts_seek_time(plugins: PluginManager) -> None:
    assert _seek_per_request(plugins, "c-look") < 0.6 * _seek_per_request(plugins, "fifo")


@pytest.mark.parametrize("elevator", ["c-look", "fifo"])
def test_no_request_is_reordered_across_a_barrier(plugins: PluginManager, elevator: str) -> None:
    device = {"name": "ring-block", "elevator": elevator}
    data = scenario([_vm("r", device, pattern="random", depth=6, barrier_every=2)], duration="600ms")
    spec = parse_scenario(data, "test.toml", plugins)
    sim = Simulation(spec, plugins)
    dev = sim.vms[0].devices["disk"]
    order: list[tuple[int, bool]] = []
    complete = dev.context.complete

    def record(request: Any) -> None:
        order.append((request.id, request.barrier))
        complete(request)

    dev.context.complete = record  # type: ignore[method-assign]
    sim.run()
    barriers = [i for i, (_, barrier) in enumerate(order) if barrier]
    assert len(barriers) > 20
    for pos in barriers:
        rid = order[pos][0]
        assert all(other < rid for other, _ in order[:pos]), f"a request after barrier {rid} completed before it"
        assert all(other > rid for other, _ in order[pos + 1 :]), f"a request before barrier {rid} completed after it"


def test_pages_under_io_are_pinned_and_never_reclaimed(plugins: PluginManager) -> None:
    data = scenario([_vm("r", "ring-block", "hardware-assisted", depth=4)], duration="3ms")
    sim, _ = simulate(data, plugins)
    vm = sim.vms[0]
    pinned = vm.io_pinned
    assert pinned.size > 0
    assert pinned.size % 4 == 0  # requests of four pages each in flight at the end
    assert set(vm.p2m[pinned].tolist()) <= set(pinned_frames(vm).tolist())
    before = vm.p2m[pinned].copy()
    assert HostMemory(sim.hypervisor).reclaim(vm.id, pinned) == 0
    assert np.array_equal(vm.p2m[pinned], before)


def test_a_hostile_front_end_gets_errors_and_reaches_no_page(plugins: PluginManager) -> None:
    data = scenario([_vm("r", "ring-block", "hardware-assisted")], duration="5ms")
    sim, _ = simulate(data, plugins)
    vm = sim.vms[0]
    dev = vm.devices["disk"]
    assert isinstance(dev, RingBlock)
    io = vm.io
    assert io is not None
    ours = set(range(io.grants.entries)) - {int(r) for r in np.flatnonzero(io.grants.flags)}
    stranger = min(ours)  # a reference nobody granted
    front, back = dev.front, dev.back
    answered = back.rsp_prod_pvt
    garbage = ["rubbish", BlkRequest(0, 4096, False, False, (stranger,)), BlkRequest(-5, 4096, True, False, (0,))]
    for payload in garbage:
        slot = front.get_request(front.req_prod_pvt)
        slot.id, slot.payload = 10_000 + front.req_prod_pvt, payload
        front.req_prod_pvt += 1
    dev.shared.req_prod = front.req_prod_pvt
    maps_before = io.grants.maps.copy()
    dev._kick()
    assert (back.rsp_prod_pvt - answered) % 2**32 == 3
    assert np.array_equal(io.grants.maps, maps_before), "a garbage slot mapped a grant"
    errors = [back.get_response(answered + i).payload for i in range(3)]
    assert all(getattr(r, "status", 0) == -1 for r in errors), errors
    # A req_prod far beyond the ring: the back end halts the ring instead of taking garbage.
    dev.shared.req_prod = front.req_prod_pvt + 10**6
    dev._kick()
    assert dev.halted
    assert (back.rsp_prod_pvt - answered) % 2**32 == 3


def test_a_vm_attaches_one_device_per_kind(plugins: PluginManager) -> None:
    vm = _vm("r", "ring-block")
    vm["devices"] = ["ring-block", "emulated-disk"]
    with pytest.raises(ScenarioError, match=r"vm\[0\]\.devices\[1\].*both serve 'disk'"):
        parse_scenario(scenario([vm]), "test.toml", plugins)


def test_without_event_channels_each_notification_is_an_interrupt(plugins: PluginManager) -> None:
    runs = {}
    for channels in (True, False):
        vm = _vm("r", {"name": "ring-block", "notify": "batch"}, "hardware-assisted", depth=8, pattern="random")
        vm["event_channels"] = channels
        runs[channels] = simulate(scenario([vm], duration="200ms"), plugins)[1]
    with_channels, without = runs[True], runs[False]
    for summary in (with_channels, without):
        vm = summary["vms"]["r"]
        assert vm["io_completed"] > 50
        assert vm["events_delivered"] == vm["events_sent"]
    # Each notification now costs an interrupt of its own (on top of the disk's).
    extra = without["host"]["interrupts"] - with_channels["host"]["interrupts"]
    assert extra >= 0.9 * without["vms"]["r"]["events_sent"]
