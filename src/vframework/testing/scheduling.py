"""State machine for what a scheduler declares: liveness, caps and reservations, and its own
accounting.

Hypothesis adds and removes VMs (1-2 vCPUs) with drawn weights, caps and reservations (each
only where the scheduler declares the parameter), whose vCPUs either compute without end or
alternate computing and sleeping, and advances time. The scheduler under test is observed from
a subclass that records, without changing anything, each wake, pick, charge and block; so the
machine knows every interval each vCPU ran and how long each waited. Whatever it checks, it
also checks that a vCPU runs on at most one CPU and CPU time conservation.

* ``liveness``: a runnable vCPU runs within :meth:`~vframework.Scheduler.liveness_bound_ns`
  (default one simulated second; a capped VM may wait one cap window more).
* ``caps``: in every window of :meth:`~vframework.Scheduler.cap_window_ns` that has passed, a
  capped VM ran at most ``cap`` percent of it and a busy VM with a reservation at least its
  ``reservation``, both within :meth:`~vframework.Scheduler.cap_slack_ns`.
* ``work conservation``: no CPU is left idle (its :meth:`~vframework.Scheduler.pick` gives
  nothing) while a vCPU the scheduler does not cap is runnable.
* ``accounting``: :meth:`~vframework.Scheduler.accounted_ns` equals the time each vCPU ran
  while it is off its CPU (a running vCPU's account may include part of the run in progress).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from hypothesis import strategies as st
from hypothesis import target
from hypothesis.control import currently_in_test_context
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from vframework.api.contract import Scheduler
from vframework.api.params import Params
from vframework.api.views import VCPUView
from vframework.guest.ops import Compute, Operation, Sleep
from vframework.guest.os import GuestOS
from vframework.hv.hypervisor import IDLE, Hypervisor
from vframework.hv.vm import VM, VCPUState
from vframework.machine.hardware import Machine
from vframework.sim.engine import Engine
from vframework.sim.units import PAGE_SIZE
from vframework.testing.doubles import FixedPolicy, FlatMode
from vframework.testing.hypervisor import assert_cpu_time_conservation, assert_one_cpu_per_vcpu

__all__ = [
    "DEFAULT_LIVENESS_NS",
    "Observations",
    "SchedulingMachine",
    "declared_share_bound",
    "fairness_applies",
    "observed",
]

#: How long a runnable vCPU may wait when the scheduler declares no bound.
DEFAULT_LIVENESS_NS = 1_000_000_000
#: A slice shorter than this (about a vCPU switch) makes no progress; this many in a row fail.
TINY_SLICE_NS = 1_000
TINY_SLICES = 10_000
_MAX_VMS = 5
_WEIGHTS = (1, 2, 3, 5, 8)
_CAPS = (10, 25, 50, 75, 100, 150)
_RESERVATIONS = (10, 30, 50)


def declared_share_bound(cls: type[Scheduler[Params]]) -> int | None:
    """The scheduler's declared share error bound with one VM (None: it declares none)."""
    try:
        return cls(cls.params_model(), 1).share_error_bound_ns(1)
    except Exception:
        return 1  # let the property run and report the failure


def fairness_applies(cls: type[Scheduler[Params]]) -> str | None:
    if not cls.fair:
        return "the scheduler declares fair = False"
    if cls.share_param is None and declared_share_bound(cls) is None:
        return "the scheduler takes no weights or shares (share_param) and declares no share bound"
    return None


class Observations:
    """What the observing subclass saw."""

    def __init__(self) -> None:
        self.waiting: dict[VCPUView, int] = {}
        self.ran: dict[str, list[tuple[int, int]]] = {}
        self.charged: dict[VCPUView, int] = {}
        self.longest_wait: tuple[int, str, int] = (0, "", 0)
        self.longest_slice = 0
        #: The first time a CPU was left idle while an uncapped vCPU waited: (when, CPU, waiting).
        self.idled: tuple[int, int, list[str]] | None = None
        #: Slices in a row shorter than :data:`TINY_SLICE_NS`.
        self.tiny = 0


