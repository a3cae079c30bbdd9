"""State machine: running operations ahead changes nothing (:mod:`vframework.guest.runahead`).

Two hypervisors are built alike, one planning runs of operations ahead and one stepping every
operation. Hypothesis adds the same VMs to both (each vCPU plays a drawn script of compute
phases, sleeps and page references, many times over) and drives both the same way: time
passes, interrupts arrive on a CPU, accessed bits are sampled and cleared, the hypervisor takes
frames back from a VM. After every step everything the model shows must be equal: time,
every counter (but ``events_fired``, the simulator's own work), vCPU states, page tables and
their flags, P2M, frame contents and every TLB entry. The TLB is small (eight entries) so that
references evict each other, and slices are long enough for runs to form.
"""

from __future__ import annotations

import itertools
from collections.abc import Generator, Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from vframework.api.contract import MemoryPolicy, Mode, Scheduler
from vframework.api.params import Params
from vframework.guest.ops import Compute, Operation, Sleep, Touch
from vframework.guest.os import GuestOS
from vframework.hv.hypervisor import Hypervisor
from vframework.hv.vm import VM
from vframework.machine.hardware import Machine
from vframework.sim.engine import Engine
from vframework.sim.units import PAGE_SIZE
from vframework.testing.doubles import FifoScheduler, FixedPolicy, FlatMode
from vframework.testing.hypervisor import with_components

__all__ = ["RunAheadMachine"]

PAGES = 24
MAX_VMS = 3
MAX_VCPUS = 2


class LongSliceFifo(FifoScheduler):
    """The kit's FIFO scheduler with slices long enough for many operations."""

    name = "kit-fifo-long"
    slice_ns = 40_000


def _ops(pages: int) -> st.SearchStrategy[list[Operation]]:
    compute = st.integers(1, 1_000).map(Compute)
    sleep = st.integers(1, 30_000).map(Sleep)
    touch = st.tuples(st.lists(st.integers(0, pages - 1), min_size=1, max_size=12), st.booleans()).map(
        lambda t: Touch(np.array(t[0], dtype=np.int64), t[1])
    )
    # Sleeps end runs: rarer than the rest, so that runs form.
    op: st.SearchStrategy[Operation] = st.one_of(compute, touch, compute, touch, compute, touch, sleep)
    return st.lists(op, min_size=1, max_size=16)


def _repeat(script: Sequence[Operation], times: int) -> Generator[Operation, None, None]:
    yield from itertools.chain.from_iterable(itertools.repeat(script, times))


