"""State machine for a running hypervisor, parametrized by the scheduler, mode or policy under test.

Hypothesis adds VMs whose vCPUs play drawn operation scripts and advances time; after every
step the machine checks, exactly:

* a vCPU runs on at most one physical CPU, and only running vCPUs are on a CPU;
* CPU time conservation: charged + hypervisor + idle time == elapsed x CPUs, in integer ns;
* frame conservation, and isolation: every P2M entry points at a frame its VM owns;
* work conservation (schedulers that declare it): no CPU idles while a vCPU is runnable;
* memory targets stay within [0, configured memory] (and within the host unless the
  policy overcommits), and within each VM's ``mem_min`` and ``mem_max`` when the policy takes
  them (the kit draws them) -- also when the policy is asked as if the host had only the VMs'
  reservations plus half of the rest, so that an overcommitting policy is under pressure.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from vframework.api.contract import MemoryPolicy, Mode, Scheduler
from vframework.api.params import Params
from vframework.guest.os import GuestOS
from vframework.hv.contexts import HostMemory
from vframework.hv.hypervisor import IDLE, Hypervisor
from vframework.hv.vm import VM, VCPUState
from vframework.machine.hardware import Machine
from vframework.sim.engine import Engine
from vframework.sim.units import PAGE_SIZE
from vframework.testing.doubles import FifoScheduler, FixedPolicy, FlatMode, ScriptWorkload, script_strategy
from vframework.testing.memory import assert_frames_and_isolation

__all__ = ["HypervisorMachine", "assert_cpu_time_conservation", "assert_one_cpu_per_vcpu", "with_components"]

_M = TypeVar("_M", bound=RuleBasedStateMachine)

PAGES = 16
MAX_VMS = 6
MAX_VCPUS = 3
CHECKS = ("dispatch", "isolation", "work conservation", "targets")


def with_components(cls: type[_M], components: dict[str, Any]) -> type[_M]:
    """A subclass of the machine ``cls`` whose ``<kind>_cls`` attributes are ``components``
    (``{"mode": FullMode}``); a mode also sets the machine's architecture (its first)."""
    label = ",".join(c.name for c in components.values())
    attrs: dict[str, Any] = {f"{k}_cls": v for k, v in components.items()}
    if "mode" in components:
        attrs["arch"] = components["mode"].architectures[0]
    return type(f"{cls.__name__}[{label}]", (cls,), attrs)


def assert_one_cpu_per_vcpu(hv: Hypervisor) -> None:
    """A vCPU is on at most one physical CPU, and a vCPU is on a CPU exactly when RUNNING."""
    on_cpu = [v for v in hv.running if v is not None]
    assert len(on_cpu) == len(set(on_cpu)), "a vCPU is on two physical CPUs"
    for cpu, vcpu in enumerate(hv.running):
        if vcpu is not None:
            assert vcpu.state == VCPUState.RUNNING, f"{vcpu} is on CPU {cpu} but {vcpu.state.name}"
            assert vcpu.cpu == cpu, f"{vcpu} is on CPU {cpu} but says CPU {vcpu.cpu}"
    for vm in hv.vms.values():
        for vcpu in vm.vcpus:
            if vcpu.state == VCPUState.RUNNING:
                assert vcpu in on_cpu, f"{vcpu} is RUNNING but on no CPU"


def assert_cpu_time_conservation(hv: Hypervisor) -> None:
    """Charged + hypervisor + idle time equals elapsed time x CPUs, in integer ns."""
    hv.sync()
    total, expected = hv.cpu_time_balance()
    assert total == expected, f"charged+hypervisor+idle = {total} ns, elapsed x CPUs = {expected} ns"


