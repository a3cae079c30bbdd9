"""Experiments are plugins: registered through ``register_experiments()``, one distribution per
name, and the kernel holds none."""

from __future__ import annotations

import importlib.util

import pytest
from vf_helpers import flat

from vframework import Experiment, ExperimentResult, PluginError, PluginManager, experiment, hookimpl


def test_the_kernel_holds_no_experiment() -> None:
    assert importlib.util.find_spec("vframework.experiments") is None


def test_two_distributions_registering_one_experiment_name(make_dist, cli) -> None:
    make_dist(
        "acme-mmu",
        """\
        from vframework import ExperimentResult, experiment, hookimpl

        @experiment("mmu", "another mmu")
        def mmu(plugins, quick):
            return ExperimentResult("mmu")

        @hookimpl
        def register_experiments():
            return [mmu]
        """,
    )
    output = flat(cli(["plugins"], code=2))
    assert "experiment 'mmu'" in output
    assert "acme-mmu" in output
    assert "vframework-experiments" in output


def test_register_experiments_returning_something_else(make_dist, cli) -> None:
    make_dist(
        "acme-muddled",
        """\
        from vframework import hookimpl

        def not_an_experiment(plugins, quick):
            pass

        @hookimpl
        def register_experiments():
            return [not_an_experiment]
        """,
    )
    output = cli(["plugins"], code=2)
    assert "acme-muddled" in output
    assert "register_experiments" in output
    assert "Experiment" in output


def test_duplicate_experiment_in_one_manager_is_refused_and_rolled_back() -> None:
    @experiment("acme-twice", "one")
    def once(plugins: PluginManager, quick: bool) -> ExperimentResult:
        return ExperimentResult("acme-twice")

    class First:
        @hookimpl
        def register_experiments(self) -> list[Experiment]:
            return [once]

    class Second:
        @hookimpl
        def register_experiments(self) -> list[Experiment]:
            return [once]

    pm = PluginManager(autoload=False)
    pm.register(First(), "acme-first")
    with pytest.raises(
        PluginError,
        match="plugin 'acme-second' registers the experiment 'acme-twice', "
        "which plugin 'acme-first' already registered",
    ):
        pm.register(Second(), "acme-second")
    assert set(pm.plugins) == {"acme-first"}
    assert pm.provider("experiment", "acme-twice") == "acme-first"
    with pytest.raises(KeyError, match="unknown experiment 'x'; installed: acme-twice"):
        pm.get_experiment("x")
