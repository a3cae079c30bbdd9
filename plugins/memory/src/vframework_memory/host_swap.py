"""``host-swap``: the hypervisor pages guest memory out to its own swap device (ESX's last resort).

When free machine memory falls below ``start`` (a fraction of the host; ESX's hard state, 2%),
the service pages frames out until free memory is back at ``stop`` (4%), at most ``rate`` pages
per second. Victims come first from the VMs furthest above their targets, then from every VM in
proportion to its memory above its ``mem_min`` (the kernel never takes a VM below it). A VM
holding more than its ``mem_max`` is paged down to it whatever the host's free memory (a limit,
as ESX enforces one), within the same rate. Within a VM, ``victims`` chooses: ``random`` pages (ESX's choice: the
hypervisor cannot know which guest pages matter), or ``lru``, an approximation of least recently
used from the hardware accessed bits: every ``age_period`` each page's age grows by one, or
returns to zero if it was referenced, and the oldest pages go first (ties broken at random). The
guest's next reference to a paged-out page is a
hidden fault that reads it back: the VM stalls for the device's ``latency`` plus the transfer at
``bandwidth``. Contents come back exactly; a page the guest then swaps out itself is counted as
double paging.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field, model_validator

from vframework.api import Duration, MemoryContext, MemoryService, Params, VMView

__all__ = ["HostSwap", "HostSwapParams"]

PRIVATE = 1
PAGE = 4096
#: Ages saturate here (uint8): after 255 periods unreferenced, a page is as old as it gets.
OLDEST = 255


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
    victims: Literal["random", "lru"] = Field(
        "random", description="which pages of a VM go: random (ESX), or least recently used by accessed bits"
    )
    age_period: Duration = Field(10**9, description="how often pages age by their accessed bits (victims = lru)")

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
    holds_limits = True

    def __init__(self, params: HostSwapParams) -> None:
        super().__init__(params)
        self.period_ns = params.period
        self.paging = False
        #: VM id -> each page's age in periods unreferenced (victims = lru).
        self._age: dict[int, npt.NDArray[np.uint8]] = {}
        self._next_age = 0

    @classmethod
    def kit_params(cls) -> HostSwapParams:
        # The kit's host is short of memory only when its VMs hold half of it: page out then (to
        # three quarters free), and hold the VMs at the limits the kit moves, in every run.
        return HostSwapParams(start=0.5, stop=0.75, rate=10**6)

    def run(self, memory: MemoryContext, now: int) -> int:
        p = self.params
        if p.victims == "lru" and now >= self._next_age:
            self._next_age = now + p.age_period
            self._grow_older(memory)
        budget = p.rate * p.period // 10**9
        paged = self._enforce_limits(memory, budget)
        budget -= paged
        total = memory.total_frames
        free = memory.free_frames
        if free < p.start * total:
            self.paging = True
        if not self.paging:
            return paged * p.cycles_per_page
        short = int(p.stop * total) - free
        need = min(short, budget)
        if need <= 0:
            self.paging = short > 0  # still short (the limits took this period's rate, or it is 0)
            return paged * p.cycles_per_page
        return (paged + self._page_out(memory, need, exclude=None)) * p.cycles_per_page

    def reclaim_now(self, memory: MemoryContext, pages: int, exclude: int) -> int:
        # A fault found no free frame: page out now what it needs, and enough to start paging.
        self.paging = True
        return self._page_out(memory, pages, exclude)

    def _enforce_limits(self, memory: MemoryContext, budget: int) -> int:
        """Page the VMs above their ``mem_max`` down to it, within ``budget`` pages."""
        paged = 0
        for vm in memory.vms:
            over = min(vm.counters["mem_granted"] - vm.mem_max, budget - paged)
            if over > 0:
                paged += self._page_out_of(memory, vm, over)
        return paged

    def _page_out(self, memory: MemoryContext, need: int, exclude: int | None) -> int:
        vms = {vm.id: vm for vm in memory.vms}
        return sum(
            self._page_out_of(memory, vms[vm_id], count) for vm_id, count in self._shares(memory, need, exclude).items()
        )

    def _page_out_of(self, memory: MemoryContext, vm: VMView, count: int) -> int:
        """Page out ``count`` private, unpinned pages of one VM, chosen by ``victims``, none
        below its ``mem_min``; returns how many."""
        p = self.params
        rng = memory.rng(self.name)
        vm_id = vm.id
        count = min(count, vm.counters["mem_granted"] - vm.mem_min)
        backed = memory.backing(vm_id, np.arange(vm.memory_pages))
        mine = np.flatnonzero(backed >= 0)
        mine = mine[memory.frame_state(backed[mine]) == PRIVATE]
        pinned = memory.pinned_frames(vm_id)
        if pinned.size:
            mine = mine[~np.isin(backed[mine], pinned)]  # the kernel would skip them
        if mine.size == 0 or count <= 0:
            return 0
        take = min(count, mine.size)
        if p.victims == "lru" and vm_id in self._age:
            # The oldest first; a random fraction below one breaks ties between equal ages.
            key = self._age[vm_id][mine] + rng.random(mine.size)
            victims = mine[np.argpartition(-key, take - 1)[:take]] if take < mine.size else mine
        else:
            victims = rng.choice(mine, size=take, replace=False)
        return memory.swap_out(vm_id, victims, p.latency + PAGE * 10**9 // p.bandwidth)

    def _grow_older(self, memory: MemoryContext) -> None:
        running = {vm.id: vm.memory_pages for vm in memory.vms}
        for gone in set(self._age) - set(running):
            del self._age[gone]
        for vm_id, pages in running.items():
            referenced = memory.referenced(vm_id)
            age = self._age.get(vm_id)
            if age is None:
                age = self._age[vm_id] = np.zeros(pages, dtype=np.uint8)
            np.add(age, 1, out=age, where=age < OLDEST)
            age[referenced] = 0

    @staticmethod
    def _shares(memory: MemoryContext, need: int, exclude: int | None) -> dict[int, int]:
        """Pages to take from each VM: from those above target, by how far; else by size."""
        vms = [vm for vm in memory.vms if vm.id != exclude]
        over = {vm.id: vm.counters["mem_granted"] - max(vm.counters["mem_target"], vm.mem_min) for vm in vms}
        over = {k: v for k, v in over.items() if v > 0}
        weights = over or {vm.id: max(vm.counters["mem_granted"] - vm.mem_min, 0) for vm in vms}
        total = sum(weights.values())
        if total <= 0:
            return {}
        return {vm_id: -(-need * w // total) for vm_id, w in weights.items() if w > 0}
