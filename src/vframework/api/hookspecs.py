"""Hook specifications: everything a plugin can provide or observe.

A plugin is a module (or object) registered under the ``vframework`` entry-point group. It
implements any of these hooks with the :data:`vframework.hookimpl` marker. Registration hooks
return component classes (subclasses of the kind's base class in :mod:`vframework.api.contract`);
lifecycle hooks let observers attach to a run. No hook is ever called on a per-instruction or
per-page path: registration happens once, lifecycle hooks a handful of times per run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from vframework.hv.vm import VM
    from vframework.run.scenario import Scenario
    from vframework.run.simulation import Simulation

hookspec = pluggy.HookspecMarker("vframework")

__all__ = [
    "hookspec", "register_schedulers", "register_memory_policies", "register_memory_services",
    "register_modes", "register_devices", "register_workloads", "simulation_configured",
    "simulation_started", "simulation_finished", "vm_created", "vm_destroyed",
]


@hookspec
def register_schedulers() -> list[type[Any]]:  # type: ignore[empty-body]
    """Return the scheduler classes this plugin provides.

    Each is a subclass of :class:`vframework.Scheduler` with a unique ``name``; a scenario
    selects one with ``[host] scheduler = "name"``.
    """


@hookspec
def register_memory_policies() -> list[type[Any]]:  # type: ignore[empty-body]
    """Return the memory policy classes this plugin provides (subclasses of
    :class:`vframework.MemoryPolicy`), selected by ``[host] memory_policy``."""


@hookspec
def register_memory_services() -> list[type[Any]]:  # type: ignore[empty-body]
    """Return the memory service classes this plugin provides (subclasses of
    :class:`vframework.MemoryService`: ballooning, page sharing, swap...), listed in
    ``[host] memory_services``."""


@hookspec
def register_modes() -> list[type[Any]]:  # type: ignore[empty-body]
    """Return the virtualization mode classes this plugin provides (subclasses of
    :class:`vframework.Mode`), selected per VM by ``mode``."""


@hookspec
def register_devices() -> list[type[Any]]:  # type: ignore[empty-body]
    """Return the virtual device classes this plugin provides (subclasses of
    :class:`vframework.Device`), attached per VM by ``devices``."""


@hookspec
def register_workloads() -> list[type[Any]]:  # type: ignore[empty-body]
    """Return the workload classes this plugin provides (subclasses of
    :class:`vframework.Workload`), selected per VM by ``workload``."""


@hookspec
def simulation_configured(scenario: Scenario) -> None:
    """Called once the scenario is validated and every component name resolved, before
    anything is built. ``scenario`` is the validated, immutable scenario."""


@hookspec
def simulation_started(simulation: Simulation) -> None:
    """Called after the machine, hypervisor and VMs are built, at simulated time 0, just
    before the engine runs. Observers may schedule their own engine processes here."""


@hookspec
def simulation_finished(simulation: Simulation, summary: dict[str, Any]) -> None:
    """Called when the run reaches its duration, with the summary about to be written.
    Observers may read it; the written results do not change."""


@hookspec
def vm_created(simulation: Simulation, vm: VM) -> None:
    """Called when a VM has been built (mode, guest OS, workload attached), before it runs."""


@hookspec
def vm_destroyed(simulation: Simulation, vm: VM) -> None:
    """Called when a VM ends: every vCPU has halted, or the simulation is over."""
