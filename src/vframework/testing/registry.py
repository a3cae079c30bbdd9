"""The conformance kit's registry: every property, declared per plugin kind.

A *property* is a Hypothesis state machine class built for one component class by a
factory. Adding the checks for a plugin kind is a matter of writing the machine and
declaring it with :func:`conformance`::

    @conformance("scheduler", "work conservation",
                 applies=lambda cls: None if cls.work_conserving else "declares work_conserving = False")
    def work_conservation(cls):
        return HypervisorMachine.for_components(scheduler=cls)

Kernel properties (the engine, the frame table) use kind ``"kernel"`` and get ``None``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from hypothesis.stateful import RuleBasedStateMachine

from vframework.api.contract import KINDS

__all__ = ["KERNEL", "PROPERTIES", "Property", "conformance"]

KERNEL = "kernel"


def _always(cls: Any) -> str | None:
    return None


@dataclass(frozen=True)
class Property:
    """A named check for every component of one kind."""

    kind: str
    #: Short and stable: a component's ``known_limitations`` names properties by it.
    name: str
    factory: Callable[..., type[RuleBasedStateMachine]]
    #: None when the property applies to the component class, else why not (shown as "not
    #: applicable"): a scheduler that declares it is not work-conserving, a mode with no hypercalls.
    applies: Callable[[Any], str | None] = _always
    #: What the property checks, one sentence (for the docs).
    checks: str = ""
    #: Examples to run, as a multiple of the profile's: cheap machines whose bugs need long or
    #: rare sequences run more (the detection rates in docs/testing.md are measured with it).
    examples: float = 1.0


PROPERTIES: list[Property] = []

#: A factory: component class (and, for modes, an architecture) -> state machine class.
_Factory = TypeVar("_Factory", bound=Callable[..., type[RuleBasedStateMachine]])


def conformance(
    kind: str,
    name: str,
    applies: Callable[[Any], str | None] | None = None,
    checks: str = "",
    examples: float = 1.0,
) -> Callable[[_Factory], _Factory]:
    """Declare a state-machine factory as the property ``name`` of plugin kind ``kind``.

    ``applies`` gets the component class (of the kind's base class; None for the kernel) and
    returns None, or why the property does not apply to it."""
    if kind != KERNEL and kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    if any(p.kind == kind and p.name == name for p in PROPERTIES):
        raise ValueError(f"a {kind} property called {name!r} is already declared")

    def register(factory: _Factory) -> _Factory:
        PROPERTIES.append(Property(kind, name, factory, applies or _always, checks, examples))
        return factory

    return register
