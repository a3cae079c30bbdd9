"""vframework: a virtual machine monitor simulator, built as a small kernel plus plugins."""

from importlib.metadata import PackageNotFoundError, version

from .components import (
    KINDS,
    Component,
    Device,
    MemoryPolicy,
    MemoryService,
    Mode,
    Params,
    Scheduler,
    Workload,
    WorkloadContext,
)
from .costs import CostModel
from .engine import Engine, Interrupt, Process, Signal
from .guest import GuestOS, GuestProcess
from .hardware import Machine, MachineMemory, PhysicalCPU
from .hypervisor import Hypervisor
from .ops import IO, Compute, Fault, ForkWait, KernelCall, Operation, Sleep, Syscall, Touch
from .plugins import PluginError, PluginManager, hookimpl
from .scenario import Duration, Scenario, ScenarioError, Size, load_scenario
from .simulation import Simulation
from .units import PAGE_SIZE, parse_duration, parse_size
from .vm import VCPU, VM, VCPUState

try:
    __version__ = version("vframework")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "__version__", "hookimpl", "KINDS", "Component", "Params", "Scheduler", "MemoryPolicy", "MemoryService",
    "Mode", "Device", "Workload", "WorkloadContext", "CostModel", "Engine", "Process", "Signal", "Interrupt",
    "GuestOS", "GuestProcess", "Machine", "MachineMemory", "PhysicalCPU", "Hypervisor", "Operation", "Compute",
    "Touch", "IO", "Sleep", "Syscall", "Fault", "KernelCall", "ForkWait", "PluginManager", "PluginError", "Scenario",
    "ScenarioError",
    "load_scenario", "Size", "Duration", "Simulation", "PAGE_SIZE", "parse_size", "parse_duration", "VM",
    "VCPU", "VCPUState",
]
