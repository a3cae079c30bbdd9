"""The conformance kit: Hypothesis state machines any component can be checked against.

From a plugin author's own pytest run::

    from vframework.testing import HypervisorMachine
    TestMyScheduler = HypervisorMachine.for_components(scheduler=MyScheduler).TestCase

or from the command line: ``vframework check my-scheduler``.
"""

from vframework.testing.channels import EventChannelMachine, GrantTableMachine
from vframework.testing.devices import DeviceMachine
from vframework.testing.engine import EngineMachine
from vframework.testing.hypervisor import HypervisorMachine
from vframework.testing.kit import (
    PROPERTIES,
    Outcome,
    Property,
    Target,
    conformance,
    run_checks,
    run_property,
    select_targets,
)
from vframework.testing.memory import FrameTableMachine
from vframework.testing.profiles import PROFILES, load_profile, settings_for
from vframework.testing.ring import RingMachine
from vframework.testing.shares import ShareMachine, water_fill
from vframework.testing.translate import TranslationMachine
from vframework.testing.workload import WorkloadMachine

__all__ = [
    "PROFILES",
    "PROPERTIES",
    "DeviceMachine",
    "EngineMachine",
    "EventChannelMachine",
    "FrameTableMachine",
    "GrantTableMachine",
    "HypervisorMachine",
    "Outcome",
    "Property",
    "RingMachine",
    "ShareMachine",
    "Target",
    "TranslationMachine",
    "WorkloadMachine",
    "conformance",
    "load_profile",
    "run_checks",
    "run_property",
    "select_targets",
    "settings_for",
    "water_fill",
]
