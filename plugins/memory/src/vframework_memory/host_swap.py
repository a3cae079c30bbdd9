"""``host-swap``: the hypervisor pages guest memory out to its own swap device (ESX's last resort).

When free machine memory falls below ``start`` (a fraction of the host; ESX's hard state, 2%),
the service pages frames out until free memory is back at ``stop`` (4%), at most ``rate`` pages
per second. Victims come first from the VMs furthest above their targets, then from every VM in
proportion to its memory; within a VM they are random pages (ESX's choice: the hypervisor
cannot know which guest pages matter). The guest's next reference to a paged-out page is a
hidden fault that reads it back: the VM stalls for the device's ``latency`` plus the transfer at
``bandwidth``. Contents come back exactly; a page the guest then swaps out itself is counted as
double paging.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from vframework.api import Duration, MemoryContext, MemoryService, Params

__all__ = ["HostSwap", "HostSwapParams"]

PRIVATE = 1
PAGE = 4096


class HostSwapParams(Params):
    period: Duration = Field(100 * 10**6, description="how often free memory is checked")
    start: float = Field(
        0.02, gt=0.0, lt=1.0, description="free memory (fraction of the host) below which paging starts"
    )
    stop: float = Field(0.04, gt=0.0, lt=1.0, description="free memory at which paging stops")
    rate: int = Field(25_600, gt=0, description="pages paged out per second at most (100 MiB/s)")
    latency: Duration = Field(100_000, description="the swap device's latency per read (100 us: a fast SSD)")
    bandwidth: int = Field(500 * 1024**2, gt=0, description="the swap device's transfer rate, bytes per second")
    cycles_per_page: int = Field(3_000, ge=0, description="hypervisor cycles to page one frame out")

    @model_validator(mode="after")
    def _band(self) -> HostSwapParams:
        if self.stop <= self.start:
            raise ValueError(f"stop ({self.stop}) must be above start ({self.start})")
        return self


class HostSwap(MemoryService[HostSwapParams]):
    """Random victims from the VMs most above target, until free memory recovers."""

    name = "host-swap"
    description = "the hypervisor pages random guest frames to its own swap device when memory runs out"
    params_model = HostSwapParams

    def __init__(self, params: HostSwapParams) -> None:
        super().__init__(params)
        self.period_ns = params.period
        self.paging = False

    @classmethod
    def kit_params(cls) -> HostSwapParams:
        # The kit's host is never short of memory: page out whenever there is something to take.
        return HostSwapParams(start=0.98, stop=0.99, rate=10**6)

    def run(self, memory: MemoryContext, now: int) -> int:
        p = self.params
        total = memory.total_frames
        free = memory.free_frames
        if free < p.start * total:
            self.paging = True
        if not self.paging:
            return 0
        need = min(int(p.stop * total) - free, p.rate * p.period // 10**9)
        if need <= 0:
            self.paging = False
            return 0
        return self._page_out(memory, need, exclude=None) * p.cycles_per_page

    def reclaim_now(self, memory: MemoryContext, pages: int, exclude: int) -> int:
        # A fault found no free frame: page out now what it needs, and enough to start paging.
        self.paging = True
        return self._page_out(memory, pages, exclude)

    def _page_out(self, memory: MemoryContext, need: int, exclude: int | None) -> int:
        p = self.params
        read_ns = p.latency + PAGE * 10**9 // p.bandwidth
        rng = memory.rng(self.name)
        paged = 0
        for vm_id, count in self._shares(memory, need, exclude).items():
            backed = memory.backing(vm_id, np.arange(next(v.memory_pages for v in memory.vms if v.id == vm_id)))
            mine = np.flatnonzero(backed >= 0)
            mine = mine[memory.frame_state(backed[mine]) == PRIVATE]
            if mine.size == 0:
                continue
            victims = rng.choice(mine, size=min(count, mine.size), replace=False)
            paged += memory.swap_out(vm_id, victims, read_ns)
        return paged

    @staticmethod
    def _shares(memory: MemoryContext, need: int, exclude: int | None) -> dict[int, int]:
        """Pages to take from each VM: from those above target, by how far; else by size."""
        vms = [vm for vm in memory.vms if vm.id != exclude]
        over = {vm.id: vm.counters["mem_granted"] - vm.counters["mem_target"] for vm in vms}
        over = {k: v for k, v in over.items() if v > 0}
        weights = over or {vm.id: vm.counters["mem_granted"] for vm in vms}
        total = sum(weights.values())
        if total <= 0:
            return {}
        return {vm_id: -(-need * w // total) for vm_id, w in weights.items() if w > 0}
