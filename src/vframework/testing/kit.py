"""The conformance kit's registry and runner (what ``vframework check`` drives).

A *property* is a Hypothesis state machine class built for one component class by a
factory. Adding the checks for a plugin kind is a matter of writing the machine and
declaring it here with :func:`conformance`::

    @conformance("scheduler", "work conservation")
    def work_conservation(cls):
        return SchedulerMachine.for_component(cls)

Kernel properties (the engine, the frame table) use kind ``"kernel"`` and get ``None``.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import reporting
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

from vframework.api.contract import KINDS
from vframework.testing.profiles import settings_for

__all__ = ["Property", "PROPERTIES", "conformance", "Target", "Outcome", "select_targets", "run_checks",
           "run_property"]

KERNEL = "kernel"


@dataclass(frozen=True)
class Property:
    """A named check for every component of one kind."""

    kind: str
    name: str
    factory: Callable[..., type[RuleBasedStateMachine]]
    #: Only components for which this returns True are checked (e.g. declared work-conserving).
    applies: Callable[[Any], bool] = lambda cls: True


PROPERTIES: list[Property] = []


def conformance(kind: str, name: str, applies: Callable[[Any], bool] | None = None) -> Callable[..., Any]:
    """Declare a state-machine factory as the property ``name`` of plugin kind ``kind``."""
    if kind != KERNEL and kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")

    def register(factory: Callable[[Any], type[RuleBasedStateMachine]]) -> Callable[[Any], type[RuleBasedStateMachine]]:
        PROPERTIES.append(Property(kind, name, factory, applies or (lambda cls: True)))
        return factory

    return register


@dataclass(frozen=True)
class Target:
    """A component to check: its name, kind and class (None for the kernel)."""

    name: str
    kind: str
    cls: Any


@dataclass
class Outcome:
    """The result of one property on one component."""

    component: str
    kind: str
    prop: str
    examples: int
    passed: bool
    report: str = ""


def select_targets(plugins: Any, names: list[str]) -> list[Target]:
    """Components named (any kind; ``kernel`` for the kernel's own), or all when none is named."""
    everything = [Target(KERNEL, KERNEL, None)] + [
        Target(name, kind, cls)
        for kind in KINDS
        for name, cls in sorted(plugins.components[kind].items())
    ]
    if not names:
        return everything
    chosen = []
    for name in names:
        found = [t for t in everything if t.name == name]
        if not found:
            known = ", ".join(t.name for t in everything)
            raise KeyError(f"no installed component called {name!r}; installed: {known}")
        chosen.extend(found)
    return chosen


def run_property(machine: type[RuleBasedStateMachine], profile: str = "default") -> tuple[int, str | None]:
    """Run one state machine; returns (examples run, failure report or None)."""
    count = [0]

    class Counted(machine):  # type: ignore[valid-type, misc]
        def __init__(self) -> None:
            count[0] += 1
            super().__init__()

    Counted.__name__ = machine.__name__
    Counted.__qualname__ = machine.__qualname__
    buf = io.StringIO()
    try:
        with reporting.with_reporter(lambda text: print(text, file=buf)):
            run_state_machine_as_test(Counted, settings=settings_for(profile))
    except Exception as exc:  # a failed property: Hypothesis has printed the minimal example
        # Hypothesis attaches the minimal failing steps to the exception as notes (PEP 678).
        notes = "\n".join(getattr(exc, "__notes__", []))
        return count[0], f"{buf.getvalue()}{notes}\n{type(exc).__name__}: {exc}".strip()
    return count[0], None


def run_checks(targets: list[Target], profile: str = "default", arch: str | None = None) -> list[Outcome]:
    """Run every property that applies to each target; modes run on ``arch`` (default: the
    first architecture each mode declares)."""
    from vframework.testing import properties  # noqa: F401  (registers the kit's properties)

    outcomes = []
    for target in targets:
        for prop in PROPERTIES:
            if prop.kind != target.kind or not prop.applies(target.cls):
                continue
            if target.kind == "mode":
                if arch is not None and arch not in target.cls.architectures:
                    continue
                machine = prop.factory(target.cls, arch)
                label = f"{prop.name} [{arch or target.cls.architectures[0]}]"
            else:
                machine, label = prop.factory(target.cls), prop.name
            examples, report = run_property(machine, profile)
            outcomes.append(Outcome(target.name, target.kind, label, examples, report is None, report or ""))
    return outcomes
