"""``balloon``: a balloon driver in every guest, driven towards the hypervisor's target.

As Xen's memory/target and ESX's vmmemctl: the hypervisor sets each VM's target (its memory
policy decides it); the balloon should hold the rest of the VM's memory, ``memory - target``,
capped at ``max_fraction`` of it (ESX caps the balloon at 65%). Every period the service moves
each balloon towards that size by at most ``rate`` pages per second. Inflating makes the guest
allocate pages (its free pages first, then pages it writes out to its own swap area) and hands
their frames back; deflating gives pages back to the guest, which gets frames again when it uses
them. A guest's driver may be absent or slow (the VM's ``balloon`` key).

ESX balloons only under pressure: nothing is reclaimed while the host's free memory is high,
balloons inflate from the soft state on (the memory policy's ``reclaim_state``), and hypervisor
swap takes over from the hard state. ``pressure = "soft"`` does that; before that state a
balloon still holds a VM under its ``mem_max`` and deflates as its target rises, but takes
nothing more; under a policy that reports no state (``static``), which leaves it at high,
such balloons only hold VMs under their ``mem_max``. The default, ``"high"``, pursues the
targets in every state: a host with
balloons alone needs that, since nothing else would catch a VM that grows between two
periods of the balloon (with ``"soft"`` such a host can run out of frames).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vframework.api import Duration, MemoryContext, MemoryService, Params

__all__ = ["Balloon", "BalloonParams"]

STATES = ("high", "soft", "hard", "low")


class BalloonParams(Params):
    period: Duration = Field(10**9, description="how often the balloon targets are pursued")
    rate: int = Field(2_560, gt=0, description="pages per second one balloon may inflate or deflate (10 MiB/s)")
    max_fraction: float = Field(
        0.65, ge=0.0, le=1.0, description="the largest balloon, as a fraction of the VM's memory (ESX: 65%)"
    )
    reserve: float = Field(
        0.02, ge=0.0, lt=1.0, description="free memory (fraction of the host) deflating never gives away"
    )
    cycles_per_page: int = Field(2_000, ge=0, description="hypervisor cycles to take or give back one page")
    pressure: Literal["high", "soft", "hard", "low"] = Field(
        "high",
        description="the reclamation state from which balloons inflate towards the targets (ESX: soft); "
        "before it, only a VM above its mem_max is ballooned",
    )


class Balloon(MemoryService[BalloonParams]):
    """Moves each VM's balloon towards ``memory - target`` at a bounded rate."""

    name = "balloon"
    description = "balloon drivers inflate and deflate towards the hypervisor's targets (Xen, ESX)"
    params_model = BalloonParams

    def __init__(self, params: BalloonParams) -> None:
        super().__init__(params)
        self.period_ns = params.period
        self._owed: dict[int, float] = {}

    @classmethod
    def kit_params(cls) -> BalloonParams:
        return BalloonParams(rate=10**6)

    def run(self, memory: MemoryContext, now: int) -> int:
        p = self.params
        allowance = p.rate * p.period / 1e9
        pressed = memory.counters["reclaim_state"] >= STATES.index(p.pressure)
        steps: dict[int, int] = {}
        for vm in memory.vms:
            pages = vm.memory_pages
            cap = int(p.max_fraction * pages)
            want = min(max(0, pages - vm.counters["mem_target"]), cap)
            balloon = vm.counters["mem_balloon"]
            if not pressed:
                # No pressure: hold the VM under its limit, give back what the target allows,
                # and take nothing more.
                want = max(min(max(0, pages - vm.mem_max), cap), min(want, balloon))
            gap = want - balloon
            owed = self._owed.get(vm.id, 0.0) + allowance
            steps[vm.id] = max(-int(owed), min(int(owed), gap))
            self._owed[vm.id] = min(owed - abs(steps[vm.id]), allowance)
        moved = 0
        # Inflate first; then deflate only into frames that are free now (less a reserve), so
        # that the pages given back can be backed when the guests use them.
        for vm_id, step in steps.items():
            if step > 0:
                moved += memory.balloon(vm_id, step)
        budget = memory.free_frames - int(p.reserve * memory.total_frames)
        for vm_id, step in steps.items():
            if step < 0 and budget > 0:
                given = memory.balloon(vm_id, max(step, -budget))
                budget -= given
                moved += given
        return moved * p.cycles_per_page
