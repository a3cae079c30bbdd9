"""The conformance kit's registry: every property, declared per plugin kind.

A *property* is a Hypothesis state machine class built for one component class by a
factory. Adding the checks for a plugin kind is a matter of writing the machine and
declaring it with :func:`conformance`::

    @conformance("scheduler", "work conservation")
    def work_conservation(cls):
        return SchedulerMachine.for_component(cls)

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


@dataclass(frozen=True)
class Property:
    """A named check for every component of one kind."""

    kind: str
    name: str
    factory: Callable[..., type[RuleBasedStateMachine]]
    #: Only components for which this returns True are checked (e.g. declared work-conserving).
    applies: Callable[[Any], bool] = lambda cls: True


PROPERTIES: list[Property] = []

#: A factory: component class (and, for modes, an architecture) -> state machine class.
_Factory = TypeVar("_Factory", bound=Callable[..., type[RuleBasedStateMachine]])


def conformance(kind: str, name: str, applies: Callable[[Any], bool] | None = None) -> Callable[[_Factory], _Factory]:
    """Declare a state-machine factory as the property ``name`` of plugin kind ``kind``.

    ``applies`` gets the component class (of the kind's base class; None for the kernel)."""
    if kind != KERNEL and kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")

    def register(factory: _Factory) -> _Factory:
        PROPERTIES.append(Property(kind, name, factory, applies or (lambda cls: True)))
        return factory

    return register
