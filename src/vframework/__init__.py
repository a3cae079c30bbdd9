"""vframework: a virtual machine monitor simulator, built as a small kernel plus plugins."""

from importlib.metadata import PackageNotFoundError, version

from vframework.api.contract import (
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
from vframework.api.manager import PluginError, PluginManager, hookimpl
from vframework.guest.ops import IO, Compute, Fault, ForkWait, KernelCall, Operation, Sleep, Syscall, Touch
from vframework.guest.os import GuestOS, GuestProcess
from vframework.hv.hypervisor import Hypervisor
from vframework.hv.vm import VCPU, VM, VCPUState
from vframework.machine.costs import CostModel
from vframework.machine.hardware import Machine, MachineMemory, PhysicalCPU
from vframework.run.scenario import Duration, Scenario, ScenarioError, Size, load_scenario
from vframework.run.simulation import Simulation
from vframework.sim.engine import Engine, Interrupt, Process, Signal
from vframework.sim.units import PAGE_SIZE, parse_duration, parse_size

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