def observed(cls: type[Scheduler[Params]], record: Observations) -> type[Scheduler[Params]]:
    """A subclass of ``cls`` that records into ``record`` what the hypervisor asks of it."""

    class Observed(cls):  # type: ignore[valid-type, misc]
        def wake(self, vcpu: VCPUView, now: int) -> Sequence[int]:
            record.waiting[vcpu] = now
            return super().wake(vcpu, now)  # type: ignore[no-any-return]

        def block(self, vcpu: VCPUView, now: int) -> None:
            record.waiting.pop(vcpu, None)
            super().block(vcpu, now)

        def detach(self, vcpu: VCPUView) -> None:
            record.waiting.pop(vcpu, None)
            super().detach(vcpu)

        def pick(self, cpu: int, now: int) -> tuple[VCPUView | None, int]:
            vcpu, slice_ns = super().pick(cpu, now)
            if vcpu is None and record.idled is None and self.work_conserving:
                waiting = [v.name for v in record.waiting if not self.capped(v)]
                if waiting:
                    record.idled = (now, cpu, waiting)
            if vcpu is not None:
                record.tiny = record.tiny + 1 if slice_ns < TINY_SLICE_NS else 0
                if record.tiny > TINY_SLICES:
                    # Raised from inside the hypervisor: the simulation would never reach its end.
                    raise AssertionError(
                        f"no progress: {record.tiny} slices in a row shorter than {TINY_SLICE_NS} ns "
                        f"(the last: {slice_ns} ns to {vcpu.name} at {now} ns)"
                    )
                since = record.waiting.pop(vcpu, now)
                if now - since > record.longest_wait[0]:
                    record.longest_wait = (now - since, vcpu.name, since)
                record.longest_slice = max(record.longest_slice, slice_ns)
            return vcpu, slice_ns

        def charge(self, vcpu: VCPUView, ran_ns: int, now: int, runnable: bool) -> None:
            record.ran.setdefault(vcpu.vm.name, []).append((now - ran_ns, now))
            record.charged[vcpu] = record.charged.get(vcpu, 0) + ran_ns
            if runnable:
                record.waiting[vcpu] = now
            super().charge(vcpu, ran_ns, now, runnable)

    Observed.__name__ = Observed.__qualname__ = cls.__name__
    return Observed


def _busy() -> Generator[Operation, None, None]:
    while True:
        yield Compute(3_000_000)


def _on_off(run_ns: int, sleep_ns: int) -> Generator[Operation, None, None]:
    while True:
        yield Compute(run_ns)
        yield Sleep(sleep_ns)


