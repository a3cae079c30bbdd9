"""The experiment contract: what a plugin returns from ``register_experiments()``.

An experiment builds scenarios in code, runs them through the plugin manager it is given and
reduces them to tables, figures, checks and plots. It names components by their registered
names only, so it works with whatever plugins are installed (a missing one is reported with the
installed names). The kernel ships none: the standard ones are the ``vframework-experiments``
distribution, and a third party ships its own the same way::

    from vframework import hookimpl
    from vframework.api.experiments import ExperimentResult, experiment

    @experiment("acme-latency", "wake-up latency of the acme scheduler")
    def acme_latency(plugins, quick):
        result = ExperimentResult("acme-latency")
        ...
        return result

    @hookimpl
    def register_experiments():
        return [acme_latency]

``vframework experiment NAME`` runs it and writes ``NAME.json``, one CSV per table and the plots
(see :func:`vframework.run.experiment.write_experiment`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vframework.api.manager import PluginManager

__all__ = ["Experiment", "ExperimentResult", "experiment", "pyplot"]


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the non-interactive Agg backend, imported on first use.

    matplotlib takes about half a second to import; plugins are loaded by every command, so
    plotting code calls this where it draws rather than importing matplotlib at the top.
    """
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


@dataclass
class ExperimentResult:
    """Tables (lists of row dicts), figures (name -> value), checks and plots of one experiment."""

    #: The experiment's name (``NAME.json`` is written from it).
    name: str
    #: Table name -> rows; each is written as ``<table>.csv`` (a name ending ``_detail`` is
    #: written but not printed by the command line).
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: Headline figures, name -> JSON-serializable value.
    figures: dict[str, Any] = field(default_factory=dict)
    #: Claims the experiment tests: name -> (holds, one-line statement with the measured value).
    checks: dict[str, tuple[bool, str]] = field(default_factory=dict)
    #: Plot file name -> function drawing it into a path.
    plots: dict[str, Callable[[Path], None]] = field(default_factory=dict)


@dataclass(frozen=True)
class Experiment:
    """A named experiment: ``run(plugins, quick)`` returns its :class:`ExperimentResult`.

    ``plugins`` is the :class:`~vframework.api.manager.PluginManager` whose components the
    experiment's scenarios use; ``quick`` asks for shorter simulated runs (a first look).
    """

    #: The name ``vframework experiment NAME`` selects (unique among installed experiments).
    name: str
    #: One line for ``vframework experiment`` and ``vframework plugins``.
    description: str
    #: The experiment itself.
    run: Callable[[PluginManager, bool], ExperimentResult]


def experiment(
    name: str, description: str
) -> Callable[[Callable[[PluginManager, bool], ExperimentResult]], Experiment]:
    """Decorator: turn ``fn(plugins, quick) -> ExperimentResult`` into an :class:`Experiment`."""

    def make(fn: Callable[[PluginManager, bool], ExperimentResult]) -> Experiment:
        return Experiment(name, description, fn)

    return make
