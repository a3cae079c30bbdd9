"""A results folder records how it was made, and `vframework run --from DIR` reruns it exactly."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from vf_helpers import ROOT, summary_of

#: Every file whose bytes are the run's result (provenance.json records the time and versions).
RESULT_FILES = ("summary.json", "timeseries.csv", "ledger.csv", "invoice.json", "scenario.toml")
GOLDEN = sorted((ROOT / "tests" / "golden" / "scenarios").glob("*.toml"))


def test_provenance_records_how_the_run_was_made(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cli(["run", "--set", "duration=300ms", "--set", "host.cpus=3", "--seed", "7", "--out", out, "-q", "--no-plot"])
    prov = json.loads((out / "provenance.json").read_text(encoding="utf-8"))
    assert prov["seed"] == 7
    assert prov["command"][0] == "vframework"
    assert prov["scenario"]["overrides"] == ["duration=300ms", "host.cpus=3"]
    assert "[[vm]]" in prov["scenario"]["given"]  # the embedded default scenario's text
    resolved = prov["scenario"]["resolved"]
    assert resolved["seed"] == 7
    assert resolved["host"]["cpus"] == 3
    assert resolved["duration"] == 300_000_000
    # Every default is spelled out: the scheduler's parameters, each VM's mode parameters.
    assert resolved["host"]["scheduler"]["name"] == "fair"
    assert "tslice" in resolved["host"]["scheduler"]
    assert resolved["billing"]["pricing"]["name"] == "flat"
    versions = prov["versions"]
    assert versions["python"] == sys.version.split()[0]
    assert {"vframework-schedulers", "vframework-billing"} <= {p["name"] for p in versions["plugins"]}
    assert prov["platform"]["system"]
    toml = tomllib.loads((out / "scenario.toml").read_text(encoding="utf-8"))
    assert toml == resolved


@pytest.mark.parametrize("path", [None, *GOLDEN], ids=lambda p: "default" if p is None else p.stem)
def test_from_reruns_byte_identical(cli: Any, tmp_path: Path, path: Path | None) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    args = ["run"] if path is None else ["run", path]
    cli([*args, "--set", "duration=250ms", "--out", first, "-q", "--no-plot"])
    cli(["run", "--from", first, "--out", second, "-q", "--no-plot"])
    for name in RESULT_FILES:
        if (first / name).exists():
            assert (first / name).read_bytes() == (second / name).read_bytes(), f"{name} differs"
    assert summary_of(first)["seed"] == summary_of(second)["seed"]


def test_from_refuses_a_scenario_or_overrides(cli: Any, tmp_path: Path) -> None:
    first = tmp_path / "first"
    cli(["run", "--set", "duration=50ms", "--out", first, "-q", "--no-plot"])
    output = cli(["run", "--from", first, "--set", "host.cpus=4"], code=2)
    assert "--from reruns a results folder as it was" in output
    empty = tmp_path / "empty"
    empty.mkdir()
    output = cli(["run", "--from", empty], code=2)
    assert "has no scenario.toml" in output
