"""The conformance kit: Hypothesis state machines any component can be checked against.

From a plugin author's own pytest run::

    from vframework.testing import HypervisorMachine
    TestMyScheduler = HypervisorMachine.for_components(scheduler=MyScheduler).TestCase

or from the command line: ``vframework check my-scheduler``.
"""

from .engine import EngineMachine
from .hypervisor import HypervisorMachine
from .kit import PROPERTIES, Outcome, Property, Target, conformance, run_checks, run_property, select_targets
from .memory import FrameTableMachine
from .profiles import PROFILES, load_profile, settings_for
from .shares import ShareMachine, water_fill
from .workload import WorkloadMachine

__all__ = [
    "EngineMachine", "FrameTableMachine", "ShareMachine", "water_fill", "HypervisorMachine", "WorkloadMachine",
    "PROPERTIES", "Property",
    "Target", "Outcome", "conformance", "run_checks", "run_property", "select_targets", "PROFILES",
    "load_profile", "settings_for",
]
