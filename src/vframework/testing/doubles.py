"""Minimal stand-ins for the kinds a property is *not* about, so each kind is checked alone.

They are test doubles, not plugins: the kit must run with no plugin installed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator, Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st

from vframework.api.contract import MemoryPolicy, Mode, Scheduler, Workload
from vframework.api.params import Params
from vframework.api.views import MemoryContext, VCPUView
from vframework.guest.ops import Compute, Operation, Sleep, Touch
from vframework.machine.cpu import Action
from vframework.machine.isa import ORDINARY, Op

__all__ = ["FifoScheduler", "FixedPolicy", "FlatMode", "Native", "ScriptWorkload"]


class FifoScheduler(Scheduler[Params]):
    """First come, first served, fixed slice."""

    name = "kit-fifo"
    slice_ns = 1_000

    # params: the double ignores its parameters (the kit passes None).
    def __init__(self, params: Any = None, cpus: int = 1) -> None:
        super().__init__(params, cpus)
        self.queue: deque[VCPUView] = deque()

    def attach(self, vcpu: VCPUView, vm_params: Params | None) -> None:
        pass

    def detach(self, vcpu: VCPUView) -> None:
        if vcpu in self.queue:
            self.queue.remove(vcpu)

    def wake(self, vcpu: VCPUView, now: int) -> Sequence[int]:
        self.queue.append(vcpu)
        return ()

    def block(self, vcpu: VCPUView, now: int) -> None:
        self.detach(vcpu)

    def pick(self, cpu: int, now: int) -> tuple[VCPUView | None, int]:
        return (self.queue.popleft(), self.slice_ns) if self.queue else (None, 0)

    def charge(self, vcpu: VCPUView, ran_ns: int, now: int, runnable: bool) -> None:
        if runnable:
            self.queue.append(vcpu)


class FixedPolicy(MemoryPolicy[Params]):
    """Every VM's target is its configured memory."""

    name = "kit-fixed"

    # params: the double ignores its parameters (the kit passes None).
    def __init__(self, params: Any = None) -> None:
        super().__init__(params)

    def targets(self, memory: MemoryContext, now: int) -> dict[int, int]:
        return {vm.id: vm.memory_pages for vm in memory.vms}


class FlatMode(Mode[Params]):
    """Every guest operation costs a fixed 10 cycles; frames are backed on first touch."""

    name = "kit-flat"

    def classify(self, op: int, kernel: bool) -> Action:
        if op == Op.HYPERCALL or (not kernel and op not in ORDINARY):
            return Action.FAULT
        return Action.DIRECT

    def deliver(self, vcpu: VCPUView, kind: str, count: int) -> int:
        return 10 * count

    def hidden_fault(self, vcpu: VCPUView, count: int) -> int:
        return 10 * count

    def io(self, vcpu: VCPUView, device: str, nbytes: int, write: bool) -> int:
        return 10


class ScriptWorkload(Workload[Params]):
    """Plays a fixed list of operations (drawn by Hypothesis)."""

    name = "kit-script"

    def __init__(self, script: Sequence[Operation], pages: int) -> None:
        self.script = script
        self.pages = pages

    def address_space_pages(self) -> int:
        return self.pages

    def run(self) -> Generator[Operation, None, None]:
        yield from self.script


def script_strategy(pages: int) -> st.SearchStrategy[list[Compute | Sleep | Touch]]:
    """Hypothesis strategy for short operation scripts over ``pages`` virtual pages."""
    compute = st.integers(1, 20_000).map(Compute)
    sleep = st.integers(1, 20_000).map(Sleep)
    touch = st.tuples(st.lists(st.integers(0, pages - 1), min_size=1, max_size=8), st.booleans()).map(
        lambda t: Touch(np.array(t[0], dtype=np.int64), t[1])
    )
    return st.lists(st.one_of(compute, sleep, touch), min_size=1, max_size=12)


class Native(Mode[Params]):
    """The bare-metal reference for equivalence: every instruction at its true privilege."""

    name = "kit-native"
    preallocate = True
    baseline = True

    def classify(self, op: int, kernel: bool) -> Action:
        if op == Op.HYPERCALL:
            return Action.FAULT
        if kernel or op in ORDINARY:
            return Action.DIRECT
        if op in self.arch.privileged:
            return Action.FAULT  # privileged at user level: general protection fault
        return Action.DEPRIVILEGED if op == Op.POPF else Action.DIRECT

    def deliver(self, vcpu: VCPUView, kind: str, count: int) -> int:
        return count

    def hidden_fault(self, vcpu: VCPUView, count: int) -> int:
        return count

    def io(self, vcpu: VCPUView, device: str, nbytes: int, write: bool) -> int:
        return 0