class RunAheadMachine(RuleBasedStateMachine):
    """Parametrize with :meth:`for_components` (a mode's paging matters most)."""

    scheduler_cls: type[Scheduler[Params]] = LongSliceFifo
    mode_cls: type[Mode[Params]] = FlatMode
    policy_cls: type[MemoryPolicy[Params]] = FixedPolicy
    cpus = 2
    arch = "x86"

    # components: mode= (and/or scheduler=, policy=) classes, as HypervisorMachine's.
    @classmethod
    def for_components(cls, **components: Any) -> type[RunAheadMachine]:
        return with_components(cls, components)

    def __init__(self) -> None:
        super().__init__()
        self.twins: list[tuple[Engine, Machine, Hypervisor]] = []
        for run_ahead in (True, False):
            engine = Engine(seed=0)
            machine = Machine(self.cpus, MAX_VMS * MAX_VCPUS * PAGES * PAGE_SIZE)
            scheduler = self.scheduler_cls(self.scheduler_cls.params_model(), self.cpus)
            policy = self.policy_cls(self.policy_cls.params_model())
            hv = Hypervisor(engine, machine, scheduler, policy, arch=self.arch, tlb_entries=8)
            hv.run_ahead = run_ahead
            hv.start()
            self.twins.append((engine, machine, hv))

    @precondition(lambda self: len(self.twins[0][2].vms) < MAX_VMS)
    @rule(vcpus=st.integers(1, MAX_VCPUS), data=st.data())
    def add_vm(self, vcpus: int, data: st.DataObject) -> None:
        n = len(self.twins[0][2].vms)
        scripts = [
            (data.draw(_ops(PAGES), label=f"vm{n}/vcpu{i}"), data.draw(st.integers(1, 40), label="times"))
            for i in range(vcpus)
        ]
        hz = data.draw(st.sampled_from([0, 1_000, 10_000]), label="hz")
        tickless = data.draw(st.booleans(), label="tickless")
        for _, _, hv in self.twins:
            vm = VM(n, f"vm{n}", vcpus, PAGES * vcpus)
            vm.hz, vm.tickless = hz, tickless
            if self.scheduler_cls.vm_params_model is not None:
                vm.scheduler_params = self.scheduler_cls.vm_params_model()
            hv.attach_mode(vm, self.mode_cls, self.mode_cls.params_model())
            vm.guest = GuestOS(vm, hv)
            for vcpu, (script, times) in zip(vm.vcpus, scripts, strict=True):
                vcpu.process = vm.guest.spawn(_repeat(script, times), PAGES)
            hv.add_vm(vm)

    @rule(span=st.one_of(st.integers(1, 5_000), st.integers(1, 200_000)))
    def run_for(self, span: int) -> None:
        for engine, _, _ in self.twins:
            engine.run(until=engine.now + span)

    @rule(cpu=st.integers(0, 1), cycles=st.integers(1, 5_000))
    def interrupt(self, cpu: int, cycles: int) -> None:
        for _, _, hv in self.twins:
            hv.raise_irq(None, cycles, cpu)

    @precondition(lambda self: self.twins[0][2].vms)
    @rule(data=st.data())
    def tick(self, data: st.DataObject) -> None:
        vm_id = data.draw(st.sampled_from(sorted(self.twins[0][2].vms)), label="vm")
        index = data.draw(st.integers(0, MAX_VCPUS - 1), label="vcpu") % len(self.twins[0][2].vms[vm_id].vcpus)
        for _, _, hv in self.twins:
            hv.guest_tick(hv.vms[vm_id].vcpus[index])

    @rule()
    def sample_accessed_bits(self) -> None:
        counts = [[vm.guest.sample_active() for vm in hv.vms.values() if vm.guest] for _, _, hv in self.twins]
        assert counts[0] == counts[1], f"accessed pages {counts[0]} when running ahead, {counts[1]} stepping"

    @precondition(lambda self: self.twins[0][2].vms)
    @rule(data=st.data())
    def take_frames(self, data: st.DataObject) -> None:
        vm_id = data.draw(st.sampled_from(sorted(self.twins[0][2].vms)), label="vm")
        ppns = np.array(
            data.draw(st.lists(st.integers(0, PAGES - 1), max_size=6, unique=True), label="ppns"), dtype=np.int64
        )
        for _, _, hv in self.twins:
            hv.release_pages(hv.vms[vm_id], ppns)

    @invariant()
    def same_model(self) -> None:
        ahead, stepped = (self._state(hv) for _, _, hv in self.twins)
        for key in ahead:
            assert ahead[key] == stepped[key], f"{key}: {ahead[key]!r} running ahead, {stepped[key]!r} stepping"

    @staticmethod
    def _state(hv: Hypervisor) -> dict[str, Any]:
        hv.sync()
        host = {k: v for k, v in hv.counters.items() if k != "events_fired"}
        state: dict[str, Any] = {"now": hv.engine.now, "host": host}
        for vm in hv.vms.values():
            state[f"{vm.name} counters"] = dict(vm.counters)
            state[f"{vm.name} vCPUs"] = [(v.state.name, v.cpu) for v in vm.vcpus]
            state[f"{vm.name} P2M"] = vm.p2m.tolist()
            assert vm.guest is not None
            for proc in vm.guest.processes:
                state[f"{vm.name} pid {proc.pid}"] = (proc.page_table.tolist(), proc.pte_flags.tolist(), proc.writes)
        state["frame contents"] = hv.machine.memory.content.tolist()
        for cpu, tlb in enumerate(hv.tlbs):
            state[f"TLB of CPU {cpu}"] = (tlb.keys.tolist(), tlb.mpns.tolist())
        return state