def window_extremes(intervals: list[tuple[int, int]], lo: int, hi: int, window: int) -> tuple[int, int, int, int]:
    """Most and least time covered by ``intervals`` in a window of ``window`` ns inside [lo, hi]:
    (most, its start, least, its start). A sliding window's coverage is piecewise linear in its
    start, so its extremes are at starts where the window's start or end meets an interval's
    start or end; the coverage up to any instant comes from sorted starts and ends."""
    spans = np.array(intervals, dtype=np.int64).reshape(-1, 2)
    starts, ends = np.sort(spans[:, 0]), np.sort(spans[:, 1])
    edges = np.concatenate([starts, ends])
    at = np.unique(np.clip(np.concatenate([edges, edges - window, [lo, hi - window]]), lo, hi - window))
    start_sum = np.concatenate([[0], np.cumsum(starts)])
    end_sum = np.concatenate([[0], np.cumsum(ends)])

    def covered(t: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        # Time covered before t: each interval begun before t counts t - start, less t - end if over.
        began, ended = np.searchsorted(starts, t), np.searchsorted(ends, t)
        return t * (began - ended) - start_sum[began] + end_sum[ended]  # type: ignore[no-any-return]

    cover = covered(at + window) - covered(at)
    most, least = int(np.argmax(cover)), int(np.argmin(cover))
    return int(cover[most]), int(at[most]), int(cover[least]), int(at[least])


class SchedulingMachine(RuleBasedStateMachine):
    """Parametrize with :meth:`for_component`."""

    #: The scheduler under test, set by :meth:`for_component` (None on this unparametrized base).
    scheduler_cls: Any = None
    checks: tuple[str, ...] = ("liveness", "caps", "accounting")

    @classmethod
    def for_component(
        cls, scheduler_cls: type[Scheduler[Params]], checks: tuple[str, ...] = ("liveness", "caps", "accounting")
    ) -> type[SchedulingMachine]:
        label = f"{cls.__name__}[{scheduler_cls.name}: {', '.join(checks)}]"
        return type(label, (cls,), {"scheduler_cls": scheduler_cls, "checks": checks})

    @initialize(cpus=st.integers(1, 3))
    def setup(self, cpus: int) -> None:
        self.cpus = cpus
        self.engine = Engine(seed=0)
        self.record = Observations()
        scheduler_cls = observed(self.scheduler_cls, self.record)
        self.hv = Hypervisor(
            self.engine, Machine(cpus, 64 * PAGE_SIZE), scheduler_cls(scheduler_cls.params_model(), cpus), FixedPolicy()
        )
        self.hv.start()
        self.scheduler = self.hv.scheduler
        self.next_id = 0
        self.born: dict[str, int] = {}
        self.busy: set[str] = set()
        self.cap: dict[str, float] = {}
        # Names are never reused: a wait recorded before a VM left is judged by what it was.
        self.ever_capped: set[str] = set()
        self.reservation: dict[str, float] = {}
        self._cap_score = -1.0

    def _params(self, weight: int, cap: int, reservation: int) -> Params | None:
        model = self.scheduler_cls.vm_params_model
        if model is None:
            return None
        values: dict[str, int] = {}
        for field, value in (
            (self.scheduler_cls.share_param, weight),
            (self.scheduler_cls.cap_param, cap),
            (self.scheduler_cls.reservation_param, reservation),
        ):
            if field is not None and value:
                values[field] = value
        return model.model_validate(values)  # type: ignore[no-any-return]

    @precondition(lambda self: hasattr(self, "hv") and len(self.hv.vms) < _MAX_VMS)
    @rule(
        vcpus=st.integers(1, 2),
        weight=st.sampled_from(_WEIGHTS),
        cap=st.sampled_from((0, *_CAPS)),
        reservation=st.sampled_from((0, *_RESERVATIONS)),
        busy=st.booleans(),
        run_ms=st.integers(2, 40),
        sleep_ms=st.integers(2, 60),
    )
    def add_vm(
        self, vcpus: int, weight: int, cap: int, reservation: int, busy: bool, run_ms: int, sleep_ms: int
    ) -> None:
        """A VM whose vCPUs compute without end (``busy``) or compute ``run_ms`` and sleep
        ``sleep_ms`` in turn. A cap or reservation is used only where the scheduler declares it,
        a cap only up to the VM's vCPUs, a reservation only for a busy VM and while the
        reservations fit in half the host."""
        cls = self.scheduler_cls
        cap = cap if cls.cap_param and cap <= 100 * vcpus else 0
        room = 50 * self.cpus - sum(self.reservation.values())
        reservation = reservation if cls.reservation_param and busy and reservation <= room else 0
        if cap and reservation > cap:
            reservation = cap
        name = f"vm{self.next_id}"
        vm = VM(self.next_id, name, vcpus, 1, self._params(weight * 256, cap, reservation))
        self.next_id += 1
        self.hv.attach_mode(vm, FlatMode, FlatMode.params_model())
        vm.guest = GuestOS(vm, self.hv)
        for vcpu in vm.vcpus:
            script = _busy() if busy else _on_off(run_ms * 1_000_000, sleep_ms * 1_000_000)
            vcpu.process = vm.guest.spawn(script, 1)
        self.hv.add_vm(vm)
        self.engine.run(until=self.engine.now)  # what follows at once: its vCPUs' wake and dispatch
        self.born[name] = self.engine.now
        if busy:
            self.busy.add(name)
        if cap:
            self.cap[name] = cap
            self.ever_capped.add(name)
        if reservation:
            self.reservation[name] = reservation

    # Targeted rules: a cap or a reservation is only tested when it binds, so add the VMs
    # where it does: busy, a cap below what the VM's vCPUs could use, a reservation above what
    # the least weight would get.
    def _targets(self, declared: str | None) -> bool:
        """Whether a targeted rule applies: caps are checked, the scheduler declares the
        parameter, and there is room for a VM."""
        return hasattr(self, "hv") and len(self.hv.vms) < _MAX_VMS and "caps" in self.checks and declared is not None

    @precondition(lambda self: self._targets(self.scheduler_cls.cap_param))
    @rule(vcpus=st.integers(1, 2), cap=st.sampled_from(_CAPS[:4]))
    def add_capped_vm(self, vcpus: int, cap: int) -> None:
        self.add_vm(vcpus, _WEIGHTS[-1], cap, 0, True, 1, 1)

    @precondition(lambda self: self._targets(self.scheduler_cls.reservation_param))
    @rule(reservation=st.sampled_from(_RESERVATIONS))
    def add_reserved_vm(self, reservation: int) -> None:
        self.add_vm(1, _WEIGHTS[0], 0, reservation, True, 1, 1)

    @precondition(lambda self: hasattr(self, "hv") and bool(self.hv.vms))
    @rule(which=st.integers(0, _MAX_VMS - 1))
    def remove_vm(self, which: int) -> None:
        """Remove the ``which``-th VM (modulo the VMs there are)."""
        ids = sorted(self.hv.vms)
        vm = self.hv.vms[ids[which % len(ids)]]
        self.hv.remove_vm(vm)
        self.engine.run(until=self.engine.now)
        for table in (self.born, self.cap, self.reservation):
            table.pop(vm.name, None)
        self.busy.discard(vm.name)

    @precondition(lambda self: hasattr(self, "hv"))
    @rule(span_ms=st.integers(1, 300))
    def run_for(self, span_ms: int) -> None:
        self.engine.run(until=self.engine.now + span_ms * 1_000_000)
        self.hv.sync()

    def _intervals(self, vm: VM) -> list[tuple[int, int]]:
        now = self.engine.now
        spans = list(self.record.ran.get(vm.name, []))
        spans += [(v.run_start, now) for v in vm.vcpus if v.state == VCPUState.RUNNING]
        return spans

    def _liveness_bound(self, capped: bool) -> int:
        vcpus = sum(len(vm.vcpus) for vm in self.hv.vms.values())
        bound = self.scheduler.liveness_bound_ns(max(1, vcpus))
        bound = DEFAULT_LIVENESS_NS if bound is None else bound
        return bound + (self.scheduler.cap_window_ns() if capped else 0)

    @invariant()
    def dispatch(self) -> None:
        if hasattr(self, "hv"):
            assert_one_cpu_per_vcpu(self.hv)
            assert_cpu_time_conservation(self.hv)

    @invariant()
    def work_conservation(self) -> None:
        if "work conservation" not in self.checks or not hasattr(self, "hv"):
            return
        if self.record.idled is not None:
            when, cpu, waiting = self.record.idled
            raise AssertionError(
                f"at {when} ns CPU {cpu} was left idle (pick gave nothing) while {', '.join(waiting)} "
                f"waited, uncapped ({self.cpus} CPUs, VMs {self._describe()})"
            )
        # A CPU servicing an interrupt dispatches when the interrupt ends: only IDLE ones count.
        idle = [cpu for cpu, p in enumerate(self.hv.pcpus) if p.running is None and p.state == IDLE]
        waiting = [v.name for v in self.record.waiting if not self.scheduler.capped(v)]
        assert not (idle and waiting), f"CPUs {idle} idle while {', '.join(waiting)} wait, uncapped"

    @invariant()
    def liveness(self) -> None:
        if "liveness" not in self.checks or not hasattr(self, "hv"):
            return
        now = self.engine.now
        waits = [(now - since, v.name, since) for v, since in self.record.waiting.items()]
        for waited, name, since in [self.record.longest_wait, *waits]:
            capped = name.split("/")[0] in self.ever_capped
            bound = self._liveness_bound(capped)
            assert waited <= bound, (
                f"{name} was runnable from {since} ns and waited {waited} ns for a CPU "
                f"(bound {bound} ns{', capped' if capped else ''}; {self.cpus} CPUs, VMs {self._describe()})"
            )

    @invariant()
    def caps_and_reservations(self) -> None:
        if "caps" not in self.checks or not hasattr(self, "hv"):
            return
        window, now = self.scheduler.cap_window_ns(), self.engine.now
        for vm in self.hv.vms.values():
            cap, reserved = self.cap.get(vm.name, 0.0), self.reservation.get(vm.name, 0.0)
            lo = self.born[vm.name]
            if not (cap or reserved) or now - lo < window:
                continue
            slack = self.scheduler.cap_slack_ns(len(vm.vcpus))
            most, at, least, low_at = window_extremes(self._intervals(vm) or [(lo, lo)], lo, now, window)
            if cap:
                self._cap_score = max(self._cap_score, (most - cap * window / 100) / window)
                allowed = int(cap * window / 100) + slack
                assert most <= allowed, (
                    f"{vm.name} (cap {cap:g}%, {len(vm.vcpus)} vCPUs) ran {most} ns in the window "
                    f"[{at}, {at + window}] ns: more than cap x window + slack = {allowed} ns"
                )
            if reserved and vm.name in self.busy:
                self._cap_score = max(self._cap_score, (reserved * window / 100 - least) / window)
                owed = int(reserved * window / 100) - slack
                assert least >= owed, (
                    f"{vm.name} (reservation {reserved:g}%, always runnable) ran {least} ns in the window "
                    f"[{low_at}, {low_at + window}] ns: less than reservation x window - slack = {owed} ns "
                    f"({self.cpus} CPUs, VMs {self._describe()})"
                )

    @invariant()
    def accounting(self) -> None:
        if "accounting" not in self.checks or not hasattr(self, "hv"):
            return
        for vm in self.hv.vms.values():
            for vcpu in vm.vcpus:
                account = self.scheduler.accounted_ns(vcpu)
                ran = self.record.charged.get(vcpu, 0)
                assert account is not None, f"accounted_ns({vcpu.name}) returned None after returning a number"
                if vcpu.state == VCPUState.RUNNING:
                    # Part of the run in progress may be charged already (a tick, a prepaid slice).
                    assert account >= ran, (
                        f"{vcpu.name} (running) ran {ran} ns in the slices it left the CPU, "
                        f"but the scheduler's accounting charged it only {account} ns"
                    )
                else:
                    assert account == ran, (
                        f"{vcpu.name} ({vcpu.state.name}) ran {ran} ns, "
                        f"but the scheduler's accounting charged it {account} ns"
                    )

    def teardown(self) -> None:
        # Steer generation toward what nearly failed: Hypothesis climbs the score from one example
        # to the next (one call per label per example, hence here).
        if not hasattr(self, "hv") or not currently_in_test_context():
            return  # a machine driven step by step (a replayed example in a test)
        if "liveness" in self.checks:
            now = self.engine.now
            waits = [self.record.longest_wait[0], *(now - t for t in self.record.waiting.values())]
            target(max(waits) / self._liveness_bound(False), label="longest wait / liveness bound")
        if "caps" in self.checks:
            target(self._cap_score, label="cap or reservation missed by / window")

    def _describe(self) -> str:
        parts = []
        for vm in self.hv.vms.values():
            bits = [f"{len(vm.vcpus)} vCPUs", "busy" if vm.name in self.busy else "on/off"]
            if vm.name in self.cap:
                bits.append(f"cap {self.cap[vm.name]:g}%")
            if vm.name in self.reservation:
                bits.append(f"reservation {self.reservation[vm.name]:g}%")
            parts.append(f"{vm.name} ({', '.join(bits)})")
        return "; ".join(parts) or "none"
