"""State machine for proportional-share accuracy, for schedulers that promise it.

Hypothesis adds and removes always-runnable VMs (1-2 vCPUs, drawn shares), changes shares
(where the scheduler supports it) and advances time. Alongside, the machine keeps the fluid
reference (generalized processor sharing): over each step, the CPU time the VMs actually
received is divided among the live VMs in proportion to their weights, no VM getting more
than its vCPUs can use (water-filling); when a VM leaves, its error (received - entitled) is
shared among the others by weight, so the live VMs' errors always sum to zero. Every VM's
received time must stay within the scheduler's declared
:meth:`~vframework.Scheduler.share_error_bound_ns` of its entitlement.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from hypothesis import strategies as st
from hypothesis import target
from hypothesis.control import currently_in_test_context
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from vframework.api.contract import Scheduler
from vframework.api.params import Params
from vframework.guest.ops import Compute, Operation
from vframework.guest.os import GuestOS
from vframework.hv.hypervisor import Hypervisor
from vframework.hv.vm import VM
from vframework.machine.costs import CostModel
from vframework.machine.hardware import Machine
from vframework.sim.engine import Engine
from vframework.sim.units import PAGE_SIZE
from vframework.testing.doubles import FixedPolicy, FlatMode
from vframework.testing.scheduling import Observations, observed

__all__ = ["LOOSE_SLICES", "ShareMachine", "water_fill"]

#: With no declared bound: how many slices (per VM and CPU) equal weights may drift from equal time.
LOOSE_SLICES = 3

#: Capacity below this is rounding left over, not capacity to share out.
_EPSILON = 1e-9
#: VMs a machine grows to at most.
_MAX_VMS = 5


def water_fill(capacity: float, weights: dict[int, float], caps: dict[int, float]) -> dict[int, float]:
    """Divide ``capacity`` in proportion to ``weights``, none above its cap, the excess redistributed."""
    share = {k: 0.0 for k in weights}
    open_ = {k for k in weights if caps[k] > 0}
    left = capacity
    while open_ and left > _EPSILON:
        total = sum(weights[k] for k in open_)
        full = {k for k in open_ if share[k] + left * weights[k] / total >= caps[k]}
        if not full:
            for k in open_:
                share[k] += left * weights[k] / total
            break
        for k in full:
            left -= caps[k] - share[k]
            share[k] = caps[k]
        open_ -= full
    return share


def _forever() -> Generator[Operation, None, None]:
    while True:
        yield Compute(3_000_000)


class ShareMachine(RuleBasedStateMachine):
    """Parametrize with :meth:`for_component`."""

    #: The scheduler under test, set by :meth:`for_component` (None on this unparametrized base).
    scheduler_cls: Any = None
    #: Equal weights and the kit's loose bound, for a scheduler that declares none.
    loose = False

    @classmethod
    def for_component(cls, scheduler_cls: type[Scheduler[Params]], loose: bool = False) -> type[ShareMachine]:
        label = f"{cls.__name__}[{scheduler_cls.name}{', equal weights' if loose else ''}]"
        return type(label, (cls,), {"scheduler_cls": scheduler_cls, "loose": loose})

    @initialize(cpus=st.integers(1, 3))
    def setup(self, cpus: int) -> None:
        self.cpus = cpus
        self.engine = Engine(seed=0)
        # No switch cost: the reference divides exactly the time the VMs received.
        machine = Machine(cpus, 64 * PAGE_SIZE, CostModel().replace(vcpu_switch=0))
        self.record = Observations()
        scheduler_cls = observed(self.scheduler_cls, self.record)
        scheduler = scheduler_cls(scheduler_cls.params_model(), cpus)
        self.hv = Hypervisor(self.engine, machine, scheduler, FixedPolicy(None))
        self.hv.start()
        self.weight: dict[int, float] = {}
        self.entitled: dict[int, float] = {}
        self.next_id = 0

    def _params(self, share: int) -> Params | None:
        cls: type[Params] | None
        field: str | None
        cls, field = self.scheduler_cls.vm_params_model, self.scheduler_cls.share_param
        if cls is None:
            return None
        return cls(**{field: share}) if field else cls()

    @precondition(lambda self: len(self.hv.vms) < _MAX_VMS)
    @rule(vcpus=st.integers(1, 2), share=st.sampled_from([1, 2, 3, 5, 8]))
    def add_vm(self, vcpus: int, share: int) -> None:
        if self.loose:
            share = 1
        vm = VM(self.next_id, f"vm{self.next_id}", vcpus, 1, self._params(share * 256))
        self.next_id += 1
        self.hv.attach_mode(vm, FlatMode, FlatMode.params_model())
        vm.guest = GuestOS(vm, self.hv)
        for vcpu in vm.vcpus:
            vcpu.process = vm.guest.spawn(_forever(), 1)
        self.hv.add_vm(vm)
        weight = self.hv.scheduler.share_weight(vm.scheduler_params)
        assert weight is not None, "share_weight must return a weight for a share scheduler"
        assert weight > 0, f"share_weight must be positive for a share scheduler, got {weight}"
        self.weight[vm.id] = float(weight)
        self.entitled[vm.id] = float(vm.counters["cpu_run_ns"])

    @precondition(lambda self: bool(self.hv.vms))
    @rule(data=st.data())
    def remove_vm(self, data: st.DataObject) -> None:
        vm_id = data.draw(st.sampled_from(sorted(self.hv.vms)))
        vm = self.hv.vms[vm_id]
        self.hv.remove_vm(vm)
        # The reference divides exactly the time received among the live VMs, so the live VMs'
        # errors sum to minus those of the VMs gone: a sum no scheduler controls, which would
        # random-walk with departures past any fixed bound. As the fluid schedule does when a
        # VM leaves with a lag (GPS / EEVDF), its error is shared among the others by weight.
        error = vm.counters["cpu_run_ns"] - self.entitled.pop(vm_id)
        del self.weight[vm_id]
        total = sum(self.weight.values())
        for i, weight in self.weight.items():
            self.entitled[i] -= error * weight / total

    @precondition(lambda self: bool(self.hv.vms) and self.scheduler_cls.share_param is not None and not self.loose)
    @rule(data=st.data(), share=st.sampled_from([1, 2, 3, 5, 8]))
    def change_share(self, data: st.DataObject, share: int) -> None:
        vm = self.hv.vms[data.draw(st.sampled_from(sorted(self.hv.vms)))]
        params = self._params(share * 256)
        try:
            for vcpu in vm.vcpus:
                self.hv.scheduler.set_vm_params(vcpu, params)
        except NotImplementedError:
            return
        vm.scheduler_params = params
        self.weight[vm.id] = float(self.hv.scheduler.share_weight(params) or 0.0)

    @rule(span=st.integers(1, 200).map(lambda ms: ms * 1_000_000))
    def run_for(self, span: int) -> None:
        before = {i: vm.counters["cpu_run_ns"] for i, vm in self.hv.vms.items()}
        self.engine.run(until=self.engine.now + span)
        self.hv.sync()
        received = sum(vm.counters["cpu_run_ns"] - before[i] for i, vm in self.hv.vms.items())
        caps = {i: float(len(vm.vcpus) * span) for i, vm in self.hv.vms.items()}
        for i, share in water_fill(received, self.weight, caps).items():
            self.entitled[i] += share

    def teardown(self) -> None:
        if hasattr(self, "hv") and self.hv.vms and currently_in_test_context():
            vms = len(self.hv.vms)
            bound = self._bound(vms)
            worst = max(abs(vm.counters["cpu_run_ns"] - self.entitled[i]) for i, vm in self.hv.vms.items())
            target(worst / bound, label="share error / bound")

    def _bound(self, vms: int) -> int:
        if self.loose:
            return LOOSE_SLICES * max(self.record.longest_slice, 1_000_000) * (vms + self.cpus + 1)
        bound = self.hv.scheduler.share_error_bound_ns(vms)
        assert bound is not None, "share_error_bound_ns returned None after declaring a bound"
        return int(bound)

    @invariant()
    def within_bound(self) -> None:
        if not hasattr(self, "hv"):
            return
        bound = self._bound(max(1, len(self.hv.vms)))
        for i, vm in self.hv.vms.items():
            error = vm.counters["cpu_run_ns"] - self.entitled[i]
            assert abs(error) <= bound, (
                f"{vm.name} (weight {self.weight[i]:g}, {len(vm.vcpus)} vCPUs) received "
                f"{vm.counters['cpu_run_ns']} ns, entitled {self.entitled[i]:.0f} ns: off by {error:.0f} > {bound}"
            )
