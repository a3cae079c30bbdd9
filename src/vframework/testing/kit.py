"""The conformance kit's runner (what ``vframework check`` drives): choose the components,
run every property declared in :mod:`vframework.testing.registry` that applies to each."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hypothesis import reporting
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

# The properties module declares the kit's properties when imported; the runner needs them all.
import vframework.testing.properties  # noqa: F401
from vframework.api.contract import KINDS
from vframework.testing.profiles import settings_for
from vframework.testing.registry import KERNEL, PROPERTIES, Property, conformance

if TYPE_CHECKING:
    from vframework.api.manager import PluginManager

__all__ = ["PROPERTIES", "Outcome", "Property", "Target", "conformance", "run_checks", "run_property", "select_targets"]


@dataclass(frozen=True)
class Target:
    """A component to check: its name, kind and class (None for the kernel)."""

    name: str
    kind: str
    #: A subclass of the kind's base class (Any: its attributes are read by kind, e.g. a
    #: mode's ``architectures``), or None for the kernel.
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


def select_targets(plugins: PluginManager, names: list[str]) -> list[Target]:
    """Components named (any kind; ``kernel`` for the kernel's own), or all when none is named."""
    everything = [Target(KERNEL, KERNEL, None)] + [
        Target(name, kind, cls) for kind in KINDS for name, cls in sorted(plugins.components[kind].items())
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
