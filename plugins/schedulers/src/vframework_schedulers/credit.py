"""``credit``: Xen's credit scheduler (credit1, ``xen/common/sched_credit.c``), modelled.

The rules, as in Xen:

* Each VM (domain) has a ``weight`` (default 256, 1..65535) and a ``cap`` in percent of one
  physical CPU (100 = one CPU, 50 = half of one, 400 = four; 0 = uncapped).
* Each vCPU holds *credits* (here in ns of CPU time). The running vCPU is debited for the time
  it runs: at every tick (every ``tslice / 3``, 10 ms by default) and when it leaves the CPU.
* Every accounting period (``tslice``, 30 ms) the period's credit, ``CPUs x period``, is
  divided among the *active* VMs in proportion to their weights; no VM gets more than its
  active vCPUs can use in a period (one period per vCPU) nor, if capped, more than its cap;
  what they cannot use goes to the others. A VM's credit is split evenly among its active
  vCPUs. A vCPU with credit left is UNDER, one without is OVER.
* A vCPU becomes *active* (earns credit) when a tick finds it running, or when it leaves the
  CPU still runnable (one whose slices all fall between ticks). A vCPU whose credit
  grows beyond one period's worth stops earning: it leaves the active list and its credit is
  halved (Xen's upper bound, meant for vCPUs that idle). Credit never goes below minus one
  period's worth (Xen's lower bound).
* Priorities BOOST > UNDER > OVER. A vCPU that wakes (blocked -> runnable) with UNDER priority
  gets BOOST; it is put ahead of UNDER and OVER vCPUs and preempts its CPU's vCPU if that one
  has a lower priority (and no CPU is idle). BOOST ends when the vCPU leaves the CPU still
  runnable (its slice ended, or it was preempted), or at the first tick that finds the vCPU
  running: a vCPU that keeps running for a tick is not an I/O-bound one.
* One run queue per physical CPU, ordered by priority, FIFO within a priority. A vCPU that
  leaves its CPU still runnable goes to the tail of its priority on that CPU's queue. A CPU
  whose best local vCPU is OVER (or that has none) steals from the other CPUs' queues a vCPU
  of strictly higher priority (any runnable vCPU when it would otherwise idle), as Xen's
  ``csched_load_balance`` does. After each accounting pass the queues are re-sorted by the new
  priorities, keeping the order within a priority.
* Time slice ``tslice`` (30 ms).
* A capped VM that has used its cap for the period is *parked*: its vCPUs are runnable but on
  no run queue, and no CPU runs them, even an idle one, until the next accounting period
  unparks it. So credit is not work-conserving for capped VMs (:meth:`capped` is True for
  them), and is work-conserving otherwise.

Where the model simplifies Xen:

* Credits are exact ns of CPU time, debited for exactly the time run (Xen counts 10 credits
  per ms with a residual in ns: the same up to rounding). A vCPU is debited for its whole stay
  on the CPU, including the switch to it and interrupts serviced meanwhile (Xen's
  ``burn_credits`` also charges wall time).
* One global tick instead of a per-CPU ticker each with its own phase; accounting runs on
  every third tick instead of on a separate master timer.
* A VM's share is its weight (Xen's documented rule: "a domain with a weight of 512 gets twice
  as much CPU as one of 256"). Xen's ``csched_acct`` actually weighs a domain by
  ``weight x active vCPUs``, so there a VM with more busy vCPUs gets more; the model follows
  the documented per-domain rule, as ``fair`` and ``proportional`` do.
* Credit that VMs cannot use (their vCPUs' peak, their cap) is redistributed by exact
  water-filling; Xen does it in one pass over its list of domains and reorders the list so the
  domains that got extra go first next time. Xen's extra credit for a negative system-wide
  balance (``credit_balance``) is kept for the total but not for each domain's peak.
* Caps are enforced by a per-VM budget of ``cap`` percent of the period: a capped VM's slice
  never exceeds the budget left (less what its other running vCPUs may still use), shared
  evenly with its other waiting vCPUs (at least 1 ms each), and when the
  budget is used up the VM is parked until the next accounting period, which renews the budget
  (an overrun is carried over). Xen 4.x's credit1 parks only at accounting, when a vCPU's
  credit fell below minus its share of the cap, so its caps are exact only on average over
  several periods; Xen's later budget-based caps (as in credit2) behave as modelled here.
* No context-switch rate limit (``sched_ratelimit_us``), no soft/hard affinity, no SMT or NUMA
  awareness in placement, no migration delay: a new vCPU's home CPU is chosen round robin and
  it moves only when another CPU steals it. Xen's tickle sends a woken vCPU to an idle CPU;
  here any idle CPU picks it up by stealing (the hypervisor dispatches idle CPUs after a wake).
  A vCPU waking up after being parked is not boosted (as in Xen).

Share promise: none with a bound. :meth:`share_weight` is the VM's weight (what credit aims
at), but :meth:`share_error_bound_ns` is None, because Xen's two bounds on credit make the error
grow without limit under some mixes, even with no VM arriving or leaving:

* the upper bound discards credit. With 30 ms slices and a 30 ms period, an UNDER vCPU often
  waits a whole period behind another vCPU's slice; its credit then passes one period's worth,
  is halved and it stops earning until a tick finds it running. On one CPU, a 1-vCPU VM of
  weight 2048 against a 2-vCPU VM of weight 512 (entitled to 80%) gets 72% of it this way
  (``proportional`` gives it 80.0%; ``tests/plugins/schedulers/test_schedulers.py`` measures it);
* the lower bound forgives debt: a vCPU that runs while OVER (when nobody is UNDER) never pays
  back more than one period's worth.

With both bounds removed the same mix stays within 2 periods of its fluid share, so the drift
is Xen's rules, not the model's. Weighted shares still hold on average for simple mixes (three
1-vCPU VMs of weights 3:2:1 on one CPU get 3:2:1 within a few percent).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import ClassVar

from pydantic import Field

from vframework.api import Duration, Params, Scheduler, VCPUView

from ._fill import water_fill

__all__ = ["BOOST", "OVER", "PRIORITIES", "UNDER", "CreditParams", "CreditScheduler", "CreditVMParams"]

#: Priorities, best first (Xen's CSCHED_PRI_TS_BOOST, _UNDER, _OVER).
BOOST, UNDER, OVER = 0, 1, 2
PRIORITIES = ("BOOST", "UNDER", "OVER")
_IDLE = 3  # below every priority: "anything" when stealing for an idle CPU
#: Xen's CSCHED_DEFAULT_WEIGHT.
DEFAULT_WEIGHT = 256
#: Ticks per accounting period (Xen's CSCHED_TICKS_PER_TSLICE).
TICKS_PER_PERIOD = 3
#: A capped VM's vCPU is given at least this much of the budget left (or all that is left).
_MIN_SHARE_NS = 1_000_000


class CreditParams(Params):
    tslice: Duration = Field(
        30_000_000,
        description="time slice and accounting period (Xen's sched_credit_tslice_ms); "
        "credits are debited at a tick every third of it",
    )


class CreditVMParams(Params):
    weight: int = Field(
        DEFAULT_WEIGHT,
        ge=1,
        le=65535,
        description="relative CPU weight: a VM of weight 512 gets twice the CPU of one of 256 on a busy host",
    )
    cap: int = Field(
        0,
        ge=0,
        le=65535,
        description="maximum CPU in percent of one physical CPU (50 = half a CPU, 400 = four CPUs); 0 = uncapped",
    )


class _Dom:
    """One VM (Xen's domain)."""

    __slots__ = ("active", "cap", "held", "id", "parked", "reserved", "used", "vcpus", "weight")

    def __init__(self, vm_id: int, params: CreditVMParams) -> None:
        self.id = vm_id
        self.weight = params.weight
        self.cap = params.cap
        self.vcpus: list[_VC] = []
        self.active = 0  # its vCPUs on the active list (earning credit)
        self.used = 0  # ns of its cap budget used this period
        self.reserved = 0  # ns of slices handed to its running vCPUs, not yet charged
        self.parked = False
        self.held: deque[_VC] = deque()  # runnable vCPUs kept off the queues (parked, or budget all reserved)


class _VC:
    """One vCPU's scheduler state."""

    __slots__ = ("active", "burnt", "cpu", "credit", "dom", "given", "held", "on", "pri", "queued", "since", "vcpu")

    def __init__(self, vcpu: VCPUView, dom: _Dom, cpu: int) -> None:
        self.vcpu = vcpu
        self.dom = dom
        self.credit = 0
        self.pri = UNDER
        self.cpu = cpu  # its home CPU: the run queue it goes to
        self.queued = False
        self.held = False
        self.active = False
        self.on: int | None = None  # the CPU it is running on
        self.since = 0  # when it was last debited
        self.burnt = 0  # every ns debited so far
        self.given = 0  # the slice it was given


class CreditScheduler(Scheduler[CreditParams]):
    """Xen's credit scheduler: weights, caps, credits, BOOST/UNDER/OVER, per-CPU run queues."""

    name = "credit"
    description = "Xen's credit scheduler (credit1): weight and cap, 30 ms slices, BOOST/UNDER/OVER, per-CPU queues"
    params_model = CreditParams
    vm_params_model = CreditVMParams
    share_param = "weight"
    cap_param = "cap"
    work_conserving = True  # for uncapped VMs; capped ones are parked on purpose (see capped())
    known_limitations: ClassVar[dict[str, str]] = {
        "fairness": "Xen's credit bounds (credit halved past one period's worth, debt forgiven past minus "
        "one) let a VM's share error grow with time, past any fixed bound: on 3 CPUs, 5 equal-weight VMs "
        "of 2, 2, 1, 1 and 2 vCPUs leave a 1-vCPU VM 0.81 s behind its fluid share after 3.35 s"
    }

    def __init__(self, params: CreditParams, cpus: int) -> None:
        super().__init__(params, cpus)
        self.period = params.tslice
        self.slice_ns = params.tslice
        self.tick_ns = max(1, params.tslice // TICKS_PER_PERIOD)
        self.runq: list[list[deque[_VC]]] = [[deque(), deque(), deque()] for _ in range(cpus)]
        self.waiting = [0, 0, 0]  # queued vCPUs per priority, all CPUs together
        self.running: list[_VC | None] = [None] * cpus
        self.idle = cpus  # CPUs running nothing
        self.doms: dict[int, _Dom] = {}
        self.balance = 0  # the sum of active vCPUs' credit after the last accounting (Xen's credit_balance)
        self.ticks = 0
        self._next_cpu = 0

    # -- queues -----------------------------------------------------------------------------
    def _enqueue(self, cv: _VC) -> None:
        self.runq[cv.cpu][cv.pri].append(cv)
        self.waiting[cv.pri] += 1
        cv.queued = True

    def _dequeue(self, cv: _VC) -> None:
        self.runq[cv.cpu][cv.pri].remove(cv)
        self.waiting[cv.pri] -= 1
        cv.queued = False

    def _hold(self, cv: _VC) -> None:
        cv.held = True
        cv.dom.held.append(cv)

    def _budget(self, dom: _Dom) -> int:
        return dom.cap * self.period // 100

    def _release(self, dom: _Dom) -> None:
        """Put the VM's held vCPUs back on their queues if it may run."""
        if dom.parked or (dom.cap and self._budget(dom) - dom.used - dom.reserved <= 0):
            return
        while dom.held:
            cv = dom.held.popleft()
            cv.held = False
            self._enqueue(cv)

    def _park(self, dom: _Dom) -> None:
        dom.parked = True
        for cv in dom.vcpus:
            if cv.queued:
                self._dequeue(cv)
                self._hold(cv)

    def _burn(self, cv: _VC, now: int) -> None:
        ran = now - cv.since
        cv.since = now
        cv.credit -= ran
        cv.burnt += ran
        cv.dom.used += ran

    def _steal(self, cpu: int, above: int) -> _VC | None:
        """The first vCPU of priority better than ``above`` on another CPU's queue (its head)."""
        runq = self.runq
        for k in range(1, self.cpus):
            queues = runq[(cpu + k) % self.cpus]
            for pri in range(above):
                if queues[pri]:
                    return queues[pri][0]
        return None

    def _next(self, cpu: int) -> _VC | None:
        queues = self.runq[cpu]
        if queues[BOOST]:
            return queues[BOOST][0]
        if queues[UNDER]:
            return queues[UNDER][0]
        waiting = self.waiting
        if queues[OVER]:
            if waiting[BOOST] or waiting[UNDER]:
                stolen = self._steal(cpu, OVER)
                if stolen is not None:
                    return stolen
            return queues[OVER][0]
        if waiting[BOOST] or waiting[UNDER] or waiting[OVER]:
            return self._steal(cpu, _IDLE)
        return None

    def _resort(self) -> None:
        """After accounting: every queue ordered by the new priorities, keeping the order within one."""
        self.waiting = [0, 0, 0]
        for queues in self.runq:
            merged = [*queues[BOOST], *queues[UNDER], *queues[OVER]]
            for q in queues:
                q.clear()
            for cv in merged:
                queues[cv.pri].append(cv)
                self.waiting[cv.pri] += 1

    # -- the scheduler interface ------------------------------------------------------------
    def attach(self, vcpu: VCPUView, vm_params: Params | None) -> None:
        dom = self.doms.get(vcpu.vm.id)
        if dom is None:
            params = vm_params if isinstance(vm_params, CreditVMParams) else CreditVMParams()
            dom = self.doms[vcpu.vm.id] = _Dom(vcpu.vm.id, params)
        cv = _VC(vcpu, dom, self._next_cpu)
        self._next_cpu = (self._next_cpu + 1) % self.cpus
        dom.vcpus.append(cv)
        vcpu.sched = cv

    def detach(self, vcpu: VCPUView) -> None:
        cv: _VC = vcpu.sched
        self.block(vcpu, 0)
        dom = cv.dom
        dom.vcpus.remove(cv)
        if cv.active:
            cv.active = False
            dom.active -= 1
        if not dom.vcpus:
            del self.doms[dom.id]

    def wake(self, vcpu: VCPUView, now: int) -> Sequence[int]:
        cv: _VC = vcpu.sched
        dom = cv.dom
        if dom.parked:
            self._hold(cv)  # not boosted: it will be unparked by accounting, not woken by I/O
            return ()
        if cv.pri == UNDER:
            cv.pri = BOOST
        if dom.cap and dom.held:
            self._hold(cv)
            self._release(dom)
            if cv.held:
                return ()
        else:
            self._enqueue(cv)
        if self.idle:
            return ()  # an idle CPU picks it up (the hypervisor dispatches idle CPUs after a wake)
        current = self.running[cv.cpu]
        if current is not None and cv.pri < current.pri:
            return (cv.cpu,)
        return ()

    def block(self, vcpu: VCPUView, now: int) -> None:
        cv: _VC = vcpu.sched
        if cv.queued:
            self._dequeue(cv)
        elif cv.held:
            cv.dom.held.remove(cv)
            cv.held = False

    def pick(self, cpu: int, now: int) -> tuple[VCPUView | None, int]:
        while True:
            cv = self._next(cpu)
            if cv is None:
                return None, 0
            self._dequeue(cv)
            dom = cv.dom
            slice_ns = self.slice_ns
            if dom.cap:
                left = self._budget(dom) - dom.used - dom.reserved
                if left <= 0:
                    self._hold(cv)  # its VM's budget is all in use by its running vCPUs
                    continue
                # The budget is shared with the VM's other waiting vCPUs: one vCPU taking all
                # of it each period would starve the others (the kit's liveness property found
                # a 2-vCPU VM capped at 100% whose second vCPU never ran).
                waiting = 1 + sum(1 for v in dom.vcpus if v is not cv and (v.queued or v.held))
                slice_ns = min(slice_ns, left, max(left // waiting, _MIN_SHARE_NS))
                dom.reserved += slice_ns
            cv.cpu = cpu
            cv.on = cpu
            cv.since = now
            cv.given = slice_ns
            self.running[cpu] = cv
            self.idle -= 1
            return cv.vcpu, slice_ns

    def charge(self, vcpu: VCPUView, ran_ns: int, now: int, runnable: bool) -> None:
        cv: _VC = vcpu.sched
        dom = cv.dom
        if cv.on is not None:
            self.running[cv.on] = None
            self.idle += 1
            cv.on = None
        self._burn(cv, now)
        if dom.cap:
            dom.reserved -= cv.given
            if dom.used >= self._budget(dom) and not dom.parked:
                self._park(dom)
        cv.given = 0
        if runnable and cv.pri == BOOST:
            # It used its slice and still wants the CPU: not I/O-bound. The tick ends BOOST for
            # a vCPU it finds running; a capped VM's slices can all fall between two ticks, and
            # a vCPU kept BOOST that way took every slice of its VM (the kit's liveness found it).
            cv.pri = UNDER
        if runnable and not cv.active:
            # Likewise it earns (and is charged) credit from now on, as one a tick found running.
            cv.active = True
            dom.active += 1
        if runnable:
            if dom.parked or dom.held:
                self._hold(cv)
            else:
                self._enqueue(cv)
        if dom.cap and dom.held:
            self._release(dom)

    def tick(self, now: int) -> Sequence[int]:
        self.ticks += 1
        for cv in self.running:
            if cv is None:
                continue
            if cv.pri == BOOST:
                cv.pri = UNDER  # it kept the CPU for a tick: not I/O-bound any more
            self._burn(cv, now)
            if not cv.active:
                cv.active = True
                cv.dom.active += 1
        if self.ticks % TICKS_PER_PERIOD == 0:
            self._account()
        return ()  # the hypervisor dispatches idle CPUs (unparked vCPUs) after the tick

    def _account(self) -> None:
        period = self.period
        doms = [d for d in self.doms.values() if d.active > 0]
        balance = 0
        if doms:
            # Converge the system-wide balance towards 0 when it is negative (as Xen does).
            total = float(self.cpus * period - min(self.balance, 0))
            peaks = [float(d.active * period) for d in doms]
            for i, d in enumerate(doms):
                if d.cap:
                    peaks[i] = min(peaks[i], float(self._budget(d)))
            fill, _ = water_fill(total, [float(d.weight) for d in doms], [0.0] * len(doms), peaks)
            for d, f in zip(doms, fill, strict=True):
                per_vcpu = -(-int(f) // d.active)  # rounded up, as Xen does
                for cv in d.vcpus:
                    if not cv.active:
                        continue
                    cv.credit += per_vcpu
                    if cv.credit < 0:
                        cv.pri = OVER
                        cv.credit = max(cv.credit, -period)  # lower bound on credit
                    else:
                        cv.pri = UNDER
                        if cv.credit > period:
                            # Upper bound: it stops earning, and starts again a little ahead.
                            cv.active = False
                            d.active -= 1
                            cv.credit //= 2
                    balance += cv.credit
        self.balance = balance
        for d in self.doms.values():
            if d.cap:
                d.used = max(0, d.used - self._budget(d))
                if d.parked and d.used < self._budget(d):
                    d.parked = False
                self._release(d)
        self._resort()

    def capped(self, vcpu: VCPUView) -> bool:
        return vcpu.sched is not None and bool(vcpu.sched.dom.cap)

    def set_vm_params(self, vcpu: VCPUView, vm_params: Params | None) -> None:
        dom: _Dom = vcpu.sched.dom
        new = vm_params if isinstance(vm_params, CreditVMParams) else CreditVMParams()
        dom.weight = new.weight  # used from the next accounting period, as in Xen
        if new.cap != dom.cap:
            dom.cap = new.cap
            if not dom.cap:
                dom.parked = False
                dom.used = 0
            elif dom.used >= self._budget(dom) and not dom.parked:
                self._park(dom)
            self._release(dom)

    def share_weight(self, vm_params: Params | None) -> float:
        return float(getattr(vm_params, "weight", DEFAULT_WEIGHT))

    def cap_window_ns(self) -> int:
        return 20 * self.period

    def cap_slack_ns(self, vcpus: int) -> int:
        # The budget renews every period, and an overrun is carried over: one period's budget
        # ahead at a window's start and one behind at its end, at most a period per vCPU each.
        return 2 * self.period * vcpus

    def accounted_ns(self, vcpu: VCPUView) -> int | None:
        return vcpu.sched.burnt if vcpu.sched is not None else None

    def share_error_bound_ns(self, vms: int) -> int | None:
        return None  # no bound holds: Xen's credit bounds discard and forgive credit (module doc)
