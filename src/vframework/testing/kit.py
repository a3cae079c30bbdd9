"""The conformance kit's runner (what ``vframework check`` and the pytest plugin drive): choose
the components, plan every property declared in :mod:`vframework.testing.registry` for each
(or say why none applies), and run them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hypothesis.stateful import RuleBasedStateMachine

# The properties module declares the kit's properties when imported; the runner needs them all.
import vframework.testing.properties  # noqa: F401
from vframework.api.contract import KINDS
from vframework.testing.registry import KERNEL, PROPERTIES, Property, conformance
from vframework.testing.runner import DEFAULT_SHRINK_SECONDS, Failure, PropertyRun, run_property

if TYPE_CHECKING:
    from vframework.api.manager import PluginManager

__all__ = [
    "PROPERTIES",
    "Check",
    "Outcome",
    "Property",
    "Status",
    "Target",
    "conformance",
    "plan",
    "run_check",
    "run_checks",
    "select_targets",
]


class Status:
    """What an :class:`Outcome` says (the words ``vframework check`` prints)."""

    PASS = "pass"
    FAIL = "FAIL"
    NOT_APPLICABLE = "not applicable"
    NO_PROPERTY = "no property"
    #: Failed, as the component declares it does (``known_limitations``).
    KNOWN = "known limitation"
    #: Declared as a known limitation, yet held.
    UNEXPECTED_PASS = "pass (declared a limitation)"


@dataclass(frozen=True)
class Target:
    """A component to check: its name, kind and class (None for the kernel)."""

    name: str
    kind: str
    #: A subclass of the kind's base class (Any: its attributes are read by kind, e.g. a
    #: mode's ``architectures``), or None for the kernel.
    cls: Any


@dataclass(frozen=True)
class Check:
    """One property planned for one component: a machine to run, or why there is none."""

    target: Target
    #: The property's name, with the architecture for modes (``"equivalence [x86]"``).
    label: str
    prop: Property | None = None
    machine: type[RuleBasedStateMachine] | None = None
    #: Why nothing runs: the property does not apply, or no property exists for the component.
    skip: str | None = None
    #: The component's own word that it fails this property (its ``known_limitations``).
    limitation: str | None = None

    @property
    def id(self) -> str:
        """``component::property``: how the pytest plugin and ``--replay`` files name a check."""
        return f"{self.target.name}::{self.label}"


@dataclass
class Outcome:
    """The result of one property on one component."""

    component: str
    kind: str
    prop: str
    status: str
    examples: int = 0
    failures: list[Failure] = field(default_factory=list)
    #: Why the property was not run, or the declared limitation.
    reason: str = ""
    seconds: float = 0.0
    shrink_stopped: bool = False
    run: PropertyRun | None = None

    @property
    def passed(self) -> bool:
        return self.status != Status.FAIL

    @property
    def report(self) -> str:
        return (self.run.report if self.run else None) or ""


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


def _applies(prop: Property, cls: Any) -> str | None:
    try:
        return prop.applies(cls)
    except Exception:  # declarations that cannot be read: run the property, which reports it
        return None


def plan(targets: list[Target], arch: str | None = None) -> list[Check]:
    """Every property of each target's kind, planned: modes on ``arch`` (default: the first
    architecture each mode declares). A target whose kind has no property gets one check that
    says so."""
    checks: list[Check] = []
    for target in targets:
        declared = (target.cls.known_limitations if target.cls is not None else None) or {}
        props = [p for p in PROPERTIES if p.kind == target.kind]
        if not props:
            checks.append(Check(target, "-", skip=f"the kit has no property for kind {target.kind!r}"))
            continue
        for prop in props:
            label, machine, skip = prop.name, None, _applies(prop, target.cls)
            if target.kind == "mode":
                on = arch or target.cls.architectures[0]
                label = f"{prop.name} [{on}]"
                if on not in target.cls.architectures:
                    skip = skip or f"the mode runs only on {', '.join(target.cls.architectures)}"
                elif skip is None:
                    machine = prop.factory(target.cls, on)
            elif skip is None:
                machine = prop.factory(target.cls)
            checks.append(Check(target, label, prop, machine, skip, declared.get(prop.name)))
    return checks


def run_check(
    check: Check,
    profile: str = "default",
    shrink_seconds: float = DEFAULT_SHRINK_SECONDS,
    replay: str | None = None,
) -> Outcome:
    """Run one planned check (nothing runs for a skipped one)."""
    t = check.target
    if check.machine is None:
        status = Status.NO_PROPERTY if check.prop is None else Status.NOT_APPLICABLE
        return Outcome(t.name, t.kind, check.label, status, reason=check.skip or "")
    scale = check.prop.examples if check.prop is not None else 1.0
    run = run_property(check.machine, profile, shrink_seconds=shrink_seconds, replay=replay, examples=scale)
    if check.limitation is not None:
        status = Status.UNEXPECTED_PASS if run.passed else Status.KNOWN
    else:
        status = Status.PASS if run.passed else Status.FAIL
    return Outcome(
        t.name,
        t.kind,
        check.label,
        status,
        run.examples,
        run.failures,
        check.limitation or "",
        run.seconds,
        run.shrink_stopped,
        run,
    )


def run_checks(
    targets: list[Target],
    profile: str = "default",
    arch: str | None = None,
    shrink_seconds: float = DEFAULT_SHRINK_SECONDS,
) -> list[Outcome]:
    """Plan and run every check of the targets, in order."""
    return [run_check(c, profile, shrink_seconds) for c in plan(targets, arch)]
