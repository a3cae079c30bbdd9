"""Experiments are plugins: found through ``register_experiments()``, listed, run and written
atomically by ``vframework experiment``; the kernel holds none.

The standard experiments' results are pinned by ``tests/test_golden.py``; here a small
third-party experiment (the one the docs show) stands in for them.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
from vf_helpers import results_left_behind

from vframework import Experiment, PluginError, PluginManager
from vframework.run.results import ResultsError, atomic_folder

DOCS = Path(__file__).resolve().parent.parent / "docs"
STANDARD = {"cpu-shares", "mmu", "modes"}


def _docs_example() -> str:
    page = (DOCS / "experiments" / "index.md").read_text(encoding="utf-8")
    (code,) = re.findall(r"```python\n(.*?)```", page, re.S)
    return code


def test_the_kernel_holds_no_experiment() -> None:
    assert importlib.util.find_spec("vframework.experiments") is None


def test_standard_experiments_come_from_their_distribution() -> None:
    pm = PluginManager()
    assert STANDARD <= set(pm.experiments)
    for name in STANDARD:
        assert isinstance(pm.get_experiment(name), Experiment)
        assert pm.provider("experiment", name) == "vframework-experiments"
    assert pm.plugins["vframework-experiments"].components == {"experiment": sorted(STANDARD)}


def test_experiment_list(cli) -> None:
    output = cli(["experiment"])
    for name in (*STANDARD, "vframework-experiments"):
        assert name in output


def test_unknown_experiment_lists_the_installed_ones(cli, tmp_path: Path) -> None:
    output = cli(["experiment", "nope", "--out", tmp_path / "out"], code=2)
    assert "unknown experiment 'nope'; installed: cpu-shares, mmu, modes" in " ".join(output.split())
    assert not (tmp_path / "out").exists()


def test_third_party_experiment_is_listed_run_and_written(make_dist, cli, tmp_path: Path) -> None:
    make_dist("acme-experiments", _docs_example(), version="0.7")
    listed = {p["name"]: p for p in json.loads(cli(["plugins", "--json"]))}
    assert listed["acme-experiments"]["components"]["experiment"] == ["acme-idle"]
    assert "acme-idle" in cli(["experiment"])

    out = tmp_path / "acme"
    output = cli(["experiment", "acme-idle", "--quick", "--out", out])
    assert f"results: {out}" in " ".join(output.split())
    assert sorted(p.name for p in out.iterdir()) == ["acme-idle.json", "cpu.csv"]
    doc = json.loads((out / "acme-idle.json").read_text(encoding="utf-8"))
    assert doc["experiment"] == "acme-idle" and doc["tables"]["cpu"][0]["vm"] == "idle"
    assert (out / "cpu.csv").read_text(encoding="utf-8").startswith("vm,cpu_run_ns\nidle,")
    # The folder is not overwritten.
    output = cli(["experiment", "acme-idle", "--quick", "--out", out], code=1)
    assert "already exists" in output


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
    output = " ".join(cli(["plugins"], code=2).split())
    assert "experiment 'mmu'" in output
    assert "acme-mmu" in output and "vframework-experiments" in output


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
    assert "acme-muddled" in output and "register_experiments" in output and "Experiment" in output


def test_experiment_that_raises_writes_nothing(make_dist, cli, tmp_path: Path) -> None:
    make_dist(
        "acme-crashy",
        """\
        from vframework import experiment, hookimpl

        @experiment("acme-crash", "always fails")
        def crash(plugins, quick):
            raise ZeroDivisionError("no figures today")

        @hookimpl
        def register_experiments():
            return [crash]
        """,
    )
    out = tmp_path / "results" / "crash"
    output = cli(["experiment", "acme-crash", "--out", out], code=1)
    assert "acme-crashy" in output and "no figures today" in output and "no results were written" in output
    assert not out.exists() and results_left_behind(out) == []


def test_experiment_needing_a_missing_component(make_dist, cli, tmp_path: Path) -> None:
    make_dist(
        "acme-needy",
        _docs_example().replace('"workload": "idle"', '"workload": "acme-absent"').replace("acme-idle", "acme-needy"),
    )
    output = cli(["experiment", "acme-needy", "--out", tmp_path / "out"], code=2)
    assert "not installed" in output and "acme-absent" in output
    assert not (tmp_path / "out").exists()


def test_duplicate_experiment_in_one_manager_is_refused_and_rolled_back() -> None:
    from vframework import ExperimentResult, experiment, hookimpl

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
    assert set(pm.plugins) == {"acme-first"} and pm.provider("experiment", "acme-twice") == "acme-first"
    with pytest.raises(KeyError, match="unknown experiment 'x'; installed: acme-twice"):
        pm.get_experiment("x")


# -- atomic_folder ------------------------------------------------------------------------------


def test_atomic_folder_appears_only_when_complete(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    with atomic_folder(out) as tmp:
        assert tmp.parent == out.parent and tmp.name.startswith(".b.") and not out.exists()
        (tmp / "x.txt").write_text("x", encoding="utf-8")
    assert (out / "x.txt").read_text(encoding="utf-8") == "x"
    assert [p.name for p in out.parent.iterdir()] == ["b"]


def test_atomic_folder_accepts_an_empty_folder(tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    with atomic_folder(out) as tmp:
        (tmp / "x.txt").write_text("x", encoding="utf-8")
    assert [p.name for p in out.iterdir()] == ["x.txt"]


def _write_half_then_fail(out: Path) -> None:
    with atomic_folder(out) as tmp:
        (tmp / "x.txt").write_text("x", encoding="utf-8")
        raise RuntimeError("half way")


def test_atomic_folder_leaves_nothing_on_failure(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="half way"):
        _write_half_then_fail(out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("existing", ["a file", "a non-empty folder"])
def test_atomic_folder_refuses_an_existing_target(existing: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    if existing == "a file":
        out.write_text("keep me", encoding="utf-8")
    else:
        out.mkdir()
        (out / "keep.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(ResultsError, match="already exists and is not an empty folder"), atomic_folder(out):
        pytest.fail("the body must not run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
