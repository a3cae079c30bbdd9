"""The conformance kit: Hypothesis state machines any component can be checked against.

From a plugin author's own pytest run (the ``vframework`` pytest plugin, see ``docs/pytest.md``)::

    from vframework.testing.pytest_plugin import ConformanceTests

    class TestMyScheduler(ConformanceTests):
        component = MyScheduler

or ``pytest --vframework-component my-scheduler``, or from the command line:
``vframework check my-scheduler``.

Every name below is imported on first use (PEP 562): the pytest plugin lives in this package
and is loaded by every pytest run, so importing the package must not load Hypothesis and the
kit's machines; ``from vframework.testing import X`` works as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vframework.testing.channels import EventChannelMachine, GrantTableMachine
    from vframework.testing.devices import DeviceMachine
    from vframework.testing.engine import EngineMachine
    from vframework.testing.hypervisor import HypervisorMachine
    from vframework.testing.kit import (
        PROPERTIES,
        Check,
        Outcome,
        Property,
        Status,
        Target,
        conformance,
        plan,
        run_check,
        run_checks,
        select_targets,
    )
    from vframework.testing.memory import FrameTableMachine
    from vframework.testing.profiles import PROFILES, load_profile, settings_for
    from vframework.testing.ring import RingMachine
    from vframework.testing.runner import DEFAULT_SHRINK_SECONDS, Failure, PropertyRun, run_property
    from vframework.testing.scheduling import SchedulingMachine
    from vframework.testing.shares import ShareMachine, water_fill
    from vframework.testing.translate import TranslationMachine
    from vframework.testing.workload import WorkloadMachine

#: Where each public name lives.
_EXPORTS = {
    "Check": "vframework.testing.kit",
    "DEFAULT_SHRINK_SECONDS": "vframework.testing.runner",
    "Failure": "vframework.testing.runner",
    "PropertyRun": "vframework.testing.runner",
    "SchedulingMachine": "vframework.testing.scheduling",
    "Status": "vframework.testing.kit",
    "plan": "vframework.testing.kit",
    "run_check": "vframework.testing.kit",
    "PROFILES": "vframework.testing.profiles",
    "PROPERTIES": "vframework.testing.kit",
    "DeviceMachine": "vframework.testing.devices",
    "EngineMachine": "vframework.testing.engine",
    "EventChannelMachine": "vframework.testing.channels",
    "FrameTableMachine": "vframework.testing.memory",
    "GrantTableMachine": "vframework.testing.channels",
    "HypervisorMachine": "vframework.testing.hypervisor",
    "Outcome": "vframework.testing.kit",
    "Property": "vframework.testing.kit",
    "RingMachine": "vframework.testing.ring",
    "ShareMachine": "vframework.testing.shares",
    "Target": "vframework.testing.kit",
    "TranslationMachine": "vframework.testing.translate",
    "WorkloadMachine": "vframework.testing.workload",
    "conformance": "vframework.testing.kit",
    "load_profile": "vframework.testing.profiles",
    "run_checks": "vframework.testing.kit",
    "run_property": "vframework.testing.runner",
    "select_targets": "vframework.testing.kit",
    "settings_for": "vframework.testing.profiles",
    "water_fill": "vframework.testing.shares",
}

__all__ = [
    "DEFAULT_SHRINK_SECONDS",
    "PROFILES",
    "PROPERTIES",
    "Check",
    "DeviceMachine",
    "EngineMachine",
    "EventChannelMachine",
    "Failure",
    "FrameTableMachine",
    "GrantTableMachine",
    "HypervisorMachine",
    "Outcome",
    "Property",
    "PropertyRun",
    "RingMachine",
    "SchedulingMachine",
    "ShareMachine",
    "Status",
    "Target",
    "TranslationMachine",
    "WorkloadMachine",
    "conformance",
    "load_profile",
    "plan",
    "run_check",
    "run_checks",
    "run_property",
    "select_targets",
    "settings_for",
    "water_fill",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        # An AttributeError lets ``from vframework.testing import kit`` import the submodule.
        raise AttributeError(f"module 'vframework.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
