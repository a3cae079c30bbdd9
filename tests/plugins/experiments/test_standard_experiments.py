"""The standard experiments come from the vframework-experiments distribution and are listed.

Their results are pinned by ``tests/run/test_golden.py``."""

from __future__ import annotations

from golden.hashes import EXPERIMENTS

from vframework import Experiment, PluginManager

#: Every standard experiment has golden results, so the golden list is the standard list.
STANDARD = set(EXPERIMENTS)


def test_standard_experiments_come_from_their_distribution() -> None:
    pm = PluginManager()
    assert set(pm.experiments) >= STANDARD
    for name in STANDARD:
        assert isinstance(pm.get_experiment(name), Experiment)
        assert pm.provider("experiment", name) == "vframework-experiments"
    assert pm.plugins["vframework-experiments"].components == {"experiment": sorted(STANDARD)}


def test_experiment_list(cli) -> None:
    output = cli(["experiment"])
    for name in (*STANDARD, "vframework-experiments"):
        assert name in output
