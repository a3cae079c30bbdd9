"""``shares``: ESX's share-based memory allocation with an idle memory tax (Waldspurger, 2002, §5-6).

Each VM has ``mem_min`` (a reservation), ``mem_max`` (a limit, its memory by default) and
``mem_shares`` (10 per MiB of memory by default; kept apart from the CPU scheduler's shares).
They are the VM's bounds for the kernel too: hypervisor swap and the balloon never take a VM
below its min, and ``host-swap`` pages a VM holding more than its max down to it.
When the VMs' memory exceeds the host's, memory is revoked from the VM with the fewest shares
per page, *adjusted for idleness*:

    rho = S / (P * (f + k * (1 - f))),    k = 1 / (1 - tau)

where P is the VM's pages, f the fraction of them active and tau the tax rate (0.75: an idle
page costs four times an active one). The steady state of that min-funding revocation gives
each VM pages in proportion to S / (f + k(1 - f)), within [min, max]: the targets this policy
returns (first over what each VM holds plus room to grow, then over what is left, so a VM that
uses little does not keep a share it has no use for). f comes from statistical sampling: every
``sample_period`` a few random pages of each VM are watched (their next reference is seen); the
estimate is the largest of a slow and a fast moving average and the last sample, so it rises
fast and decays slowly.

The host's free memory sets the reclamation state (``reclaim_state``: 0 high, 1 soft, 2 hard, 3
low). Free memory falling below 4%, 2% or 1% of the host enters soft (balloon), hard (swap) or
low (swap, and the VMs above their targets are blocked until they are back at them: their
``mem_blocked_ns``); a state is left for the next better one only once free memory exceeds the
better state's threshold (6%, 4%, 2%): ESX's hysteresis.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import BeforeValidator, Field, model_validator

from vframework.api import Duration, MemoryContext, MemoryPolicy, Params, VMView, parse_size

__all__ = ["SharesParams", "SharesPolicy", "SharesVMParams"]

PagesOrSize = Annotated[int, BeforeValidator(parse_size)]
MIB_PAGES = 256
PAGE = 4096
HIGH, SOFT, HARD, LOW = 0, 1, 2, 3
DEFAULT_SHARES_PER_MIB = 10


class SharesVMParams(Params):
    mem_min: PagesOrSize = Field(
        0, ge=0, description="memory reserved for the VM whatever the others need (no swap or balloon takes it)"
    )
    mem_max: PagesOrSize = Field(
        0, ge=0, description="the most memory the VM may hold (0: its configured memory; host-swap pages it down)"
    )
    mem_shares: int = Field(0, ge=0, description="memory shares (0: 10 per MiB of configured memory, ESX's normal)")


class SharesParams(Params):
    tax_rate: float = Field(0.75, ge=0.0, le=0.99, description="idle memory tax rate tau (0: pure shares)")
    period: Duration = Field(10**9, description="how often targets are recomputed")
    sample_period: Duration = Field(30 * 10**9, description="how long each activity sample watches its pages")
    sample_pages: int = Field(100, gt=0, description="pages of each VM watched per sample")
    overhead: PagesOrSize = Field(
        0, ge=0, description="memory each VM costs the hypervisor beyond its own (reserved at admission)"
    )
    growth: float = Field(
        0.05, gt=0.0, le=1.0, description="room to grow kept above the pages a VM holds, as a share of its memory"
    )
    fast_gain: float = Field(0.5, gt=0.0, le=1.0, description="weight of a new sample in the fast average")
    slow_gain: float = Field(0.1, gt=0.0, le=1.0, description="weight of a new sample in the slow average")
    high: float = Field(0.06, gt=0.0, lt=1.0, description="free memory above which soft returns to high (no reclaim)")
    soft: float = Field(0.04, gt=0.0, lt=1.0, description="free memory below which the state is soft (balloon)")
    hard: float = Field(0.02, gt=0.0, lt=1.0, description="free memory below which the state is hard (swap)")
    low: float = Field(0.01, gt=0.0, lt=1.0, description="free memory below which the state is low (block VMs)")

    @model_validator(mode="after")
    def _ordered(self) -> SharesParams:
        if not self.high > self.soft > self.hard > self.low:
            raise ValueError(
                f"thresholds must fall: high {self.high} > soft {self.soft} > hard {self.hard} > low {self.low}"
            )
        return self


class _Activity:
    """One VM's active-memory estimate."""

    def __init__(self) -> None:
        self.sampled = np.empty(0, dtype=np.int64)
        self.fast = self.slow = self.last = 1.0  # a new VM counts as active until sampled

    @property
    def estimate(self) -> float:
        return max(self.fast, self.slow, self.last)