class HypervisorMachine(RuleBasedStateMachine):
    """Parametrize with :meth:`for_components`; unset kinds use the kit's doubles."""

    scheduler_cls: type[Scheduler[Params]] = FifoScheduler
    mode_cls: type[Mode[Params]] = FlatMode
    policy_cls: type[MemoryPolicy[Params]] = FixedPolicy
    cpus = 2
    arch = "x86"
    #: The groups of invariants checked (a property checks one group): ``dispatch`` (one CPU per
    #: vCPU, held VMs off the CPUs, CPU time conservation), ``isolation`` (frames), ``work
    #: conservation``, ``targets`` (the memory policy's).
    checks: frozenset[str] = frozenset(CHECKS)

    # components: scheduler=, mode= and/or policy= classes (Any: a mode's architectures is read).
    @classmethod
    def for_components(cls, checks: tuple[str, ...] = CHECKS, **components: Any) -> type[HypervisorMachine]:
        unknown = set(checks) - set(CHECKS)
        if unknown:
            raise ValueError(f"unknown checks {sorted(unknown)}; known: {', '.join(CHECKS)}")
        machine = with_components(cls, components)
        machine.checks = frozenset(checks)
        return machine

    def __init__(self) -> None:
        super().__init__()
        self.engine = Engine(seed=0)
        self.machine = Machine(self.cpus, MAX_VMS * MAX_VCPUS * PAGES * PAGE_SIZE)
        scheduler = self.scheduler_cls(self.scheduler_cls.params_model(), self.cpus)
        policy = self.policy_cls(self.policy_cls.params_model())
        self.hv = Hypervisor(self.engine, self.machine, scheduler, policy, arch=self.arch)
        self.hv.start()

    @precondition(lambda self: len(self.hv.vms) < MAX_VMS)
    @rule(vcpus=st.integers(1, MAX_VCPUS), data=st.data())
    def add_vm(self, vcpus: int, data: st.DataObject) -> None:
        # One process per vCPU, each may touch all PAGES of its address space.
        vm = VM(len(self.hv.vms), f"vm{len(self.hv.vms)}", vcpus, PAGES * vcpus)
        # Guest timers: none, or ticks every 100 or 10 µs, from a periodic or a tickless kernel.
        vm.hz = data.draw(st.sampled_from([0, 10_000, 100_000]), label=f"{vm.name} hz")
        vm.tickless = data.draw(st.booleans(), label=f"{vm.name} tickless")
        if self.scheduler_cls.vm_params_model is not None:
            vm.scheduler_params = self.scheduler_cls.vm_params_model()
        model = self.policy_cls.vm_params_model
        if model is not None and {"mem_min", "mem_max"} <= set(model.model_fields):
            # A policy with the design's per-VM bounds gets random ones, and must keep to them.
            low = data.draw(st.integers(0, vm.memory_pages), label=f"{vm.name} mem_min pages")
            high = data.draw(st.integers(max(low, 1), vm.memory_pages), label=f"{vm.name} mem_max pages")
            vm.policy_params = model.model_validate({"mem_min": low * PAGE_SIZE, "mem_max": high * PAGE_SIZE})
        self.hv.attach_mode(vm, self.mode_cls, self.mode_cls.params_model())
        vm.guest = GuestOS(vm, self.hv)
        for vcpu in vm.vcpus:
            script = data.draw(script_strategy(PAGES), label=f"{vm.name}/vcpu{vcpu.index}")
            vcpu.process = vm.guest.spawn(ScriptWorkload(script, PAGES).run(), PAGES)
        self.hv.add_vm(vm)

    @precondition(lambda self: bool(self.hv.vms))
    @rule(data=st.data(), held=st.booleans())
    def hold_vm(self, data: st.DataObject, held: bool) -> None:
        # ESX's low memory state blocks VMs; the kit blocks and lets go at random instants.
        vm_id = data.draw(st.sampled_from(sorted(self.hv.vms)), label="VM held" if held else "VM let go")
        self.hv.hold(self.hv.vms[vm_id], held)

    @rule(span=st.integers(1, 50_000))
    def run_for(self, span: int) -> None:
        self.engine.run(until=self.engine.now + span)
        self.hv.sync()

    @invariant()
    def one_cpu_per_vcpu(self) -> None:
        if "dispatch" in self.checks:
            assert_one_cpu_per_vcpu(self.hv)

    @invariant()
    def held_vms_do_not_run(self) -> None:
        if "dispatch" not in self.checks:
            return
        for vm in self.hv.vms.values():
            for vcpu in vm.vcpus:
                if vm.held_since is None:
                    assert not vcpu.held, f"{vcpu} is held but its VM is not"
                    continue
                assert vcpu.state != VCPUState.RUNNABLE, f"{vcpu} is runnable while its VM is held"
                if vcpu.state == VCPUState.RUNNING:
                    assert vcpu.cpu is not None
                    # Only until the interrupt its CPU is servicing ends.
                    assert self.hv.pcpus[vcpu.cpu].preempt_after_irq, f"{vcpu} runs while its VM is held"

    @invariant()
    def cpu_time_conservation(self) -> None:
        if "dispatch" in self.checks:
            assert_cpu_time_conservation(self.hv)

    @invariant()
    def frames_and_isolation(self) -> None:
        if "isolation" not in self.checks:
            return
        assert_frames_and_isolation(self.machine.memory, self.hv.vms.values())

    @invariant()
    def work_conserving(self) -> None:
        if "work conservation" not in self.checks or not getattr(self.scheduler_cls, "work_conserving", False):
            return
        # A CPU servicing an interrupt (a guest's timer tick on the CPU its idle vCPU last ran on)
        # dispatches when the interrupt ends: only IDLE ones count, as in SchedulingMachine.
        idle = [cpu for cpu, p in enumerate(self.hv.pcpus) if p.running is None and p.state == IDLE]
        runnable = [v for vm in self.hv.vms.values() for v in vm.vcpus if v.state == VCPUState.RUNNABLE]
        assert not (idle and runnable), f"CPUs {idle} idle while {runnable} wait"

    @invariant()
    def targets_within_bounds(self) -> None:
        if "targets" not in self.checks:
            return
        self._check_targets(self.hv.memory_policy.targets(self.hv.memory, self.engine.now))
        if self.policy_cls.can_overcommit and self.hv.vms:
            # The kit's host never runs short; ask as if it did: a policy that gives a VM less
            # than its mem_min only when memory is tight must fail too.
            reserved = sum(self._bounds(vm)[0] for vm in self.hv.vms.values())
            configured = sum(vm.memory_pages for vm in self.hv.vms.values())
            squeezed = _Squeezed(self.hv.memory, reserved + (configured - reserved) // 2)
            targets = self.hv.memory_policy.targets(squeezed, self.engine.now)
            self._check_targets(targets)
            # Overcommitting is promising guests more than the host has, not handing out more
            # frames than exist: the targets divide the host.
            assert sum(targets.values()) <= squeezed.total_frames, (
                f"on a host of {squeezed.total_frames} frames (VMs configured with {configured} pages, "
                f"{reserved} reserved) the targets sum to {sum(targets.values())} frames: {targets}"
            )

    @staticmethod
    def _bounds(vm: VM) -> tuple[int, int]:
        bounds = vm.policy_params
        if bounds is not None and hasattr(bounds, "mem_min") and hasattr(bounds, "mem_max"):
            return bounds.mem_min // PAGE_SIZE, bounds.mem_max // PAGE_SIZE
        return 0, vm.memory_pages

    def _check_targets(self, targets: dict[int, int]) -> None:
        unknown = sorted(set(targets) - set(self.hv.vms))
        assert not unknown, f"targets name VM ids {unknown}, which do not exist (VMs: {sorted(self.hv.vms)})"
        for vm_id, target in targets.items():
            vm = self.hv.vms[vm_id]
            assert isinstance(target, int | np.integer), f"{vm} target {target!r} is not a whole number of pages"
            assert 0 <= target <= vm.memory_pages, f"{vm} target {target} outside [0, {vm.memory_pages}]"
            low, high = self._bounds(vm)
            # The kernel keeps what bounds() gave it (swap and balloons never take a VM below
            # its min): a policy that takes mem_min and mem_max must hand them over.
            assert (vm.mem_min, vm.mem_max) == (low, high), (
                f"{vm} has mem_min {low} and mem_max {high} pages, but the policy's bounds() gave the "
                f"kernel ({vm.mem_min}, {vm.mem_max}): the kernel cannot keep bounds it is not given"
            )
            assert low <= target <= high, f"{vm} target {target} pages outside [mem_min, mem_max] = [{low}, {high}]"
        if not self.policy_cls.can_overcommit:
            total = sum(targets.values())
            assert total <= self.machine.memory.frames, (
                f"a policy that does not overcommit gives targets summing to {total} frames "
                f"on a host of {self.machine.memory.frames}"
            )


class _Squeezed:
    """A host's memory context that reports fewer frames than the host has (the rest as in use),
    and holds no VM: what a policy sees on a host that is short of memory."""

    def __init__(self, memory: HostMemory, frames: int) -> None:
        self._memory = memory
        self.total_frames = frames
        self.free_frames = max(0, frames - (memory.total_frames - memory.free_frames))

    def hold(self, vm_id: int, held: bool) -> None:
        """Only asked: nothing is done to the VMs."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._memory, name)
