"""The properties the kit ships, declared per kind (imported by the runner).

Names are short and stable: a component's ``known_limitations`` and the pytest plugin's test
ids use them. ``checks`` is the sentence docs/testing.md and ``vframework check --list`` show.
"""

from __future__ import annotations

from vframework.api.contract import Billing, Device, MemoryPolicy, MemoryService, Mode, Scheduler
from vframework.api.params import Params
from vframework.testing.channels import EventChannelMachine, GrantTableMachine
from vframework.testing.costs import CostMachine
from vframework.testing.devices import DeviceMachine
from vframework.testing.engine import EngineMachine
from vframework.testing.equivalence import EquivalenceMachine, ResourceControlMachine
from vframework.testing.hypervisor import HypervisorMachine
from vframework.testing.memory import FrameTableMachine
from vframework.testing.metering import MeterMachine, PricingMachine
from vframework.testing.mmu import MemoryMachine
from vframework.testing.registry import KERNEL, conformance
from vframework.testing.ring import RingMachine
from vframework.testing.runahead import RunAheadMachine
from vframework.testing.scheduling import SchedulingMachine, declared_share_bound, fairness_applies
from vframework.testing.shares import ShareMachine
from vframework.testing.sharing import SharingMachine
from vframework.testing.translate import TranslationMachine
from vframework.testing.workload import WorkloadMachine

conformance(KERNEL, "event order", checks="events fire in time order, FIFO among equals; cancelled ones never")(
    lambda _: EngineMachine
)
conformance(KERNEL, "frame conservation", checks="every frame is free or owned, and the per-state counts agree")(
    lambda _: FrameTableMachine
)
conformance(
    KERNEL,
    "block translation",
    checks="a translated block gives what interpreting it gives: results, state and every call into the mode",
)(lambda _: TranslationMachine)
conformance(
    KERNEL,
    "running ahead",
    checks="a hypervisor planning runs of operations ahead matches one stepping each operation",
)(lambda _: RunAheadMachine)
conformance(
    KERNEL, "ring", checks="Xen's I/O ring: pointer ordering modulo 2**32, one response per request, notification"
)(lambda _: RingMachine)
conformance(
    KERNEL, "event channels", checks="an upcall once per pending, unmasked port; never while masked; once on unmask"
)(lambda _: EventChannelMachine)
conformance(KERNEL, "grant tables", checks="a back end maps or copies only pages granted to it; in-use grants stay")(
    lambda _: GrantTableMachine
)
conformance(
    "workload",
    "well-formed operations",
    checks="every operation is well formed, and the same seed gives the same operations",
)(WorkloadMachine.for_component)


@conformance(
    "scheduler",
    "dispatch",
    checks="a vCPU runs on at most one CPU, only runnable vCPUs run, held VMs run nothing, and charged + "
    "hypervisor + idle time equals elapsed time x CPUs, in integer ns",
)
def _dispatch(cls: type[Scheduler[Params]]) -> type[HypervisorMachine]:
    return HypervisorMachine.for_components(("dispatch",), scheduler=cls)


@conformance(
    "scheduler",
    "work conservation",
    examples=3,
    applies=lambda cls: None if cls.work_conserving else "the scheduler declares work_conserving = False",
    checks="no CPU is left idle while a vCPU the scheduler does not cap is runnable",
)
def _work_conservation(cls: type[Scheduler[Params]]) -> type[SchedulingMachine]:
    return SchedulingMachine.for_component(cls, ("work conservation",))


@conformance(
    "scheduler",
    "liveness",
    examples=3,
    checks="a runnable vCPU of a VM with a non-zero share runs within liveness_bound_ns (default 1 s; "
    "capped VMs one cap window more)",
)
def _liveness(cls: type[Scheduler[Params]]) -> type[SchedulingMachine]:
    return SchedulingMachine.for_component(cls, ("liveness",))


@conformance(
    "scheduler",
    "fairness",
    examples=3,
    applies=fairness_applies,
    checks="every VM's CPU time within share_error_bound_ns of its weighted fluid share; with no declared "
    "bound, VMs of equal weight within a few slices of equal time",
)
def _fairness(cls: type[Scheduler[Params]]) -> type[ShareMachine]:
    return ShareMachine.for_component(cls, loose=declared_share_bound(cls) is None)


@conformance(
    "scheduler",
    "caps and reservations",
    examples=5,
    applies=lambda cls: (
        None if cls.cap_param or cls.reservation_param else "the scheduler declares no cap_param or reservation_param"
    ),
    checks="in every window of cap_window_ns a capped VM runs at most its cap, and a runnable VM at least its "
    "reservation (within cap_slack_ns)",
)
def _caps(cls: type[Scheduler[Params]]) -> type[SchedulingMachine]:
    return SchedulingMachine.for_component(cls, ("caps",))