class SharesPolicy(MemoryPolicy[SharesParams]):
    """Targets in proportion to shares, taxing idle memory; ESX's reclamation states."""

    name = "shares"
    description = "ESX share-based allocation with an idle memory tax and reclamation states"
    params_model = SharesParams
    vm_params_model = SharesVMParams
    can_overcommit = True
    estimates_active = True

    def __init__(self, params: SharesParams) -> None:
        super().__init__(params)
        self.period_ns = params.period
        self._activity: dict[int, _Activity] = {}
        self._next_sample = 0
        self._state = 0

    @classmethod
    def admit(cls, params: Params, host_pages: int, vms: list[tuple[str, int, Params | None]]) -> list[str]:
        """A VM starts only if its ``mem_min`` plus the per-VM overhead can be reserved."""
        assert isinstance(params, SharesParams)
        problems = []
        reserved = 0
        for name, pages, vm_params in vms:
            vp = vm_params if isinstance(vm_params, SharesVMParams) else SharesVMParams()
            if vp.mem_max and vp.mem_min > vp.mem_max:
                problems.append(f"VM {name!r}: mem_min ({vp.mem_min} bytes) is above mem_max ({vp.mem_max} bytes)")
            need = min(vp.mem_min // PAGE, pages) + params.overhead // PAGE
            reserved += need
            if reserved > host_pages:
                problems.append(
                    f"VM {name!r} cannot start: its mem_min plus overhead ({need} pages) cannot be reserved; "
                    f"{reserved - need} of the host's {host_pages} pages are reserved before it "
                    "(lower mem_min, or give the host more memory)"
                )
        return problems

    def _bounds(self, vm: VMView) -> tuple[int, int, float]:
        vp = vm.policy_params if isinstance(vm.policy_params, SharesVMParams) else SharesVMParams()
        pages = vm.memory_pages
        top = min(pages, vp.mem_max // PAGE) if vp.mem_max else pages
        bottom = min(vp.mem_min // PAGE, top)
        shares = vp.mem_shares or DEFAULT_SHARES_PER_MIB * pages / MIB_PAGES
        return bottom, top, float(shares)

    def bounds(self, vm: VMView) -> tuple[int, int]:
        bottom, top, _ = self._bounds(vm)
        return bottom, top

    def _sample(self, memory: MemoryContext, now: int) -> None:
        p = self.params
        rng = memory.rng(self.name)
        for vm in memory.vms:
            activity = self._activity.setdefault(vm.id, _Activity())
            if activity.sampled.size:
                f = float(memory.touched(vm.id, activity.sampled).mean())
                activity.fast += p.fast_gain * (f - activity.fast)
                activity.slow += p.slow_gain * (f - activity.slow)
                activity.last = f
            backed = np.flatnonzero(memory.backing(vm.id, np.arange(vm.memory_pages)) >= 0)
            count = min(p.sample_pages, backed.size)
            activity.sampled = rng.choice(backed, size=count, replace=False) if count else backed
            memory.watch(vm.id, activity.sampled)
            vm.counters["mem_active"] = int(activity.estimate * vm.counters["mem_granted"])

    def _reclaim_state(self, memory: MemoryContext) -> int:
        """ESX's states: entered when free memory falls below soft, hard or low; left for the
        next better one only once free memory exceeds that state's own (higher) threshold."""
        p = self.params
        free = memory.free_frames / max(1, memory.total_frames)
        enter = {SOFT: p.soft, HARD: p.hard, LOW: p.low}
        leave = {SOFT: p.high, HARD: p.soft, LOW: p.hard}
        state = self._state
        while True:
            if state < LOW and free < enter[state + 1]:
                state += 1
            elif state > HIGH and free > leave[state]:
                state -= 1
            else:
                break
        self._state = state
        return state

    def targets(self, memory: MemoryContext, now: int) -> dict[int, int]:
        if now >= self._next_sample:
            self._sample(memory, now)
            self._next_sample = now + self.params.sample_period
        memory.counters["reclaim_state"] = self._reclaim_state(memory)
        vms = list(memory.vms)
        bounds = {vm.id: self._bounds(vm) for vm in vms}
        available = memory.total_frames
        k = 1.0 / (1.0 - self.params.tax_rate)
        weight = {}
        for vm in vms:
            f = self._activity.get(vm.id, _Activity()).estimate
            weight[vm.id] = bounds[vm.id][2] / (f + k * (1.0 - f))
        # Revocation takes from what VMs hold: first what each holds (plus room to grow), in
        # proportion to adjusted shares when that does not fit; then whatever is left over,
        # up to each VM's max, in the same proportion.
        demand = {}
        for vm in vms:
            low, top, shares = bounds[vm.id]
            grow = max(int(self.params.growth * vm.memory_pages), 1)
            demand[vm.id] = (low, max(low, min(top, vm.counters["mem_granted"] + grow)), shares)
        first = _water_fill(demand, weight, available)
        left = available - sum(first.values())
        if left > 0:
            room = {v: (0, bounds[v][1] - first[v], bounds[v][2]) for v in first}
            extra = _water_fill(room, weight, left)
            first = {v: first[v] + extra[v] for v in first}
        for vm in vms:
            # The low state blocks every VM above its target until reclamation catches up.
            memory.hold(vm.id, self._state == LOW and vm.counters["mem_granted"] > first[vm.id])
        return first


def _water_fill(bounds: dict[int, tuple[int, int, float]], weight: dict[int, float], available: int) -> dict[int, int]:
    """Pages per VM in proportion to ``weight``, each within its [min, max], summing to at most
    ``available`` (min-funding revocation's steady state: equal shares per adjusted page)."""
    lo, hi = 0.0, max((b[1] / max(weight[v], 1e-12) for v, b in bounds.items()), default=0.0)

    def total(level: float) -> float:
        return sum(min(max(level * weight[v], b[0]), b[1]) for v, b in bounds.items())

    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if total(mid) <= available else (lo, mid)
    return {v: int(min(max(lo * weight[v], b[0]), b[1])) for v, b in bounds.items()}
