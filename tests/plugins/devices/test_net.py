"""Network devices: the host's NIC shares the wire round robin, the bridge carries VM-to-VM
packets, ring-net copies nothing, emulated-nic copies every packet."""

from __future__ import annotations

from typing import Any

import numpy as np
from vf_helpers import scenario, simulate
from vframework_devices.net import NIC, WIRE, Packet
from vframework_devices.ring_net import NetTx, RingNet

from vframework.api.manager import PluginManager


def _vm(name: str, device: str | dict[str, Any], mode: str = "paravirtual", **io: Any) -> dict[str, Any]:
    workload = {"name": "io", "device": "net", "nbytes": "4KiB", "compute": "20us", **io}
    return {"name": name, "memory": "64MiB", "mode": mode, "workload": workload, "devices": [device]}


def test_the_wire_takes_packets_from_each_vm_in_turn() -> None:
    pending: list[tuple[int, Any]] = []
    nic = NIC(lambda delay, fn: pending.append((delay, fn)), bandwidth=8_000_000_000, latency=0)
    for vm in ("a", "b", "c"):
        nic.attach(vm, lambda packet: None)
    # VM a floods the queue before b and c send one packet each.
    for vm, count in (("a", 5), ("b", 1), ("c", 1)):
        for _ in range(count):
            nic.send(Packet(nic.vif(vm), WIRE, 1000, np.zeros(1, dtype=np.uint64)))
    while pending:
        pending.pop(0)[1]()
    # a1 went on the idle wire at once; then each VM with a packet waiting takes its turn.
    assert nic.wire_order == ["vif-a", "vif-a", "vif-b", "vif-c", "vif-a", "vif-a", "vif-a"]
    assert sorted(nic.graph.nodes) == ["br0", "eth0", "vif-a", "vif-b", "vif-c"]


def test_ring_net_copies_nothing_and_emulated_nic_copies_every_packet(plugins: PluginManager) -> None:
    data = scenario(
        [_vm("ring", {"name": "ring-net", "rx_rate": 5000}, write_ratio=0.5), _vm("emu", "emulated-nic", "full")],
        duration="200ms",
    )
    _, summary = simulate(data, plugins)
    ring, emu = summary["vms"]["ring"], summary["vms"]["emu"]
    for vm in (ring, emu):
        assert vm["net_packets_sent"] > 50, vm
        assert vm["net_packets_received"] > 50, vm
        assert vm["io_errors"] == 0
    assert ring["io_bytes_copied"] == 0
    assert ring["grant_maps"] >= ring["net_packets_sent"] + ring["net_packets_received"]
    assert emu["io_bytes_copied"] >= 4096 * emu["net_packets_sent"]
    assert emu["io_register_accesses"] > 8 * emu["io_completed"]


def test_the_bridge_carries_packets_between_vms_on_the_host(plugins: PluginManager) -> None:
    sender = _vm("a", {"name": "ring-net", "peer": "b", "rx_rate": 0}, write_ratio=1.0)
    receiver = _vm("b", {"name": "ring-net", "rx_rate": 0}, "hardware-assisted", write_ratio=0.0)
    sim, summary = simulate(scenario([sender, receiver], duration="100ms"), plugins)
    a, b = summary["vms"]["a"], summary["vms"]["b"]
    assert a["net_packets_sent"] > 100
    assert b["net_packets_received"] > 100
    assert b["net_bridge_bytes"] == 4096 * b["net_packets_received"]
    assert b["net_packets_received"] + b["net_rx_dropped"] <= a["net_packets_sent"]
    nic = sim.vms[0].devices["net"]
    assert isinstance(nic, RingNet)
    assert nic.nic.wire_packets == 0  # nothing went to the wire
    assert nic.nic.bridge_packets == a["net_packets_sent"]


def test_a_peer_without_a_net_device_is_an_error_not_a_crash(plugins: PluginManager) -> None:
    data = scenario([_vm("a", {"name": "ring-net", "peer": "ghost"}, write_ratio=1.0)], duration="20ms")
    _, summary = simulate(data, plugins)
    a = summary["vms"]["a"]
    assert a["io_errors"] == a["io_completed"] > 0
    assert a["net_packets_sent"] == 0


def test_page_flipping_exchanges_frames_and_conserves_them(plugins: PluginManager) -> None:
    vm = _vm("a", {"name": "ring-net", "rx_mode": "flip", "rx_rate": 5000}, "hardware-assisted", write_ratio=0.0)
    sim, summary = simulate(scenario([vm], duration="50ms"), plugins)
    a = summary["vms"]["a"]
    assert a["net_pages_flipped"] == a["net_packets_received"] > 100
    assert a["io_bytes_copied"] == 0
    nic = sim.vms[0].devices["net"]
    assert isinstance(nic, RingNet)
    ctx = nic.context
    ppns = nic.buffers.take(1)
    assert ppns is not None
    memory = sim.hypervisor.machine.memory
    ref = ctx.grants.grant(int(ppns[0]), ctx.backend_domid, readonly=False)
    before, in_use = int(sim.vms[0].p2m[ppns[0]]), memory.frames - memory.free_frames
    ctx.flip(ppns, np.array([7], dtype=np.uint64))
    after = int(sim.vms[0].p2m[ppns[0]])
    assert after != before  # another frame now backs the page...
    assert memory.content[after] == 7  # ...holding the data
    assert memory.frames - memory.free_frames == in_use  # and as many frames are in use
    ctx.grants.revoke(ref)


def test_a_hostile_netfront_gets_errors_and_reaches_no_page(plugins: PluginManager) -> None:
    sim, _ = simulate(scenario([_vm("a", "ring-net", "hardware-assisted")], duration="5ms"), plugins)
    dev = sim.vms[0].devices["net"]
    assert isinstance(dev, RingNet)
    io = sim.vms[0].io
    assert io is not None
    stranger = int(np.flatnonzero(io.grants.flags == 0)[0])  # a reference nobody granted
    front, back = dev.tx_front, dev.tx_back
    answered = back.rsp_prod_pvt
    for payload in ("rubbish", NetTx(4096, (stranger,)), NetTx(-1, ()), NetTx(4096, (0, 1))):
        slot = front.get_request(front.req_prod_pvt)
        slot.id, slot.payload = 90_000 + front.req_prod_pvt, payload
        front.req_prod_pvt += 1
    front.push_requests_and_check_notify()
    maps = io.grants.maps.copy()
    dev._kick()
    assert (back.rsp_prod_pvt - answered) % 2**32 == 4
    assert all(back.get_response(answered + i).payload.status == -1 for i in range(4))
    assert np.array_equal(io.grants.maps, maps), "a garbage slot left a grant mapped"
    dev.tx.req_prod = front.req_prod_pvt + 10**6
    dev._kick()
    assert dev.halted


def test_a_masked_channel_coalesces_the_back_ends_notifications(plugins: PluginManager) -> None:
    got = {}
    for poll in (0, 70):
        device = {"name": "ring-net", "rx_rate": 20_000, "rx_poll_us": poll}
        vm = _vm("rx", device, nbytes=1500, write_ratio=0.0, depth=8)
        got[poll] = simulate(scenario([vm], duration="50ms"), plugins)[1]["vms"]["rx"]
    assert got[0]["events_delivered"] == got[0]["events_sent"] > 500
    assert got[70]["net_packets_received"] > 500
    assert got[70]["events_delivered"] < got[70]["events_sent"] / 10
