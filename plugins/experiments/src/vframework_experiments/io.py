"""``io``: emulated against para-virtual (ring) devices under each virtualization mode.

Barham et al. (SOSP 2003, Xen) found para-virtual I/O close to native: Xen's split drivers
move requests through a shared ring, data by grants (DMA straight into guest pages), and
batch notifications, where a fully virtualized guest drives an emulated device register by
register, each access a trap to the monitor (or, in a hosted monitor, a switch to the host
OS and back), and the data are copied.

A hosted monitor (VMware Workstation's design) also switches to the host OS and back for every
device access. The same disk workload runs on one VM per configuration: 16 KiB requests, 60% reads, in
batches of ``depth`` (one and eight), a little computation between batches, on a fast disk (an
SSD: tens of microseconds per request) so that what the CPU spends per request shows in the
throughput. Configurations: bare metal with the ring device (the native baseline: a
doorbell write and DMA), ``emulated-disk`` under a hosted full-virtualization monitor, and
``emulated-disk`` and ``ring-block`` under full virtualization, para-virtualization and hardware
assist; at depth eight, ``ring-block`` also with its responses
batched (``notify = "batch"``: one event per batch instead of one per response). Reported per
request: guest CPU time, register accesses, traps, VM exits and hypercalls, bytes copied, grant
maps, and events sent and delivered. The network half sends 1,500-byte packets to the wire
through ``ring-net`` and ``emulated-nic`` in the same configurations (depth one). A third table
has a para-virtual guest receive 20,000 packets per second through ``ring-net``, taking each
event as it comes or, like a NAPI driver, masking its event channel after an upcall and
polling every 70 us: the back end's notifications then stay pending and coalesce, and far
fewer events are delivered than sent. The figures are simulated; the paper's are named as
such on the docs page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vframework import PluginManager, simulate
from vframework.api import ExperimentResult, experiment, pyplot

#: (label, mode, device, device parameters beyond the disk's); "hosted" runs on a hosted monitor.
CONFIGS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("native", "bare-metal", "ring-block", {}),
    ("hosted full/emulated", "full", "emulated-disk", {}),
    ("full/emulated", "full", "emulated-disk", {}),
    ("full/ring", "full", "ring-block", {}),
    ("pv/emulated", "paravirtual", "emulated-disk", {}),
    ("pv/ring", "paravirtual", "ring-block", {}),
    ("hw/emulated", "hardware-assisted", "emulated-disk", {}),
    ("hw/ring", "hardware-assisted", "ring-block", {}),
)
#: An SSD: short seeks, fast transfers.
DISK = {"seek_min": "20us", "seek_max": "200us", "bandwidth": "512MiB"}
DEPTHS = (1, 8)
NBYTES = 16 * 1024
#: The network half: (label, mode, device); every VM sends 1,500-byte packets to the wire.
NET_CONFIGS: tuple[tuple[str, str, str], ...] = (
    ("native", "bare-metal", "ring-net"),
    ("hosted full/emulated", "full", "emulated-nic"),
    ("full/emulated", "full", "emulated-nic"),
    ("full/ring", "full", "ring-net"),
    ("pv/ring", "paravirtual", "ring-net"),
    ("hw/emulated", "hardware-assisted", "emulated-nic"),
    ("hw/ring", "hardware-assisted", "ring-net"),
)
PACKET = 1500
#: Guest computation between batches, in us.
COMPUTE_US = 20


def _run(
    plugins: PluginManager,
    mode: str,
    workload: dict[str, Any],
    device: dict[str, Any],
    hosted: bool,
    quick: bool,
    name: str = "io",
) -> Any:
    """One VM on one CPU running the ``io`` workload on ``device``, natively or hosted."""
    scenario = {
        "name": name,
        "seed": 7,
        "duration": "300ms" if quick else "2s",
        "host": {"cpus": 1, "memory": "512MiB", "hypervisor_type": "hosted" if hosted else "native"},
        "vm": [
            {
                "name": "guest",
                "memory": "128MiB",
                "mode": mode,
                "workload": {"name": "io", "compute": f"{COMPUTE_US}us", **workload},
                "devices": [device],
            }
        ],
    }
    return simulate(plugins, scenario, "io")


def _net_row(label: str, sim: Any) -> dict[str, Any]:
    c = sim.vms[0].counters
    sent = max(c["net_packets_sent"], 1)
    seconds = sim.engine.now / 1e9
    return {
        "config": label,
        "packets_per_s": round(c["net_packets_sent"] / seconds),
        "io_cpu_us_per_packet": round(c["cpu_run_ns"] / sent / 1000 - COMPUTE_US, 2),
        "entries_per_packet": round((c["traps"] + c["vm_exits"] + c["hypercalls"] + c["bt_callouts"]) / sent, 2),
        "world_switches_per_packet": round(c["world_switches"] / sent, 2),
        "bytes_copied_per_packet": round(c["io_bytes_copied"] / max(c["io_requests"], 1)),
        "grant_maps_per_packet": round(c["grant_maps"] / sent, 2),
    }


def _row(label: str, depth: int, sim: Any) -> dict[str, Any]:
    c = sim.vms[0].counters
    done = max(c["io_completed"], 1)
    seconds = sim.engine.now / 1e9
    return {
        "config": label,
        "depth": depth,
        "requests_per_s": round(c["io_completed"] / seconds),
        "mb_per_s": round(c["io_completed"] * NBYTES / seconds / 1e6, 2),
        "cpu_us_per_request": round(c["cpu_run_ns"] / done / 1000, 2),
        # What the I/O path itself costs the guest: its CPU time less the computation.
        "io_cpu_us_per_request": round(c["cpu_run_ns"] / done / 1000 - COMPUTE_US / depth, 2),
        "world_switches_per_request": round(c["world_switches"] / done, 2),
        "register_accesses_per_request": round(c["io_register_accesses"] / done, 2),
        "traps_per_request": round(c["traps"] / done, 2),
        "vm_exits_per_request": round(c["vm_exits"] / done, 2),
        "hypercalls_per_request": round(c["hypercalls"] / done, 2),
        "bt_callouts_per_request": round(c["bt_callouts"] / done, 2),
        # Copied when submitted: per request submitted.
        "bytes_copied_per_request": round(c["io_bytes_copied"] / max(c["io_requests"], 1)),
        "grant_maps_per_request": round(c["grant_maps"] / done, 2),
        "events_sent": c["events_sent"],
        "events_delivered": c["events_delivered"],
        "io_completed": c["io_completed"],
    }


@experiment("io", "para-virtual ring devices run close to native; emulated devices trap and copy")
def io(plugins: PluginManager, quick: bool) -> ExperimentResult:
    result = ExperimentResult("io")
    rows: list[dict[str, Any]] = []
    for depth in DEPTHS:
        configs = list(CONFIGS)
        if depth > 1:
            configs += [("pv/ring batched", "paravirtual", "ring-block", {"notify": "batch"})]
        for label, mode, device, params in configs:
            workload = {"nbytes": NBYTES, "write_ratio": 0.4, "depth": depth}
            sim = _run(plugins, mode, workload, {"name": device, **DISK, **params}, label.startswith("hosted"), quick)
            rows.append(_row(label, depth, sim))
    result.tables["io"] = rows
    packets: dict[str, Any] = {"device": "net", "nbytes": PACKET, "write_ratio": 1.0}
    net = []
    for label, mode, device in NET_CONFIGS:
        nic = {"name": device, "rx_rate": 0}
        net.append(_net_row(label, _run(plugins, mode, packets, nic, label.startswith("hosted"), quick, "io-net")))
    result.tables["io-net"] = net
    events = []
    for label, poll in (("events as they come", 0), ("masked while polling every 70 us (NAPI)", 70)):
        receive: dict[str, Any] = {"device": "net", "nbytes": PACKET, "write_ratio": 0.0, "depth": 8}
        nic = {"name": "ring-net", "rx_rate": 20_000, "rx_poll_us": poll}
        sim = _run(plugins, "paravirtual", receive, nic, False, quick, "io-events")
        c = sim.vms[0].counters
        events.append(
            {
                "config": label,
                "packets_received": c["net_packets_received"],
                "packets_dropped": c["net_rx_dropped"],
                "events_sent": c["events_sent"],
                "events_delivered": c["events_delivered"],
                "cpu_us_per_packet": round(c["cpu_run_ns"] / max(c["net_packets_received"], 1) / 1000, 2),
            }
        )
    result.tables["io-events"] = events
    plain, polled = events
    result.checks["masking_coalesces_events"] = (
        plain["events_delivered"] == plain["events_sent"] and polled["events_delivered"] < polled["events_sent"],
        f"events sent/delivered: {plain['events_sent']}/{plain['events_delivered']} as they come, "
        f"{polled['events_sent']}/{polled['events_delivered']} masked while polling",
    )
    wire = {r["config"]: r for r in net}
    result.checks["ring_net_close_to_native_and_emulated_behind"] = (
        wire["pv/ring"]["packets_per_s"] >= 0.9 * wire["native"]["packets_per_s"]
        and all(
            wire[k]["packets_per_s"] < wire["pv/ring"]["packets_per_s"] for k in ("hosted full/emulated", "hw/emulated")
        )
        and all(r["bytes_copied_per_packet"] == 0 for r in net if "ring" in r["config"] or r["config"] == "native"),
        ", ".join(f"{r['config']} {r['packets_per_s']} packets/s" for r in net),
    )
    by = {(r["config"], r["depth"]): r for r in rows}
    native = by[("native", 1)]["requests_per_s"]
    for label in ("hosted full/emulated", "full/emulated", "pv/ring", "hw/emulated", "hw/ring"):
        result.figures[f"{label} vs native (depth 1)"] = round(by[(label, 1)]["requests_per_s"] / native, 3)
    ring = by[("pv/ring", 1)]
    result.checks["ring_close_to_native"] = (
        ring["requests_per_s"] >= 0.9 * native,
        f"pv/ring {ring['requests_per_s']} requests/s, native {native}",
    )
    behind = [by[(label, 1)] for label in ("hosted full/emulated", "full/emulated", "hw/emulated")]
    result.checks["emulated_far_behind"] = (
        all(
            r["requests_per_s"] < ring["requests_per_s"]
            and r["io_cpu_us_per_request"] > 2 * ring["io_cpu_us_per_request"]
            for r in behind
        ),
        "; ".join(f"{r['config']} {r['requests_per_s']} requests/s, {r['io_cpu_us_per_request']} us" for r in behind)
        + f"; pv/ring {ring['requests_per_s']}, {ring['io_cpu_us_per_request']} us of I/O CPU per request",
    )
    result.checks["ring_devices_copy_nothing"] = (
        all(r["bytes_copied_per_request"] == 0 for r in rows if "ring" in r["config"] or r["config"] == "native"),
        "bytes copied per request by ring devices: "
        + ", ".join(str(r["bytes_copied_per_request"]) for r in rows if "ring" in r["config"]),
    )
    plain, batched = by[("pv/ring", DEPTHS[-1])], by[("pv/ring batched", DEPTHS[-1])]
    result.checks["batching_cuts_events"] = (
        batched["events_sent"] * 2 < plain["events_sent"] * batched["io_completed"] / max(plain["io_completed"], 1),
        f"events per request: {plain['events_sent'] / max(plain['io_completed'], 1):.2f} one by one, "
        f"{batched['events_sent'] / max(batched['io_completed'], 1):.2f} batched",
    )
    result.plots["io.png"] = lambda path: _plot(rows, path)
    return result


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    first = [r for r in rows if r["depth"] == DEPTHS[0]]
    labels = [r["config"] for r in first]
    native = first[0]["requests_per_s"]
    left.bar(labels, [r["requests_per_s"] / native for r in first])
    left.set_ylabel("throughput relative to native")
    left.set_title("16 KiB requests, depth 1")
    left.tick_params(axis="x", rotation=45)
    right.bar(labels, [r["io_cpu_us_per_request"] for r in first])
    right.set_ylabel("guest CPU of the I/O path per request (us)")
    right.set_title("CPU cost of a request")
    right.tick_params(axis="x", rotation=45)
    fig.suptitle("Emulated vs para-virtual block I/O (cf. Barham et al. 2003)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
