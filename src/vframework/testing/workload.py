"""State machine for workloads: well-formed operations, inside the address space, deterministic."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from vframework.api.contract import Workload
from vframework.api.params import Params
from vframework.api.views import WorkloadContext
from vframework.guest.ops import (
    IO,
    Compute,
    Fault,
    ForkExec,
    ForkWait,
    KernelCall,
    MapUnmap,
    Operation,
    Sleep,
    Syscall,
    Touch,
)

__all__ = ["WorkloadMachine"]


class WorkloadMachine(RuleBasedStateMachine):
    """Two instances of the workload with the same seed yield the same operations, and every
    operation is well-formed: positive cycles and durations, VPNs inside the address space."""

    #: The workload under test, set by :meth:`for_component` (None on this unparametrized base).
    workload_cls: Any = None

    @classmethod
    def for_component(cls, workload_cls: type[Workload[Params]]) -> type[WorkloadMachine]:
        return type(f"{cls.__name__}[{workload_cls.name}]", (cls,), {"workload_cls": workload_cls})

    @initialize(seed=st.integers(0, 2**32 - 1), pages=st.sampled_from([64, 1024, 65536]))
    def start(self, seed: int, pages: int) -> None:
        params = self.workload_cls.params_model()
        self.pages = pages
        if self.workload_cls.check(params, pages):
            params = None  # defaults do not fit this VM size: nothing to run
        self.gens = []
        self.space = 0
        if params is None:
            return
        for _ in range(2):
            ctx = WorkloadContext("vm", 0, pages, np.random.default_rng(seed))
            w = self.workload_cls(params, ctx)
            self.space = w.address_space_pages()
            self.gens.append(w.run())
        self.done = False

    @rule(steps=st.integers(1, 20))
    def advance(self, steps: int) -> None:
        if not self.gens or self.done:
            return
        for _ in range(steps):
            a, b = (next(g, None) for g in self.gens)
            assert _same(a, b), f"same seed, different operations: {a!r} vs {b!r}"
            if a is None:
                self.done = True
                return
            self._check(a)

    def _check(self, op: Operation) -> None:
        assert isinstance(op, Operation), f"yielded {op!r}, not an Operation"
        if isinstance(op, Compute):
            assert op.cycles > 0, op
        elif isinstance(op, Sleep):
            assert op.ns > 0, op
        elif isinstance(op, Touch):
            assert op.vpns.dtype.kind == "i", f"{op}: VPNs must be integers"
            assert op.vpns.size > 0, f"{op}: touches no page"
            assert int(op.vpns.min()) >= 0, f"{op}: negative VPN {int(op.vpns.min())}"
            assert int(op.vpns.max()) < self.space, f"{op}: VPN {int(op.vpns.max())} outside the address space"
        elif isinstance(op, IO):
            assert op.nbytes > 0, op
        elif isinstance(op, KernelCall):
            assert op.count >= 1, op
        elif isinstance(op, MapUnmap):
            assert op.start + op.pages <= self.space, f"{op!r}: the mapping ends outside the address space"
        elif isinstance(op, ForkExec):
            assert min(op.programs) >= 1, f"{op!r}: a program of no page"
        elif isinstance(op, ForkWait):
            assert 0 <= op.touch <= max(self.space, 1) * 2, f"{op!r} touches more pages than the process has"
        else:
            # Operations validate their own fields when built (Fault checks its vector).
            assert isinstance(op, Syscall | Fault), f"unknown operation {op!r}"


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, Touch):
        return a.write == b.write and np.array_equal(a.vpns, b.vpns)
    return bool(a == b)
