"""The plugin contract, in one place: everything a plugin imports from vframework.

* the kind base classes (:class:`Scheduler`, :class:`MemoryPolicy`, :class:`MemoryService`,
  :class:`Mode`, :class:`Device`, :class:`Workload`, :class:`Billing`), abstract and generic over their
  parameter model (:class:`Params`, with the :data:`Size` and :data:`Duration` field types);
* the views and contexts components receive (:class:`VCPUView`, :class:`VMView`,
  :class:`ModeContext`, :class:`MemoryContext`, :class:`DeviceContext`,
  :class:`WorkloadContext`);
* what a mode classifies (:class:`Op`, :data:`ORDINARY`, :class:`Action`, :class:`Architecture`,
  :class:`Block`, :class:`GuestCPU`) and what a workload yields (the operations);
* what is metered and priced (:data:`RESOURCES`, :class:`LedgerLine`, :func:`parse_price`);
* :data:`hookimpl`, the marker of hook implementations;
* :func:`mapped_zeros`, a large array whose memory goes back to the system when freed (for a
  component's tables that grow);
* what an experiment plugin returns (:class:`Experiment`, :func:`experiment`,
  :class:`ExperimentResult`), and the cost profiles it runs on (:func:`cost_profiles`: which
  values were fitted to which published figure).

Layer 4 of the kernel: it imports only the layers below (sim, machine, guest).
"""

from vframework.api.contract import (
    DISCONTINUITIES,
    KINDS,
    PAGING,
    Billing,
    Component,
    Device,
    MemoryPolicy,
    MemoryService,
    Mode,
    Scheduler,
    Workload,
)
from vframework.api.experiments import Experiment, ExperimentResult, experiment, pyplot
from vframework.api.manager import hookimpl
from vframework.api.params import Duration, Params, Size
from vframework.api.pricing import RESOURCES, LedgerLine, Resource, parse_price, parse_quantity
from vframework.api.views import (
    DeviceContext,
    MemoryContext,
    ModeContext,
    VCPUView,
    VMView,
    WorkloadContext,
)
from vframework.guest.mm import ContentLayout
from vframework.guest.ops import (
    IO,
    Compute,
    Fault,
    ForkExec,
    ForkWait,
    IORequest,
    KernelCall,
    MapUnmap,
    Operation,
    Sleep,
    Syscall,
    Touch,
)
from vframework.io.events import EventChannels
from vframework.io.grants import GrantError, GrantTable
from vframework.io.ring import BackRing, FrontRing, RingSlot, SharedRing
from vframework.machine.costs import Profile as CostProfile
from vframework.machine.costs import profiles as cost_profiles
from vframework.machine.cpu import Action, GuestCPU
from vframework.machine.isa import ORDINARY, Architecture, Block, Op
from vframework.sim.arrays import mapped_zeros
from vframework.sim.units import PAGE_SIZE, format_size, parse_size

__all__ = [
    "DISCONTINUITIES",
    "IO",
    "KINDS",
    "ORDINARY",
    "PAGE_SIZE",
    "PAGING",
    "RESOURCES",
    "Action",
    "Architecture",
    "BackRing",
    "Billing",
    "Block",
    "Component",
    "Compute",
    "ContentLayout",
    "CostProfile",
    "Device",
    "DeviceContext",
    "Duration",
    "EventChannels",
    "Experiment",
    "ExperimentResult",
    "Fault",
    "ForkExec",
    "ForkWait",
    "FrontRing",
    "GrantError",
    "GrantTable",
    "GuestCPU",
    "IORequest",
    "KernelCall",
    "LedgerLine",
    "MapUnmap",
    "MemoryContext",
    "MemoryPolicy",
    "MemoryService",
    "Mode",
    "ModeContext",
    "Op",
    "Operation",
    "Params",
    "Resource",
    "RingSlot",
    "Scheduler",
    "SharedRing",
    "Size",
    "Sleep",
    "Syscall",
    "Touch",
    "VCPUView",
    "VMView",
    "Workload",
    "WorkloadContext",
    "cost_profiles",
    "experiment",
    "format_size",
    "hookimpl",
    "mapped_zeros",
    "parse_price",
    "parse_quantity",
    "parse_size",
    "pyplot",
]
