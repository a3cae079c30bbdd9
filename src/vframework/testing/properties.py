"""The properties the kit ships, declared per kind (imported by the runner)."""

from __future__ import annotations

from vframework.api.contract import Device, MemoryPolicy, MemoryService, Mode, Scheduler
from vframework.api.params import Params
from vframework.testing.channels import EventChannelMachine, GrantTableMachine
from vframework.testing.devices import DeviceMachine
from vframework.testing.engine import EngineMachine
from vframework.testing.equivalence import EquivalenceMachine, ResourceControlMachine
from vframework.testing.hypervisor import HypervisorMachine
from vframework.testing.memory import FrameTableMachine
from vframework.testing.mmu import MemoryMachine
from vframework.testing.registry import KERNEL, conformance
from vframework.testing.ring import RingMachine
from vframework.testing.runahead import RunAheadMachine
from vframework.testing.shares import ShareMachine
from vframework.testing.sharing import SharingMachine
from vframework.testing.translate import TranslationMachine
from vframework.testing.workload import WorkloadMachine

conformance(KERNEL, "event order and cancellation")(lambda _: EngineMachine)
conformance(KERNEL, "frame conservation")(lambda _: FrameTableMachine)
conformance(KERNEL, "block translation equals interpretation")(lambda _: TranslationMachine)
conformance(KERNEL, "running ahead equals stepping")(lambda _: RunAheadMachine)
conformance(KERNEL, "ring pointer ordering, one response per request")(lambda _: RingMachine)
conformance(KERNEL, "event channels: delivered at most once, masks hold")(lambda _: EventChannelMachine)
conformance(KERNEL, "grant tables: only granted pages, in-use grants stay")(lambda _: GrantTableMachine)
conformance("workload", "well-formed, deterministic operations")(WorkloadMachine.for_component)


@conformance("scheduler", "one CPU per vCPU, CPU time conservation, work conservation")
def _scheduler(cls: type[Scheduler[Params]]) -> type[HypervisorMachine]:
    return HypervisorMachine.for_components(scheduler=cls)


@conformance("mode", "isolation and frame conservation under guest accesses")
def _mode(cls: type[Mode[Params]], arch: str | None = None) -> type[HypervisorMachine]:
    return HypervisorMachine.for_components(mode=cls)


@conformance("memory_policy", "targets within [0, configured memory], no overcommit unless declared")
def _policy(cls: type[MemoryPolicy[Params]]) -> type[HypervisorMachine]:
    return HypervisorMachine.for_components(policy=cls)


@conformance(
    "memory_service",
    "invisible to guests, copy-on-write, refcounts equal mappings, shared frames never written, "
    "ballooned pages out of reach",
)
def _service(cls: type[MemoryService[Params]]) -> type[SharingMachine]:
    return SharingMachine.for_component(cls)


def _promises_shares(cls: type[Scheduler[Params]]) -> bool:
    try:
        scheduler = cls(cls.params_model(), 1)
        return scheduler.share_error_bound_ns(1) is not None
    except Exception:
        return True  # let the property run and report the failure


@conformance("scheduler", "proportional share within the declared error bound", applies=_promises_shares)
def _shares(cls: type[Scheduler[Params]]) -> type[ShareMachine]:
    return ShareMachine.for_component(cls)


@conformance("mode", "running ahead equals stepping under the mode's paging")
def _run_ahead(cls: type[Mode[Params]], arch: str | None = None) -> type[RunAheadMachine]:
    return RunAheadMachine.for_components(mode=cls)


@conformance("mode", "equivalence with bare metal (Popek & Goldberg)")
def _equivalence(cls: type[Mode[Params]], arch: str | None = None) -> type[EquivalenceMachine]:
    return EquivalenceMachine.for_component(cls, arch)


@conformance("mode", "resource control under hostile code and hypercalls", applies=lambda cls: not cls.baseline)
def _resource_control(cls: type[Mode[Params]], arch: str | None = None) -> type[ResourceControlMachine]:
    return ResourceControlMachine.for_component(cls, arch)


@conformance("mode", "memory: coherence, isolation, frame conservation, equivalence, copy-on-write")
def _memory(cls: type[Mode[Params]], arch: str | None = None) -> type[MemoryMachine]:
    return MemoryMachine.for_component(cls, arch)


@conformance(
    "device",
    "every request completes once, barriers hold, zero copy, only granted pages, pinned frames stay, "
    "no guest sees another's data",
)
def _device(cls: type[Device[Params]]) -> type[DeviceMachine]:
    return DeviceMachine.for_component(cls)
