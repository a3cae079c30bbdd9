"""vframework: a virtual machine monitor simulator, built as a small kernel plus plugins.

The plugin contract is :mod:`vframework.api` (re-exported here); the kernel's machinery is
in its layers (``sim``, ``machine``, ``guest``, ``hv``, ``run``) for those who drive it from
Python.
"""

from importlib.metadata import PackageNotFoundError, version

from vframework.api import (
    DISCONTINUITIES,
    IO,
    KINDS,
    ORDINARY,
    PAGE_SIZE,
    PAGING,
    Action,
    Architecture,
    Block,
    Component,
    Compute,
    Device,
    DeviceContext,
    Duration,
    Experiment,
    ExperimentResult,
    Fault,
    ForkWait,
    GuestCPU,
    KernelCall,
    MemoryContext,
    MemoryPolicy,
    MemoryService,
    Mode,
    ModeContext,
    Op,
    Operation,
    Params,
    Scheduler,
    Size,
    Sleep,
    Syscall,
    Touch,
    VCPUView,
    VMView,
    Workload,
    WorkloadContext,
    experiment,
    format_size,
    hookimpl,
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

try:
    __version__ = version("vframework")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "DISCONTINUITIES",
    "IO",
    # the plugin contract (vframework.api)
    "KINDS",
    "ORDINARY",
    "PAGE_SIZE",
    "PAGING",
    "VCPU",
    "VM",
    "Action",
    "Architecture",
    "Block",
    "Component",
    "Compute",
    "CostModel",
    "Device",
    "DeviceContext",
    "Duration",
    "Engine",
    "Experiment",
    "ExperimentResult",
    "Fault",
    "ForkWait",
    "GuestCPU",
    "GuestKernel",
    "GuestOS",
    "GuestProcess",
    "Hypervisor",
    "Interrupt",
    "KernelCall",
    "Machine",
    "MachineMemory",
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
    "Scenario",
    "ScenarioError",
    "Scheduler",
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
    "experiment",
    "format_size",
    "hookimpl",
    "load_scenario",
    "parse_duration",
    "parse_size",
    "port_share",
    "pyplot",
    "simulate",
    "timeseries_rows",
]
