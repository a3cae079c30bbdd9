"""``proportional``: VMware ESX-style proportional share, implemented as stride scheduling.

Each VM holds ``shares`` (default 1000) and receives CPU in proportion to them among the VMs
that want CPU. Optional per-VM ``reservation`` (a guaranteed minimum) and ``limit`` (a
maximum), both in percent of one physical CPU, as ESX's reservation and limit.

Mechanism (Waldspurger & Weihl's stride scheduling, with the refinements an SMP host needs):

* Every active VM (one with a vCPU queued or running) has a *pass*: the CPU time it has
  received divided by its weight, so its stride per ns of CPU is ``1 / weight``. The VM with
  the least pass runs next; its vCPUs take turns (round robin), as with ``fair``. Passes live
  in a ``SortedList`` keyed ``(pass, VM id)``. A pick charges the slice in advance (the pass
  moves on by ``slice / weight`` at once, corrected by the difference when the vCPU leaves), so
  several CPUs picking in a row spread over the VMs instead of all taking the same one.
* The *global pass* is the weighted mean of the active VMs' passes (what each VM's pass would
  be under the fluid, GPS, division of the CPUs; Linux's EEVDF keeps the same average). A VM's
  lag, ``weight x (global pass - pass)``, is the CPU time it is owed.
* A VM that was idle rejoins at the current global pass: idling banks nothing (ESX's rule). If
  it left *ahead* (it had used more than its share), it keeps that debt.
* A share change keeps the VM's lag: its distance to the global pass is rescaled by
  ``old weight / new weight`` (Waldspurger's rule for ticket changes), so changing shares
  neither forgives nor creates owed CPU time.
* On several CPUs a VM cannot use more than one CPU per runnable vCPU, nor more than its
  limit, nor (need) less than its reservation. The entitlements are therefore water-filled,
  ``f = clamp(lam x shares, reservation, min(runnable vCPUs, limit))`` summing to the CPUs
  (Chandra et al.'s weight readjustment, Surplus Fair Scheduling, OSDI 2000), and a bounded
  VM's stride uses the weight ``f / lam`` instead of its shares. Without this a VM that cannot
  keep up with its shares (one vCPU with most of the shares of a many-CPU host) would fall
  ever further behind in pass and then starve the others when a vCPU of it is queued. When no
  bound applies (the common case, checked in O(1) from a sorted list of ``shares / runnable
  vCPUs``) every weight is just the VM's shares.
* ``limit``: a token bucket per VM, refilled at ``limit`` percent of one CPU and holding at
  most one time slice of CPU time (``limit / 100`` slices above one CPU), so what the VM earns
  while it waits behind another VM's slice is not lost; a slice never exceeds the tokens left
  (less those of its own vCPUs already running), and a VM without tokens is *throttled*: not
  picked, even if a CPU idles (a limited VM is :meth:`capped`). The scheduler ticks every time
  slice to refill buckets. Over any interval a limited VM receives at most ``limit x
  interval`` plus one bucket.
* ``reservation``: a floor of the water-fill, so a VM with a reservation is entitled to at least
  that much CPU whatever the shares of the others; the stride mechanism then delivers it within
  the lag bound. Reservations the CPUs cannot all meet are scaled down together (ESX refuses to
  power on such a VM: admission control is outside this model).

Work-conserving among VMs without a limit: a CPU idles only when nothing is queued or every
queued VM is throttled at its limit (ESX's behaviour).

Share promise: every VM's received CPU stays within :meth:`share_error_bound_ns` of its fluid
entitlement. The bound, ``tslice x (VMs + CPUs + 1)``, is stride scheduling's lag bound in
slices: a VM can be behind by the slices the others may take before its pass is the least
(each runs at most one slice past the global pass), plus the slices in flight on every CPU
(a pass moves when a slice is picked, CPU time is received while it runs), plus one slice of
rounding when it joins; ahead, by at most its own slices in flight.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from pydantic import Field, model_validator
from sortedcontainers import SortedList

from vframework.api import Duration, Params, Scheduler, VCPUView

from ._fill import water_fill

__all__ = ["DEFAULT_SHARES", "ProportionalParams", "ProportionalScheduler", "ProportionalVMParams"]

#: ESX's "normal" shares per VM.
DEFAULT_SHARES = 1000


class ProportionalParams(Params):
    tslice: Duration = Field(
        10_000_000, description="time slice: how long a vCPU runs before the VM with the least pass is picked again"
    )


class ProportionalVMParams(Params):
    shares: int = Field(
        DEFAULT_SHARES,
        ge=1,
        le=1_000_000,
        description="CPU shares: among the VMs that want CPU, each receives CPU in proportion to its shares",
    )
    reservation: float = Field(
        0.0,
        ge=0,
        le=100_000,
        description="guaranteed minimum CPU, in percent of one physical CPU (0 = none)",
    )
    limit: float = Field(
        0.0,
        ge=0,
        le=100_000,
        description="maximum CPU, in percent of one physical CPU (0 = no limit); a CPU may idle rather than exceed it",
    )

    @model_validator(mode="after")
    def _reservation_within_limit(self) -> ProportionalVMParams:
        if self.limit and self.reservation > self.limit:
            raise ValueError(f"reservation ({self.reservation:g}% of a CPU) exceeds limit ({self.limit:g}% of a CPU)")
        return self


class _Share:
    """One VM's state in the scheduler."""

    __slots__ = (
        "dkey",
        "id",
        "key",
        "limit",
        "pass_",
        "queue",
        "remain",
        "reservation",
        "reserved",
        "runnable",
        "shares",
        "stamp",
        "throttled",
        "tokens",
        "vcpus",
        "weight",
    )

    def __init__(self, vm_id: int, params: ProportionalVMParams) -> None:
        self.id = vm_id
        self.shares = params.shares
        self.reservation = params.reservation
        self.limit = params.limit
        #: The weight its stride uses: its shares, unless a bound applies (see the module doc).
        self.weight = float(params.shares)
        self.pass_ = 0.0
        #: How far ahead of the global pass it was when it went idle (debt kept on rejoining).
        self.remain = 0.0
        self.queue: deque[VCPUView] = deque()
        #: Its vCPUs queued or running; the VM is active while this is > 0.
        self.runnable = 0
        self.vcpus = 0
        self.key: tuple[float, int] | None = None  # its entry in the pick order, if any
        self.dkey: tuple[float, int] | None = None  # its entry in the density list, if active
        # limit: a token bucket of CPU ns
        self.tokens = 0.0
        self.stamp: int | None = None  # when the bucket was last refilled (None: full)
        self.reserved = 0  # ns of slices handed out to its vCPUs and not yet charged
        self.throttled = False

    def bounded(self) -> bool:
        return bool(self.reservation or self.limit)


