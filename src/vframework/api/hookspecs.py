"""Hook specifications: everything a plugin can provide or observe.

A plugin is a module (or object) registered under the ``vframework`` entry-point group. It
implements any of these hooks with the :data:`vframework.hookimpl` marker.

* Registration hooks return component classes (subclasses of the kind's base class in
  :mod:`vframework.api.contract`) or experiments (:class:`vframework.api.experiments.Experiment`).
  Each plugin's are called once, when it is registered.
* Lifecycle hooks let observers attach to a run. They are called through pluggy, in
  registration order (entry points are registered sorted by name); pluggy's hookimpl options
  keep their meaning: ``tryfirst=True`` runs before the other observers, ``trylast=True`` after
  them, ``hookwrapper=True`` / ``wrapper=True`` wraps the call. An exception raised by an
  implementation stops the run with an error naming the plugin and the hook.

No hook is ever called on a per-instruction or per-page path: registration happens once,
lifecycle hooks a handful of times per run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from vframework.api.contract import Billing, Device, MemoryPolicy, MemoryService, Mode, Scheduler, Workload
    from vframework.api.experiments import Experiment
    from vframework.api.params import Params
    from vframework.api.views import ScenarioView, SimulationView, Summary, VMView

hookspec = pluggy.HookspecMarker("vframework")

__all__ = [
    "hookspec",
    "register_billing",
    "register_devices",
    "register_experiments",
    "register_memory_policies",
    "register_memory_services",
    "register_modes",
    "register_schedulers",
    "register_workloads",
    "simulation_configured",
    "simulation_finished",
    "simulation_started",
    "vm_created",
    "vm_destroyed",
]


@hookspec
def register_schedulers() -> list[type[Scheduler[Params]]]:
    """Return the scheduler classes this plugin provides.

    Each is a subclass of :class:`vframework.Scheduler` with a unique ``name``; a scenario
    selects one with ``[host] scheduler = "name"``.

    :return: scheduler classes (not instances). A class that leaves an abstract method of
        its base unimplemented, or whose name another plugin registered, is refused with an
        error naming the plugin.
    """


@hookspec
def register_memory_policies() -> list[type[MemoryPolicy[Params]]]:
    """Return the memory policy classes this plugin provides, selected by ``[host] memory_policy``.

    :return: subclasses of :class:`vframework.MemoryPolicy` (not instances), each with a unique
        ``name`` and every abstract method implemented.
    """


@hookspec
def register_memory_services() -> list[type[MemoryService[Params]]]:
    """Return the memory service classes this plugin provides (ballooning, page sharing,
    swap...), listed in ``[host] memory_services``.

    :return: subclasses of :class:`vframework.MemoryService` (not instances), each with a
        unique ``name`` and every abstract method implemented.
    """


@hookspec
def register_modes() -> list[type[Mode[Params]]]:
    """Return the virtualization mode classes this plugin provides, selected per VM by ``mode``.

    :return: subclasses of :class:`vframework.Mode` (not instances), each with a unique
        ``name`` and every abstract method implemented.
    """


@hookspec
def register_devices() -> list[type[Device[Params]]]:
    """Return the virtual device classes this plugin provides, attached per VM by ``devices``.

    :return: subclasses of :class:`vframework.Device` (not instances), each with a unique
        ``name`` and every abstract method implemented.
    """


@hookspec
def register_workloads() -> list[type[Workload[Params]]]:
    """Return the workload classes this plugin provides, selected per VM by ``workload``.

    :return: subclasses of :class:`vframework.Workload` (not instances), each with a unique
        ``name`` and every abstract method implemented.
    """


@hookspec
def register_billing() -> list[type[Billing[Params]]]:
    """Return the pricing classes this plugin provides, selected by ``[billing] pricing``.

    A pricing turns each metered ledger line (interval x VM x resource) into an amount: the
    price sheet's flat rate, tiers, reservations... The kernel meters, rounds and totals.

    :return: subclasses of :class:`vframework.Billing` (not instances), each with a unique
        ``name`` and :meth:`~vframework.Billing.charge` implemented.
    """


@hookspec
def register_experiments() -> list[Experiment]:
    """Return the experiments this plugin provides, run by ``vframework experiment NAME``.

    An experiment builds scenarios in code from registered component names, runs them and
    reduces them to tables, figures, checks and plots (see :mod:`vframework.api.experiments`).

    :return: :class:`vframework.api.experiments.Experiment` objects (the
        :func:`~vframework.api.experiments.experiment` decorator makes one from a function),
        each with a ``name`` no other plugin registers.
    """


@hookspec
def simulation_configured(scenario: ScenarioView) -> None:
    """Called once the scenario is validated and every component name resolved, before
    anything is built.

    :param scenario: the validated, immutable scenario (a :class:`vframework.Scenario`; an
        observer may rely on what :class:`vframework.api.views.ScenarioView` declares).
    :return: nothing (a returned value is ignored).
    """


@hookspec
def simulation_started(simulation: SimulationView) -> None:
    """Called after the machine, hypervisor and VMs are built, at simulated time 0, just
    before the engine runs. Observers may schedule their own engine processes here.

    :param simulation: the simulation about to run (a :class:`vframework.Simulation`, read
        through :class:`vframework.api.views.SimulationView`); its ``engine`` and ``vms`` exist.
    :return: nothing (a returned value is ignored).
    """


@hookspec
def simulation_finished(simulation: SimulationView, summary: Summary) -> None:
    """Called when the run reaches its duration, with the summary about to be written.

    :param simulation: the finished simulation (a :class:`vframework.Simulation`, read through
        :class:`vframework.api.views.SimulationView`).
    :param summary: a copy of the summary that is written to ``summary.json``; observers may
        read it, and changing it does not change the written results.
    :return: nothing (a returned value is ignored).
    """


@hookspec
def vm_created(simulation: SimulationView, vm: VMView) -> None:
    """Called when a VM has been built (mode, guest OS, workload attached), before it runs.

    :param simulation: the simulation the VM belongs to (see :class:`vframework.api.views.SimulationView`).
    :param vm: the new VM (a :class:`vframework.VM`, read through :class:`vframework.api.views.VMView`).
    :return: nothing (a returned value is ignored).
    """


@hookspec
def vm_destroyed(simulation: SimulationView, vm: VMView) -> None:
    """Called when a VM ends: every vCPU has halted, or the simulation is over.

    :param simulation: the simulation the VM belonged to (see :class:`vframework.api.views.SimulationView`).
    :param vm: the VM that ended (see :class:`vframework.api.views.VMView`); its counters are final.
    :return: nothing (a returned value is ignored).
    """
