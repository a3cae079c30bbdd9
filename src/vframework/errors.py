"""Every error vframework raises on purpose, under one base, so a caller catches one type.

::

    VframeworkError
    ├── ScenarioError        a scenario failed validation (every problem listed)
    ├── PluginError          a plugin failed to load, registered nonsense, or raised
    ├── ResultsError         a results folder cannot be written where asked
    ├── DecimalUnitWarning   a size in a decimal unit ("4GB"): a warning, not an error
    └── SimulationError      a run cannot go on
        ├── NoProgress       a workload never lets simulated time advance
        └── OutOfMemory      no machine frame is left for a request
            ├── HostOutOfMemory   ...to back a guest page
            └── GuestOutOfMemory  the guest has no free page and no swap left
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DecimalUnitWarning",
    "GrantError",
    "GuestOutOfMemory",
    "HostOutOfMemory",
    "NoProgress",
    "OutOfMemory",
    "PluginError",
    "Problem",
    "ReplayError",
    "ResultsError",
    "ScenarioError",
    "SimulationError",
    "VframeworkError",
]


class VframeworkError(Exception):
    """The base of every error vframework raises on purpose."""


class DecimalUnitWarning(VframeworkError, UserWarning):
    """A size was written in a decimal unit ("4GB" = 4,000,000,000 bytes), which is rarely what a
    memory size means: the command line prints it as a one-line warning."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a scenario: the file, the key path and what was expected."""

    file: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.path}: {self.message}" if self.path else f"{self.file}: {self.message}"


class ScenarioError(VframeworkError, ValueError):
    """A scenario failed validation; ``problems`` lists every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class PluginError(VframeworkError, RuntimeError):
    """A plugin failed to load, registered something invalid, or raised in a hook."""


class ResultsError(VframeworkError, RuntimeError):
    """The results folder cannot be written where asked."""


class SimulationError(VframeworkError, RuntimeError):
    """A run cannot go on."""


class NoProgress(SimulationError):
    """A workload keeps yielding operations that take no time."""


class OutOfMemory(SimulationError):
    """No free machine frame is left for a request."""


class HostOutOfMemory(OutOfMemory):
    """The host has no machine frame left to back a guest page."""


class GuestOutOfMemory(OutOfMemory):
    """The guest has no free guest-physical page and no swap space left."""


class GrantError(VframeworkError, ValueError):
    """A grant-table operation was refused: a bad reference, the wrong domain, a write through
    a read-only grant, revoking an entry in use, or a full table."""


class ReplayError(VframeworkError, ValueError):
    """A conformance-kit replay file that cannot be used: unreadable, not a replay file, or
    written by another Hypothesis version."""
