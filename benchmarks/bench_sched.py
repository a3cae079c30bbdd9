"""Scheduling decisions per second: every installed scheduler against ``fair``, measured alike.

The model: 1,000 vCPUs in 250 VMs (1 to 7 vCPUs each, shares/weights drawn from 1:2:4:8 where
the scheduler has a share parameter) on 64 physical CPUs. A driver loop plays the hypervisor's
part, without guests: the CPU whose slice ends first charges its vCPU (the whole slice, or a
shorter stay after which the vCPU blocks, one stay in five) and picks the next; blocked vCPUs
wake 1 ms later and idle CPUs then pick; the scheduler's tick runs every ``tick_ns``. The same
pre-drawn random choices drive every scheduler. A *decision* is one ``pick`` that returns a
vCPU. Preemption requests returned by ``wake`` and ``tick`` are not acted on (the slice runs
out): the benchmark measures the scheduler's data structures, not the dispatch policy.

Row ``sched.decisions`` per scheduler: decisions per wall second; baseline ``fair`` in the same
run (its own row has ratio 1).
"""

from __future__ import annotations

import heapq
from types import SimpleNamespace
from typing import Any

import numpy as np
from common import best_of_interleaved, installed, row

from vframework.hv.vm import VCPU

#: Decisions per measurement (quick: a tenth).
DEFAULT_SIZE = 200_000
SMOKE_SIZE = 2_000
CPUS = 64
VCPUS = 1_000
WAKE_DELAY_NS = 1_000_000


def _build(cls: type, seed: int = 7) -> tuple[Any, list[VCPU]]:
    rng = np.random.default_rng(seed)
    scheduler = cls(cls.params_model(), CPUS) if cls.params_model is not None else cls(None, CPUS)
    vcpus: list[VCPU] = []
    vm_id = 0
    while len(vcpus) < VCPUS:
        n = min(int(rng.integers(1, 8)), VCPUS - len(vcpus))
        # The scheduler sees a vCPU's VM only through its id, name and vCPU list.
        vm = SimpleNamespace(id=vm_id, name=f"vm{vm_id}", vcpus=[])
        vm.vcpus = [VCPU(vm, i) for i in range(n)]  # type: ignore[arg-type]
        share = int(rng.choice([1, 2, 4, 8]))
        params = None
        if cls.vm_params_model is not None:
            values = {cls.share_param: share * 256} if cls.share_param else {}
            params = cls.vm_params_model(**values)
        for v in vm.vcpus:
            scheduler.attach(v, params)
        vcpus.extend(vm.vcpus)
        vm_id += 1
    return scheduler, vcpus


#: One charge in five is a partial slice after which the vCPU blocks.
BLOCK_PROBABILITY = 0.2


def decisions(cls: type, size: int) -> Any:
    """Setup for one measurement: returns the timed body, which makes ``size`` decisions."""
    scheduler, vcpus = _build(cls)
    rng = np.random.default_rng(11)
    blocks = (rng.random(size * 2) < BLOCK_PROBABILITY).tolist()
    fractions = rng.integers(1, 100, size * 2).tolist()
    tick_ns = scheduler.tick_ns

    def body() -> int:
        now = 0
        for v in vcpus:
            scheduler.wake(v, now)
        ends: list[tuple[int, int, Any, int]] = []  # (slice end, cpu, vCPU, slice)
        idle: list[int] = []
        sleepers: list[tuple[int, int, Any]] = []  # (wake time, seq, vCPU)
        for cpu in range(CPUS):
            v, s = scheduler.pick(cpu, now)
            if v is None:
                idle.append(cpu)
            else:
                heapq.heappush(ends, (now + s, cpu, v, s))
        next_tick = tick_ns or None
        made = 0
        seq = 0
        while made < size:
            when = ends[0][0] if ends else None
            if sleepers and (when is None or sleepers[0][0] < when):
                now, _, v = heapq.heappop(sleepers)
                scheduler.wake(v, now)
                while idle:
                    cpu = idle.pop()
                    nv, s = scheduler.pick(cpu, now)
                    if nv is None:
                        idle.append(cpu)
                        break
                    heapq.heappush(ends, (now + s, cpu, nv, s))
                    made += 1
                continue
            if next_tick is not None and (when is None or next_tick < when):
                now = next_tick
                scheduler.tick(now)
                next_tick += tick_ns
                continue
            now, cpu, v, s = heapq.heappop(ends)
            if blocks[seq]:
                ran = max(1, s * fractions[seq] // 100)
                scheduler.charge(v, ran, now - s + ran, False)
                heapq.heappush(sleepers, (now + WAKE_DELAY_NS, seq, v))
            else:
                scheduler.charge(v, s, now, True)
            seq += 1
            nv, ns = scheduler.pick(cpu, now)
            if nv is None:
                idle.append(cpu)
            else:
                heapq.heappush(ends, (now + ns, cpu, nv, ns))
                made += 1
        return made

    return body


def run(quick: bool = False, size: int | None = None, repeat: int | None = None) -> list[dict[str, Any]]:
    """One ``sched.decisions`` row per installed scheduler, each against ``fair``."""
    size = size or (DEFAULT_SIZE // 10 if quick else DEFAULT_SIZE)
    repeat = repeat or 3
    classes = installed("scheduler", "fair")
    names = list(classes)
    best = best_of_interleaved({name: (lambda c=cls: decisions(c, size)) for name, cls in classes.items()}, repeat)
    base = size / best["fair"]
    return [
        row(
            "sched.decisions",
            name,
            size / best[name],
            "decisions/s",
            base,
            "fair",
            cpus=CPUS,
            vcpus=VCPUS,
            decisions=size,
        )
        for name in names
    ]
