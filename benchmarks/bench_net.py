"""Packets per second through ``ring-net`` with 10 VMs, against the host NIC model alone.

The model: 10 para-virtual VMs on 4 CPUs, each with a ``ring-net`` device, running the ``io``
workload on ``net``: 10 us of computation, then a 1,500-byte packet sent to the wire or a
receive posted (half and half), while packets arrive from outside at 2,000 per second per VM.
Every packet goes through the guest's driver, the TX or RX ring, grants, the event channel,
the back end and the host's round-robin NIC, in a full simulation (building it is not timed).

Baseline: the same number of packets pushed through the host's NIC model alone (the
``vframework_devices.net.NIC`` with an engine, 10 interfaces sending in turn), with no guest,
ring or grant: what the simulated path costs per packet over the least the NIC itself needs.

Row ``net.packets``: packets (sent + received) per wall second; baseline: the NIC alone's.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from common import row
from vframework_devices.net import NIC, WIRE, Packet

from vframework import Engine, PluginManager, Simulation
from vframework.run.scenario import parse_scenario

DEFAULT_SIZE = 200  # simulated ms
SMOKE_SIZE = 5
VMS = 10


def _scenario(ms: int) -> dict[str, Any]:
    vm = {
        "memory": "64MiB",
        "mode": "paravirtual",
        "workload": {"name": "io", "device": "net", "nbytes": 1500, "write_ratio": 0.5, "compute": "10us"},
        "devices": [{"name": "ring-net", "rx_rate": 2000}],
    }
    return {
        "name": "bench-net",
        "seed": 1,
        "duration": f"{ms}ms",
        "host": {"cpus": 4, "memory": "2GiB"},
        "vm": [{**vm, "name": f"vm{i}"} for i in range(VMS)],
    }


def _simulated(ms: int, plugins: PluginManager) -> tuple[int, float]:
    sim = Simulation(parse_scenario(_scenario(ms), "bench-net", plugins), plugins)
    start = time.perf_counter()
    sim.run()
    wall = time.perf_counter() - start
    packets = sum(vm.counters["net_packets_sent"] + vm.counters["net_packets_received"] for vm in sim.vms)
    return packets, wall


def _nic_alone(packets: int) -> float:
    engine = Engine(seed=0)

    def after(delay: int, fn: Any) -> None:
        engine.schedule(delay, lambda _: fn())

    nic = NIC(after, 1_000_000_000, 50_000)
    vifs = [nic.attach(f"vm{i}", lambda packet: None) for i in range(VMS)]
    tokens = np.zeros(1, dtype=np.uint64)
    start = time.perf_counter()
    for i in range(packets):
        nic.send(Packet(vifs[i % VMS], WIRE, 1500, tokens))
    engine.run()
    return time.perf_counter() - start


def run(quick: bool = False, size: int | None = None, repeat: int | None = None) -> list[dict[str, Any]]:
    ms = size or (DEFAULT_SIZE // 4 if quick else DEFAULT_SIZE)
    plugins = PluginManager()
    best: tuple[int, float] | None = None
    for _ in range(max(1, repeat or 3)):
        packets, wall = _simulated(ms, plugins)
        if best is None or wall < best[1]:
            best = (packets, wall)
    assert best is not None
    packets, wall = best
    alone = min(_nic_alone(packets) for _ in range(max(1, repeat or 3)))
    return [
        row(
            "net.packets",
            f"ring-net, {VMS} VMs",
            packets / wall,
            "packets/s",
            packets / alone,
            "the NIC model alone",
            packets=packets,
        )
    ]
