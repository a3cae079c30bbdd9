"""Content-based page sharing: how fast each sharing service scans simulated memory.

The model: 8 VMs booted from one image, each with all of its memory backed (``size`` pages per
VM: 65,536, i.e. 256 MiB; 16,384 with ``--quick``), holding image pages (60%, the same in every
VM), zero pages (5%) and private data (the rest). Each timed pass runs a service until it has
examined every page of every VM twice (KSM needs two visits to merge a page); the rate is
pages examined per wall second.

Rows ``sharing.scan`` per service, against

* ``xxhash (4 KiB pages)``: raw xxhash64 over the 4 KiB each content token stands for, page by
  page, for the same number of pages: what a scanner hashing real bytes would pay;
* ``KSM default rate x 200``: a constant, 1,000,000 pages per second: KSM's default real-time
  rate (100 pages every 20 ms, 5,000 per second) times 200, so that a simulated full scan of a
  64 GiB host takes under a minute. Above 1 meets that goal.

Row ``sharing.rss`` per service: what the host costs in resident memory per simulated frame,
sharing on: in a fresh process, the RSS after building the host and scanning every page twice,
less the RSS once everything is imported and a small host (512 pages per VM) was built and
scanned the same way (what that brings in, numpy's code pages above all, is a fixed cost, not
a per-frame one), over the host's frames (the hypervisor's
per-frame and per-page arrays and the service's tables; no guest OS, whose page tables are per
guest page). Baseline: the goal, 48 bytes per frame (lower is better). Two variants: ``one
wake-up per pass`` scans the whole host in each call of the service, as the timed passes do, so
the scan's temporary arrays are as large as the host and the allocator keeps much of what they
used; ``wake-ups of 8,192 pages`` scans the same pages in calls of at most :data:`BOUNDED`
pages (still 82 times KSM's default ``pages_to_scan``), as a service runs in a simulation,
where temporaries are bounded by the wake-up, not the host.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xxhash
from common import best_of_interleaved, in_child, installed, row

from vframework.guest.mm import ContentLayout, name_seed
from vframework.hv.hypervisor import Hypervisor
from vframework.hv.vm import VM
from vframework.machine.hardware import Machine, page_bytes
from vframework.sim.engine import Engine
from vframework.sim.units import PAGE_SIZE
from vframework.testing.doubles import FifoScheduler, FixedPolicy, FlatMode

VMS = 8
DEFAULT_SIZE = 65_536
QUICK_SIZE = 16_384
SMOKE_SIZE = 512
GOAL_PAGES_PER_S = 200 * 5_000
RSS_GOAL_BYTES_PER_FRAME = 48
#: Pages per VM of the warm-up host the RSS rows scan before they measure.
WARM_UP_SIZE = 512
#: Pages per wake-up of the bounded RSS variant.
BOUNDED = 8_192
#: Pages hashed for the xxhash baseline (it is a per-page rate; more adds nothing).
XXHASH_PAGES = 20_000


def build(pages: int) -> Hypervisor:
    """A host with ``VMS`` VMs of ``pages`` backed pages each, contents filled."""
    hv = Hypervisor(
        Engine(0), Machine(1, (VMS * pages + 64) * PAGE_SIZE), FifoScheduler(None, 1), FixedPolicy(None), []
    )
    layout = ContentLayout(image=pages * 6 // 10, zero=pages // 20)
    image = name_seed("linux-2.4")
    for i in range(VMS):
        vm = VM(i, f"vm{i}", 1, pages, image="linux-2.4")
        hv.attach_mode(vm, FlatMode, FlatMode.params_model())
        hv.add_vm(vm)
        hv.back_pages(vm, np.arange(pages))
        tokens = layout.fill(np.arange(pages, dtype=np.int64), image, name_seed(vm.name))
        private = np.arange(pages) >= layout.volatile_start  # the rest: private data
        tokens[private] = np.arange(int(private.sum()), dtype=np.uint64) + np.uint64(i << 40) + np.uint64(1)
        hv.machine.memory.content[vm.p2m] = tokens
    return hv


def _service(name: str, pages: int, per_wakeup: int | None = None) -> Any:
    """The service, scanning the whole host per call, or ``per_wakeup`` pages."""
    cls = installed("memory_service", "esx-sharing")[name]
    wakeup = per_wakeup or VMS * pages
    if name == "esx-sharing":
        # A period's candidates: each VM's pages x period / scan_time, at most max_rate per s.
        return cls(cls.params_model(scan_time=10**9 * VMS * pages // wakeup, max_rate=10**12))
    return cls(cls.params_model(pages_to_scan=wakeup))


def _scan(name: str, pages: int, per_wakeup: int | None = None) -> tuple[Callable[[], None], dict[str, int]]:
    """Setup for one timed pass: a fresh host and service; the pass runs it until every page was
    examined twice."""
    hv = build(pages)
    service = _service(name, pages, per_wakeup)
    want = 2 * VMS * pages

    def body() -> None:
        while hv.counters["pages_scanned"] < want:
            service.run(hv.memory, 0)

    return body, hv.counters


def _xxhash(count: int) -> Callable[[], None]:
    tokens = np.random.default_rng(1).integers(1, 1 << 62, size=count, dtype=np.int64)
    pages = [page_bytes(int(t)) for t in tokens]  # materialized beforehand: not timed

    def body() -> None:
        for data in pages:
            xxhash.xxh64_intdigest(data)

    return body


def _rss_child(name: str, pages: int, per_wakeup: int | None = None) -> None:
    """In a fresh process: RSS after imports, then peak RSS after building and scanning."""
    import resource  # noqa: PLC0415  (child side only)

    def resident() -> int:
        # Linux: resident pages of this process now (statm's second field).
        return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()

    installed("memory_service", "esx-sharing")  # import everything first: not the host's cost
    # A warm-up scan of a small host first: the code pages it brings in (numpy's, about 2 MB)
    # are a fixed cost, not a per-frame one, and would weigh on a small host's figure.
    warm, _ = _scan(name, WARM_UP_SIZE, per_wakeup)
    warm()
    del warm
    before = resident()
    body, _ = _scan(name, pages, per_wakeup)
    body()
    print(json.dumps({"before": before, "after": resident(), "frames": VMS * pages + 64}))


def rss_per_frame(name: str, pages: int, per_wakeup: int | None = None) -> float:
    """Bytes of resident memory per simulated frame, the host built and scanned twice."""
    got = in_child("bench_sharing", f"_rss_child({name!r}, {pages}, {per_wakeup})", f"RSS run of {name}")
    return float(got["after"] - got["before"]) / got["frames"]


def run(quick: bool = False, size: int | None = None, repeat: int | None = None) -> list[dict[str, Any]]:
    """Rows ``sharing.scan`` for every installed sharing service (``esx-sharing``, ``ksm``)."""
    pages = size or (QUICK_SIZE if quick else DEFAULT_SIZE)
    repeat = repeat or 3
    names = [n for n in ("esx-sharing", "ksm") if n in installed("memory_service", "esx-sharing")]
    scanned: dict[str, int] = {}

    def setup(name: str) -> Any:
        def make() -> Any:
            body, counters = _scan(name, pages)

            def timed_body() -> None:
                body()
                scanned[name] = counters["pages_scanned"]

            return timed_body

        return make

    hashed = min(XXHASH_PAGES, 2 * VMS * pages)
    setups = {name: setup(name) for name in names}
    setups["xxhash"] = lambda: _xxhash(hashed)
    best = best_of_interleaved(setups, repeat)
    xxhash_rate = hashed / best["xxhash"]
    rows = []
    shape = {"vms": VMS, "pages_per_vm": pages}
    for name in names:
        rate = scanned[name] / best[name]
        rows.append(row("sharing.scan", name, rate, "pages/s", xxhash_rate, "xxhash (4 KiB pages)", **shape))
        rows.append(row("sharing.scan", name, rate, "pages/s", GOAL_PAGES_PER_S, "KSM default rate x 200", **shape))
    for name in names if pages >= QUICK_SIZE else ():  # smaller hosts are lost in the noise
        for label, per_wakeup in (("one wake-up per pass", None), (f"wake-ups of {BOUNDED:,} pages", BOUNDED)):
            per_frame = rss_per_frame(name, pages, per_wakeup)
            variant = f"{name}, {label}"
            goal = RSS_GOAL_BYTES_PER_FRAME
            rows.append(row("sharing.rss", variant, per_frame, "B/frame", goal, "goal", True, **shape))
    return rows
