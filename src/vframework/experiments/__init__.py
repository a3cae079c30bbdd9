"""Named experiments: scenarios built in code, run, and reduced to tables and plots.

An experiment names components by their registered names only (the kernel never imports a
plugin); a missing plugin is reported with the installed names. ``vframework experiment``
lists them; ``vframework experiment NAME --out DIR`` writes ``NAME.json``, one CSV per table
and the plots, atomically.
"""

from __future__ import annotations

# Importing registers the experiments.
from vframework.experiments import cpu_shares, mmu
from vframework.experiments.base import (
    EXPERIMENTS,
    Experiment,
    ExperimentResult,
    experiment,
    run_experiment,
    write_experiment,
)

from vframework.experiments import modes  # noqa: E402,F401  isort: skip

__all__ = ["EXPERIMENTS", "Experiment", "ExperimentResult", "experiment", "run_experiment", "write_experiment"]
