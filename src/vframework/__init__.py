"""vframework: a virtual machine monitor simulator, built as a small kernel plus plugins.

The plugin contract is :mod:`vframework.api` (re-exported here); the kernel's machinery is
in its layers (``sim``, ``machine``, ``guest``, ``hv``, ``run``) for those who drive it from
Python.

Every name below is imported on first use (PEP 562), so that ``import vframework`` (and
``vframework --help``) stays cheap; ``from vframework import X`` works as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vframework.api import (
        DISCONTINUITIES,
        IO,
        KINDS,
        ORDINARY,
        PAGE_SIZE,
        PAGING,
        RESOURCES,
        Action,
        Architecture,
        BackRing,
        Billing,
        Block,
        Component,
        Compute,
        ContentLayout,
        CostProfile,
        Device,
        DeviceContext,
        Duration,
        EventChannels,
        Experiment,
        ExperimentResult,
        Fault,
        ForkExec,
        ForkWait,
        FrontRing,
        GrantError,
        GrantTable,
        GuestCPU,
        IORequest,
        KernelCall,
        LedgerLine,
        MapUnmap,
        MemoryContext,
        MemoryPolicy,
        MemoryService,
        Mode,
        ModeContext,
        Op,
        Operation,
        Params,
        Resource,
        RingSlot,
        Scheduler,
        SharedRing,
        Size,
        Sleep,
        Syscall,
        Touch,
        VCPUView,
        VMView,
        Workload,
        WorkloadContext,
        cost_profiles,
        experiment,
        format_size,
        hookimpl,
        mapped_zeros,
        parse_price,
        parse_quantity,
        pyplot,
    )
    from vframework.api.manager import PluginError, PluginManager
    from vframework.guest.kernel import GuestKernel, port_share
    from vframework.guest.os import GuestOS, GuestProcess
    from vframework.hv.hypervisor import Hypervisor
    from vframework.hv.vm import VCPU, VM, VCPUState
    from vframework.machine.costs import CostModel
    from vframework.machine.hardware import Machine, MachineMemory, PhysicalCPU
    from vframework.run.experiment import simulate, timeseries_rows
    from vframework.run.scenario import Scenario, ScenarioError, load_scenario
    from vframework.run.simulation import Simulation
    from vframework.sim.engine import Engine, Interrupt, Process, Signal
    from vframework.sim.units import parse_duration, parse_size


#: Where each public name lives.
_EXPORTS = {
    "Action": "vframework.api",
    "Architecture": "vframework.api",
    "Block": "vframework.api",
    "Component": "vframework.api",
    "Compute": "vframework.api",
    "ContentLayout": "vframework.api",
    "CostModel": "vframework.machine.costs",
    "CostProfile": "vframework.api",
    "DISCONTINUITIES": "vframework.api",
    "Device": "vframework.api",
    "DeviceContext": "vframework.api",
    "Duration": "vframework.api",
    "Engine": "vframework.sim.engine",
    "Experiment": "vframework.api",
    "ExperimentResult": "vframework.api",
    "Fault": "vframework.api",
    "ForkExec": "vframework.api",
    "ForkWait": "vframework.api",
    "GuestCPU": "vframework.api",
    "GuestKernel": "vframework.guest.kernel",
    "GuestOS": "vframework.guest.os",
    "GuestProcess": "vframework.guest.os",
    "Hypervisor": "vframework.hv.hypervisor",
    "IO": "vframework.api",
    "BackRing": "vframework.api",
    "Billing": "vframework.api",
    "LedgerLine": "vframework.api",
    "RESOURCES": "vframework.api",
    "parse_price": "vframework.api",
    "parse_quantity": "vframework.api",
    "Resource": "vframework.api",
    "FrontRing": "vframework.api",
    "RingSlot": "vframework.api",
    "SharedRing": "vframework.api",
    "IORequest": "vframework.api",
    "EventChannels": "vframework.api",
    "GrantError": "vframework.api",
    "GrantTable": "vframework.api",
    "Interrupt": "vframework.sim.engine",
    "KINDS": "vframework.api",
    "KernelCall": "vframework.api",
    "MapUnmap": "vframework.api",
    "Machine": "vframework.machine.hardware",
    "MachineMemory": "vframework.machine.hardware",
    "MemoryContext": "vframework.api",
    "MemoryPolicy": "vframework.api",
    "MemoryService": "vframework.api",
    "Mode": "vframework.api",
    "ModeContext": "vframework.api",
    "ORDINARY": "vframework.api",
    "Op": "vframework.api",
    "Operation": "vframework.api",
    "PAGE_SIZE": "vframework.api",
    "PAGING": "vframework.api",
    "Params": "vframework.api",
    "PhysicalCPU": "vframework.machine.hardware",
    "PluginError": "vframework.api.manager",
    "PluginManager": "vframework.api.manager",
    "Process": "vframework.sim.engine",
    "Scenario": "vframework.run.scenario",
    "ScenarioError": "vframework.run.scenario",
    "Scheduler": "vframework.api",
    "Signal": "vframework.sim.engine",
    "Simulation": "vframework.run.simulation",
    "Size": "vframework.api",
    "Sleep": "vframework.api",
    "Syscall": "vframework.api",
    "Touch": "vframework.api",
    "VCPU": "vframework.hv.vm",
    "VCPUState": "vframework.hv.vm",
    "VCPUView": "vframework.api",
    "VM": "vframework.hv.vm",
    "VMView": "vframework.api",
    "Workload": "vframework.api",
    "WorkloadContext": "vframework.api",
    "cost_profiles": "vframework.api",
    "experiment": "vframework.api",
    "format_size": "vframework.api",
    "hookimpl": "vframework.api",
    "mapped_zeros": "vframework.api",
    "load_scenario": "vframework.run.scenario",
    "parse_duration": "vframework.sim.units",
    "parse_size": "vframework.sim.units",
    "port_share": "vframework.guest.kernel",
    "pyplot": "vframework.api",
    "simulate": "vframework.run.experiment",
    "timeseries_rows": "vframework.run.experiment",
}

__all__ = [
    "DISCONTINUITIES",
    "IO",
    # the plugin contract (vframework.api)
    "KINDS",
    "ORDINARY",
    "PAGE_SIZE",
    "PAGING",
    "RESOURCES",
    "VCPU",
    "VM",
    "Action",
    "Architecture",
    "BackRing",
    "Billing",
    "Block",
    "Component",
    "Compute",
    "ContentLayout",
    "CostModel",
    "CostProfile",
    "Device",
    "DeviceContext",
    "Duration",
    "Engine",
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
    "GuestKernel",
    "GuestOS",
    "GuestProcess",
    "Hypervisor",
    "IORequest",
    "Interrupt",
    "KernelCall",
    "LedgerLine",
    "Machine",
    "MachineMemory",
    "MapUnmap",
    "MemoryContext",
    "MemoryPolicy",
    "MemoryService",
    "Mode",
    "ModeContext",
    "Op",
    "Operation",
    "Params",
    "PhysicalCPU",
    "PluginError",
    # the kernel
    "PluginManager",
    "Process",
    "Resource",
    "RingSlot",
    "Scenario",
    "ScenarioError",
    "Scheduler",
    "SharedRing",
    "Signal",
    "Simulation",
    "Size",
    "Sleep",
    "Syscall",
    "Touch",
    "VCPUState",
    "VCPUView",
    "VMView",
    "Workload",
    "WorkloadContext",
    "__version__",
    "cost_profiles",
    "experiment",
    "format_size",
    "hookimpl",
    "load_scenario",
    "mapped_zeros",
    "parse_duration",
    "parse_price",
    "parse_quantity",
    "parse_size",
    "port_share",
    "pyplot",
    "simulate",
    "timeseries_rows",
]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415  (only when asked)

    try:
        return version("vframework")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _version()
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module 'vframework' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
