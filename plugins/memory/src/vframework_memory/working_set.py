"""``working-set``: targets from each VM's estimated active memory, for comparison with shares.

The same statistical sampling as ``shares`` estimates the fraction f of each VM's pages in
use; a VM's target is its active memory (f times the pages it holds) plus ``headroom``, within
its ``mem_min`` and ``mem_max``. When those targets exceed the host they are scaled down in
proportion. Shares play no part: the policy is work-conserving for memory, but a VM cannot
buy priority, and an idle VM's memory is given away however much it paid.
"""

from __future__ import annotations

from pydantic import Field

from vframework.api import MemoryContext
from vframework_memory.shares import SharesParams, SharesPolicy, _Activity, _water_fill

__all__ = ["WorkingSetParams", "WorkingSetPolicy"]


class WorkingSetParams(SharesParams):
    headroom: float = Field(0.1, ge=0.0, le=10.0, description="room above the active estimate, as a share of it")


class WorkingSetPolicy(SharesPolicy):
    """Each VM gets what it actively uses, plus headroom."""

    name = "working-set"
    description = "targets from each VM's estimated active memory plus headroom (no shares)"
    params_model = WorkingSetParams

    def targets(self, memory: MemoryContext, now: int) -> dict[int, int]:
        if now >= self._next_sample:
            self._sample(memory, now)
            self._next_sample = now + self.params.sample_period
        memory.counters["reclaim_state"] = self._reclaim_state(memory)
        params = self.params
        assert isinstance(params, WorkingSetParams)
        wanted: dict[int, tuple[int, int, float]] = {}
        for vm in memory.vms:
            low, top, _ = self._bounds(vm)
            f = self._activity.get(vm.id, _Activity()).estimate
            grow = max(int(params.growth * vm.memory_pages), 1)
            want = int(f * vm.counters["mem_granted"] * (1.0 + params.headroom)) + grow
            wanted[vm.id] = (low, max(low, min(top, want)), 1.0)
        if sum(b[1] for b in wanted.values()) <= memory.total_frames:
            return {v: b[1] for v, b in wanted.items()}
        return _water_fill(wanted, {v: float(max(b[1], 1)) for v, b in wanted.items()}, memory.total_frames)
