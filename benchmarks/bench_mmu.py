"""The batch translation path, against a plain numpy gather; and host memory per guest page.

The model: one VM of 1 GiB (262,144 guest pages) on a host with room for it, one guest
process whose address space covers 90% of it (235,929 pages), every page faulted in
beforehand (not timed). The timed stream: 10,000,000 reads of uniformly random VPNs (1M with
``--quick``), drawn beforehand from a fixed seed, in batches. Each batch goes through
:meth:`vframework.guest.os.GuestOS.touch` -- the path a workload's ``Touch`` takes: presence and
copy-on-write checks, hidden-fault check against the P2M, then the mode's ``translate`` (shadow
or nested or native walk, the per-CPU TLB, counters).

Rows ``mmu.translate`` per mode and batch size: accesses per wall second, against

* ``gather (same batches)``: ``p2m[page_table[vpns]]`` over the same arrays, batch by batch;
* ``gather (whole stream)``: the same two-step gather over the whole stream in one call: the
  practical limit of numpy on this machine.

The batch sizes are 256 (the ``memory`` workload's default ``batch``) and 65,536.

Row ``mmu.rss``: host RSS growth (``/proc/self/statm``) per guest page when a 1 GiB guest is
built and fully faulted in under ``bare-metal`` and ``full`` (shadow tables add a VPN->MPN table
per process), in bytes per page. Its baseline is the goal of 32 bytes per page, a constant;
lower is better here (``"better": "lower"``), so its ratio is goal / value: above 1 meets the goal.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from common import best_of_interleaved, row

from vframework.api.manager import PluginManager
from vframework.guest.os import GuestOS
from vframework.hv.hypervisor import Hypervisor
from vframework.hv.vm import VM
from vframework.machine.hardware import Machine
from vframework.sim.engine import Engine
from vframework.sim.units import PAGE_SIZE
from vframework.testing.doubles import FifoScheduler, FixedPolicy

GUEST_BYTES = 1 << 30
#: Runs smaller than this (the smoke test) use a small guest.
FULL_SIZE = 1_000_000
SMOKE_GUEST_BYTES = 16 << 20
DEFAULT_SIZE = 10_000_000
SMOKE_SIZE = 20_000
BATCHES = (256, 65_536)
MODES = ("bare-metal", "full", "hardware-assisted", "paravirtual")
RSS_GOAL = 32.0


def build(mode_cls: type, guest_bytes: int = GUEST_BYTES) -> tuple[Any, Any, Any, Any]:
    """A faulted-in guest: ``(guest OS, vCPU, process, VM)``."""
    pages = guest_bytes // PAGE_SIZE
    hv = Hypervisor(
        Engine(seed=0),
        Machine(1, guest_bytes + 64 * PAGE_SIZE * 1024),
        FifoScheduler(None, 1),
        FixedPolicy(None),
        arch=mode_cls.architectures[0],
    )
    vm = VM(0, "bench", 1, pages)
    hv.attach_mode(vm, mode_cls, mode_cls.params_model())
    vm.guest = GuestOS(vm, hv)
    hv.add_vm(vm)
    proc = vm.guest.spawn(None, pages * 9 // 10)
    vcpu = vm.vcpus[0]
    vcpu.process = proc
    vm.guest.switch_to(vcpu, proc)
    step = 65_536
    for start in range(0, proc.page_table.size, step):
        vpns = np.arange(start, min(start + step, proc.page_table.size), dtype=np.int64)
        vm.guest.touch(vcpu, proc, vpns, True)
    return vm.guest, vcpu, proc, vm


def _stream(size: int, pages: int) -> np.ndarray:
    return np.random.default_rng(5).integers(0, pages, size=size, dtype=np.int64)


def _measure(built: tuple[Any, Any, Any, Any], stream: np.ndarray, batch: int, repeat: int) -> dict[str, float]:
    guest, vcpu, proc, vm = built
    chunks = [stream[i : i + batch] for i in range(0, stream.size, batch)]
    table, p2m = proc.page_table, vm.p2m

    def translate() -> None:
        for vpns in chunks:
            guest.touch(vcpu, proc, vpns, False)

    def gather() -> None:
        for vpns in chunks:
            p2m[table[vpns]]

    def whole() -> None:
        p2m[table[stream]]

    return best_of_interleaved(
        {"translate": lambda: translate, "gather": lambda: gather, "whole": lambda: whole}, repeat
    )


def run(quick: bool = False, size: int | None = None, repeat: int | None = None) -> list[dict[str, Any]]:
    size = size or (DEFAULT_SIZE // 10 if quick else DEFAULT_SIZE)
    repeat = repeat or 3
    plugins = PluginManager()
    installed = [m for m in MODES if m in plugins.components["mode"]]
    guest_bytes = GUEST_BYTES if size >= FULL_SIZE else SMOKE_GUEST_BYTES
    rows: list[dict[str, Any]] = []
    for mode in installed:
        built = build(plugins.get("mode", mode), guest_bytes)
        stream = _stream(size, built[2].page_table.size)
        for batch in BATCHES:
            best = _measure(built, stream, batch, repeat)
            value = size / best["translate"]
            extra = {"mode": mode, "batch": batch, "accesses": size, "guest_pages": built[3].memory_pages}
            rows.append(
                row(
                    "mmu.translate",
                    f"{mode}, batch {batch}",
                    value,
                    "accesses/s",
                    size / best["gather"],
                    "gather (same batches)",
                    **extra,
                )
            )
            rows.append(
                row(
                    "mmu.translate",
                    f"{mode}, batch {batch}",
                    value,
                    "accesses/s",
                    size / best["whole"],
                    "gather (whole stream)",
                    **extra,
                )
            )
        del built
        gc.collect()
    for mode in ("bare-metal", "full"):
        if mode in installed:
            per_page = rss_per_page(mode, guest_bytes)
            rows.append(
                row(
                    "mmu.rss",
                    mode,
                    per_page,
                    "bytes/page",
                    RSS_GOAL,
                    "goal",
                    lower_is_better=True,
                    guest_pages=guest_bytes // PAGE_SIZE,
                )
            )
    return rows


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _trim() -> None:
    """Give the C heap's free memory back to the OS (glibc), so RSS counts live data only:
    numpy's temporaries of the fault-in loop are freed, but their heap pages stay resident."""
    # Not glibc: the figure then includes the heap's free pages.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _child(mode: str, guest_bytes: int) -> None:
    plugins = PluginManager()
    mode_cls = plugins.get("mode", mode)
    build(mode_cls, 1 << 20)  # import and warm everything a guest needs before measuring
    gc.collect()
    _trim()
    before = _rss_bytes()
    built = build(mode_cls, guest_bytes)
    gc.collect()
    _trim()
    print(_rss_bytes() - before)
    del built


def rss_per_page(mode: str, guest_bytes: int) -> float:
    """Host RSS growth per guest page from building and faulting in one guest, measured in a
    fresh interpreter (a process's RSS does not shrink when it frees memory, so a second guest
    built in the same process would reuse the first one's pages)."""
    code = f"import bench_mmu; bench_mmu._child({mode!r}, {guest_bytes})"
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH", "")])
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return int(out.stdout.split()[-1]) / (guest_bytes // PAGE_SIZE)