@conformance(
    "scheduler",
    "accounting",
    examples=3,
    applies=lambda cls: (
        None if cls.accounted_ns is not Scheduler.accounted_ns else "the scheduler reports no accounting (accounted_ns)"
    ),
    checks="the time the scheduler's own accounting charged each vCPU equals the time it ran",
)
def _accounting(cls: type[Scheduler[Params]]) -> type[SchedulingMachine]:
    return SchedulingMachine.for_component(cls, ("accounting",))


@conformance(
    "mode",
    "isolation",
    checks="with guests touching memory under the scheduler double: frame conservation, every P2M entry names "
    "a frame of its own VM",
)
def _mode(cls: type[Mode[Params]], arch: str | None = None) -> type[HypervisorMachine]:
    return HypervisorMachine.for_components(("dispatch", "isolation"), mode=cls)


@conformance(
    "memory_policy",
    "targets",
    checks="targets within [0, configured memory] and each VM's [mem_min, mem_max]; on a host the VMs overcommit, "
    "an overcommitting policy's targets sum to at most the host's frames",
)
def _policy(cls: type[MemoryPolicy[Params]]) -> type[HypervisorMachine]:
    return HypervisorMachine.for_components(("targets", "isolation"), policy=cls)


@conformance(
    "memory_service",
    "sharing and reclamation",
    checks="invisible to guests, copy-on-write, reference counts equal mappings, shared frames never written, "
    "ballooned pages out of reach",
)
def _service(cls: type[MemoryService[Params]]) -> type[SharingMachine]:
    return SharingMachine.for_component(cls)


@conformance("mode", "running ahead", checks="running ahead equals stepping under the mode's paging")
def _run_ahead(cls: type[Mode[Params]], arch: str | None = None) -> type[RunAheadMachine]:
    return RunAheadMachine.for_components(mode=cls)


@conformance(
    "mode",
    "equivalence",
    checks="Popek & Goldberg: a guest program leaves the same guest-visible state as on bare metal",
)
def _equivalence(cls: type[Mode[Params]], arch: str | None = None) -> type[EquivalenceMachine]:
    return EquivalenceMachine.for_component(cls, arch)


@conformance(
    "mode",
    "resource control",
    applies=lambda cls: "the bare-metal baseline has no hypervisor to control" if cls.baseline else None,
    checks="hostile code and hypercalls change neither the real CPU, another VM nor frame ownership",
)
def _resource_control(cls: type[Mode[Params]], arch: str | None = None) -> type[ResourceControlMachine]:
    return ResourceControlMachine.for_component(cls, arch)


@conformance(
    "mode",
    "memory",
    checks="shadow and TLB coherence with guest page table o P2M, isolation, frame conservation, equivalence, "
    "copy-on-write",
)
def _memory(cls: type[Mode[Params]], arch: str | None = None) -> type[MemoryMachine]:
    return MemoryMachine.for_component(cls, arch)


@conformance(
    "mode",
    "costs",
    checks="every operation (blocks, system calls, interrupts, faults, I/O, notifications) and each charge in it "
    "costs at least what it costs on bare metal",
)
def _costs(cls: type[Mode[Params]], arch: str | None = None) -> type[CostMachine]:
    return CostMachine.for_component(cls, arch)


@conformance(
    "mode",
    "counters",
    checks="no counter decreases; each instruction handed to the hypervisor counts once, in its action's counter; "
    "each VM exit has one reason",
)
def _counters(cls: type[Mode[Params]], arch: str | None = None) -> type[CostMachine]:
    return CostMachine.for_component(cls, arch, costs=False)


@conformance(
    "device",
    "requests and isolation",
    examples=2,
    checks="every request completes once, barriers hold, zero copy, only granted pages, pinned frames stay, "
    "no guest sees another's data",
)
def _device(cls: type[Device[Params]]) -> type[DeviceMachine]:
    return DeviceMachine.for_component(cls)


@conformance(
    "billing",
    "conservation",
    checks="per interval, VMs' CPU + hypervisor + idle = length x CPUs; the ledger's quantities sum to the meter's "
    "totals and every total to its rounded lines, exactly",
)
def _conservation(cls: type[Billing[Params]]) -> type[MeterMachine]:
    return MeterMachine.for_component(cls)


@conformance(
    "billing",
    "pricing",
    checks="every amount a finite, non-negative Decimal, Fraction or int; the same line the same amount; more "
    "units never cost less",
)
def _pricing(cls: type[Billing[Params]]) -> type[PricingMachine]:
    return PricingMachine.for_component(cls)