class ProportionalScheduler(Scheduler[ProportionalParams]):
    """Proportional share by VM ``shares`` (stride scheduling), with ESX's reservation and limit."""

    name = "proportional"
    description = "VMware ESX-style proportional share: stride scheduling on VM shares, with reservation and limit"
    params_model = ProportionalParams
    vm_params_model = ProportionalVMParams
    share_param = "shares"
    cap_param = "limit"
    reservation_param = "reservation"
    work_conserving = True

    def __init__(self, params: ProportionalParams, cpus: int) -> None:
        super().__init__(params, cpus)
        self.slice_ns = params.tslice
        # A limited VM with less than this banked waits for more: slices of a few ns would
        # spend the CPU on switching (the conformance kit's progress check found 5 ns slices).
        self.min_slice_ns = max(1, self.slice_ns // 100)
        # The tick refills the buckets of limited VMs (a throttled VM needs a timer to run again).
        self.tick_ns = params.tslice
        self.vms: dict[int, _Share] = {}
        self.active: dict[int, _Share] = {}  # VMs with a vCPU queued or running
        self.order: SortedList = SortedList()  # (pass, VM id) of VMs with a queued vCPU that may run
        self.density: SortedList = SortedList()  # (shares / runnable vCPUs, VM id) of active VMs
        self.sum_w = 0.0  # sum of the active VMs' weights
        self.sum_wp = 0.0  # sum of weight x pass over the active VMs
        self.vtime = 0.0  # the global pass when the last active VM went idle
        self.active_shares = 0  # sum of the active VMs' shares
        self.bounded = 0  # active VMs with a reservation or a limit
        self.adjusted: set[int] = set()  # VMs whose weight is not their shares
        self.limited: dict[int, _Share] = {}  # VMs with a limit

    # -- the global pass and weights ----------------------------------------------------------
    def global_pass(self) -> float:
        """The weighted mean pass of the active VMs (the fluid schedule's virtual time)."""
        return self.sum_wp / self.sum_w if self.active else self.vtime

    def _rekey(self, s: _Share, new_pass: float) -> None:
        if s.key is not None:
            self.order.remove(s.key)
            s.key = (new_pass, s.id)
            self.order.add(s.key)
        s.pass_ = new_pass

    def _sync_order(self, s: _Share) -> None:
        want = bool(s.queue) and not s.throttled
        if want and s.key is None:
            s.key = (s.pass_, s.id)
            self.order.add(s.key)
        elif not want and s.key is not None:
            self.order.remove(s.key)
            s.key = None

    def _set_weight(self, s: _Share, weight: float) -> None:
        """Change the VM's stride weight, keeping its lag (owed CPU time) as it is."""
        old = s.weight
        if weight == old:
            return
        if s.runnable > 0:
            g = self.global_pass()
            new_pass = g + (s.pass_ - g) * old / weight
            self.sum_w += weight - old
            self.sum_wp += weight * new_pass - old * s.pass_
            self._rekey(s, new_pass)
        else:
            s.remain *= old / weight
        s.weight = weight

    def _rebalance(self) -> None:
        """Water-fill the entitlements when a bound applies; otherwise weights are shares."""
        if not self.bounded and (not self.density or self.density[-1][0] * self.cpus <= self.active_shares):
            for vm_id in sorted(self.adjusted):
                s = self.vms[vm_id]
                self._set_weight(s, float(s.shares))
            self.adjusted.clear()
            return
        active = list(self.active.values())
        weights = [float(s.shares) for s in active]
        hi = [min(float(s.runnable), s.limit / 100) if s.limit else float(s.runnable) for s in active]
        lo = [s.reservation / 100 for s in active]
        fill, lam = water_fill(float(self.cpus), weights, lo, hi)
        scale = self.active_shares / sum(fill) if lam == float("inf") else 0.0
        for s, f in zip(active, fill, strict=True):
            if lam == float("inf"):
                # No contention: every VM runs all it may. Weights in proportion to what each
                # gets keep the passes together, so nobody is owed (or owes) anything later.
                weight = max(f, 1e-9) * scale
            elif lam == 0.0:
                weight = max(f, 1e-9) * self.active_shares / self.cpus  # reservations alone fill the host
            else:
                weight = max(f, 1e-9) / lam
            if abs(weight - s.shares) > 1e-9 * s.shares:
                self.adjusted.add(s.id)
            else:
                weight = float(s.shares)
                self.adjusted.discard(s.id)
            self._set_weight(s, weight)

    def _runnable_delta(self, s: _Share, delta: int) -> None:
        old = s.runnable
        if s.dkey is not None:
            self.density.remove(s.dkey)
            s.dkey = None
        s.runnable = old + delta
        if old == 0 and s.runnable > 0:
            # Rejoin at the global pass: idling banks nothing; a debt from before is kept.
            s.pass_ = self.global_pass() + s.remain
            s.remain = 0.0
            self.active[s.id] = s
            self.sum_w += s.weight
            self.sum_wp += s.weight * s.pass_
            self.active_shares += s.shares
            self.bounded += s.bounded()
        elif old > 0 and s.runnable == 0:
            g = self.global_pass()
            s.remain = max(0.0, s.pass_ - g)
            del self.active[s.id]
            self.active_shares -= s.shares
            self.bounded -= s.bounded()
            if self.active:
                self.sum_w -= s.weight
                self.sum_wp -= s.weight * s.pass_
            else:
                self.vtime = g
                self.sum_w = self.sum_wp = 0.0  # start again exactly, without rounding residue
        if s.runnable > 0:
            s.dkey = (s.shares / s.runnable, s.id)
            self.density.add(s.dkey)
        self._rebalance()

    # -- limits ----------------------------------------------------------------------------
    def _burst(self, s: _Share) -> float:
        # One time slice of CPU (per CPU of limit): enough to bank what the VM earns while it
        # waits behind another VM's slice, so it does get its limit under contention.
        return max(1.0, s.limit / 100) * self.slice_ns

    def _refill(self, s: _Share, now: int) -> None:
        # The cap leaves room for the slices in flight (reserved): they are being spent while
        # the bucket refills, and are deducted only when charged. Capping at the burst alone
        # threw away what a running vCPU earned during its slice, so a VM limited to exactly
        # one CPU (refill = spend) got half of one.
        if s.stamp is None:
            s.tokens = self._burst(s)
        else:
            s.tokens = min(self._burst(s) + s.reserved, s.tokens + (now - s.stamp) * s.limit / 100)
        s.stamp = now

    # -- the scheduler interface ------------------------------------------------------------
    def attach(self, vcpu: VCPUView, vm_params: Params | None) -> None:
        s = self.vms.get(vcpu.vm.id)
        if s is None:
            params = vm_params if isinstance(vm_params, ProportionalVMParams) else ProportionalVMParams()
            s = self.vms[vcpu.vm.id] = _Share(vcpu.vm.id, params)
            if s.limit:
                self.limited[s.id] = s
        s.vcpus += 1
        vcpu.sched = [s, 0, 0]  # its VM's state, the slice it was last given, the ns it was charged

    def detach(self, vcpu: VCPUView) -> None:
        s: _Share = vcpu.sched[0]
        if vcpu in s.queue:
            self.block(vcpu, 0)
        s.vcpus -= 1
        if s.vcpus == 0:
            del self.vms[s.id]
            self.limited.pop(s.id, None)
            self.adjusted.discard(s.id)

    def wake(self, vcpu: VCPUView, now: int) -> Sequence[int]:
        s: _Share = vcpu.sched[0]
        s.queue.append(vcpu)
        self._runnable_delta(s, 1)
        self._sync_order(s)
        return ()

    def block(self, vcpu: VCPUView, now: int) -> None:
        s: _Share = vcpu.sched[0]
        if vcpu in s.queue:
            s.queue.remove(vcpu)
            self._sync_order(s)
            self._runnable_delta(s, -1)

    def pick(self, cpu: int, now: int) -> tuple[VCPUView | None, int]:
        order = self.order
        while order:
            s = self.vms[order[0][1]]
            slice_ns = self.slice_ns
            if s.limit:
                self._refill(s, now)
                avail = int(s.tokens) - s.reserved
                if avail < self.min_slice_ns:
                    s.throttled = True
                    self._sync_order(s)
                    continue
                slice_ns = min(slice_ns, avail)
            s.reserved += slice_ns
            vcpu = s.queue.popleft()
            vcpu.sched[1] = slice_ns
            vcpu.sched[2] += slice_ns
            # Charge the slice now (corrected when the vCPU leaves), so the next CPU to pick
            # already sees this VM's pass moved on.
            order.remove(s.key)
            s.key = None
            s.pass_ += slice_ns / s.weight
            self.sum_wp += slice_ns
            self._sync_order(s)
            return vcpu, slice_ns
        return None, 0

    def charge(self, vcpu: VCPUView, ran_ns: int, now: int, runnable: bool) -> None:
        seat = vcpu.sched
        s: _Share = seat[0]
        given = seat[1]
        if s.limit:
            self._refill(s, now)  # while this slice is still reserved: see _refill
            s.tokens -= ran_ns
        seat[1] = 0
        seat[2] += ran_ns - given
        s.reserved -= given
        if ran_ns != given:
            self.sum_wp += ran_ns - given
            self._rekey(s, s.pass_ + (ran_ns - given) / s.weight)
        if s.limit:
            s.tokens = min(s.tokens, self._burst(s) + s.reserved)
            s.throttled = s.tokens - s.reserved < self.min_slice_ns
        if runnable:
            s.queue.append(vcpu)
            self._sync_order(s)
        else:
            self._sync_order(s)
            self._runnable_delta(s, -1)

    def tick(self, now: int) -> Sequence[int]:
        for s in self.limited.values():
            if s.throttled:
                self._refill(s, now)
                if s.tokens - s.reserved >= self.min_slice_ns:
                    s.throttled = False
                    self._sync_order(s)
        return ()  # the hypervisor dispatches idle CPUs after the tick

    def capped(self, vcpu: VCPUView) -> bool:
        return vcpu.sched is not None and bool(vcpu.sched[0].limit)

    def set_vm_params(self, vcpu: VCPUView, vm_params: Params | None) -> None:
        s: _Share = vcpu.sched[0]
        new = vm_params if isinstance(vm_params, ProportionalVMParams) else ProportionalVMParams()
        if (new.shares, new.reservation, new.limit) == (s.shares, s.reservation, s.limit):
            return  # already applied (the hypervisor calls this once per vCPU of the VM)
        if s.runnable > 0:
            self.active_shares += new.shares - s.shares
            self.bounded += bool(new.reservation or new.limit) - s.bounded()
            if s.dkey is not None:
                self.density.remove(s.dkey)
                s.dkey = (new.shares / s.runnable, s.id)
                self.density.add(s.dkey)
        if new.limit and not s.limit:
            s.stamp = None  # a full bucket
            self.limited[s.id] = s
        elif not new.limit:
            self.limited.pop(s.id, None)
            s.throttled = False
        s.shares, s.reservation, s.limit = new.shares, new.reservation, new.limit
        if s.limit:
            s.tokens = min(s.tokens, self._burst(s))
        self.adjusted.discard(s.id)
        self._set_weight(s, float(s.shares))
        self._rebalance()
        self._sync_order(s)

    def share_weight(self, vm_params: Params | None) -> float:
        return float(getattr(vm_params, "shares", DEFAULT_SHARES))

    def cap_window_ns(self) -> int:
        return 50 * self.slice_ns

    def cap_slack_ns(self, vcpus: int) -> int:
        # A limit's bucket holds one slice per CPU of limit, and a slice in progress runs on; a
        # reservation is met by weights, which VMs arriving in the window unsettle for a slice.
        return 3 * self.slice_ns * vcpus

    def accounted_ns(self, vcpu: VCPUView) -> int | None:
        # The slices charged at pick plus the corrections when the vCPU left: what moved its pass.
        return int(vcpu.sched[2]) if vcpu.sched is not None else None

    def share_error_bound_ns(self, vms: int) -> int:
        return self.slice_ns * (vms + self.cpus + 1)
