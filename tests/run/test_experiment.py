"""``vframework experiment``: runs an installed experiment and writes its results atomically.

The standard experiments' results are pinned by ``tests/run/test_golden.py``; here a small
third-party experiment (the one the docs show) stands in for them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from vf_helpers import DOCS, flat, results_left_behind


def _docs_example() -> str:
    page = (DOCS / "experiments" / "index.md").read_text(encoding="utf-8")
    (code,) = re.findall(r"```python\n(.*?)```", page, re.S)
    return code


def test_unknown_experiment_lists_the_installed_ones(cli, tmp_path: Path) -> None:
    output = cli(["experiment", "nope", "--out", tmp_path / "out"], code=2)
    installed = "aa06, cpu-shares, esx-balloon, esx-idle-tax, esx-sampling, esx-sharing, io, mmu, modes"
    assert f"unknown experiment 'nope'; installed: {installed}" in flat(output)
    assert not (tmp_path / "out").exists()


def test_help_lists_the_installed_experiments(cli) -> None:
    output = flat(cli(["experiment", "--help"]))
    assert "Installed experiments:" in output
    assert "esx-idle-tax the idle memory tax moves memory" in output


def test_third_party_experiment_is_listed_run_and_written(make_dist, cli, tmp_path: Path) -> None:
    make_dist("acme-experiments", _docs_example(), version="0.7")
    listed = {p["name"]: p for p in json.loads(cli(["plugins", "--json"]))}
    assert listed["acme-experiments"]["components"]["experiment"] == ["acme-idle"]
    assert "acme-idle" in cli(["experiment"])

    out = tmp_path / "acme"
    output = cli(["experiment", "acme-idle", "--quick", "--out", out])
    assert f"results: {out}" in flat(output)
    assert sorted(p.name for p in out.iterdir()) == ["acme-idle.json", "cpu.csv"]
    doc = json.loads((out / "acme-idle.json").read_text(encoding="utf-8"))
    assert doc["experiment"] == "acme-idle"
    assert doc["tables"]["cpu"][0]["vm"] == "idle"
    assert (out / "cpu.csv").read_text(encoding="utf-8").startswith("vm,cpu_run_ns\nidle,")
    # The folder is not overwritten.
    output = cli(["experiment", "acme-idle", "--quick", "--out", out], code=1)
    assert "already exists" in output


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
    assert "acme-crashy" in output
    assert "no figures today" in output
    assert "no results were written" in output
    assert not out.exists()
    assert results_left_behind(out) == []


def test_experiment_needing_a_missing_component(make_dist, cli, tmp_path: Path) -> None:
    make_dist(
        "acme-needy",
        _docs_example().replace('"workload": "idle"', '"workload": "acme-absent"').replace("acme-idle", "acme-needy"),
    )
    output = cli(["experiment", "acme-needy", "--out", tmp_path / "out"], code=2)
    assert "not installed" in output
    assert "acme-absent" in output
    assert not (tmp_path / "out").exists()
