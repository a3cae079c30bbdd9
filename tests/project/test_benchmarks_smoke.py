"""The benchmarks still run: each ``benchmarks/bench_*.py`` at a tiny size returns well-formed rows.

No timing is asserted here, not even loosely: speed claims live in ``benchmarks/`` as ratios
against baselines measured in the same run (``python benchmarks/run.py``).
"""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path

import pytest
from vf_helpers import ROOT

BENCHMARKS = ROOT / "benchmarks"
NAMES = sorted(p.stem.removeprefix("bench_") for p in BENCHMARKS.glob("bench_*.py"))
#: Benchmarks that compare against a third-party package the `test` extra does not install.
NEEDS = {"engine": "simpy"}


@pytest.fixture(autouse=True)
def _benchmarks_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # The benchmark modules import each other by name, as they do when run.py runs them.
    monkeypatch.syspath_prepend(str(BENCHMARKS))


def test_there_are_benchmarks() -> None:
    assert {"engine", "run"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_benchmark_returns_well_formed_rows(name: str) -> None:
    if name in NEEDS:
        pytest.importorskip(NEEDS[name])
    common = importlib.import_module("common")
    module = importlib.import_module(f"bench_{name}")
    rows = module.run(quick=True, size=module.SMOKE_SIZE, repeat=1)
    assert rows, f"bench_{name} returned no rows"
    for r in rows:
        assert set(common.REQUIRED_KEYS) <= set(r), r
        for key in ("benchmark", "variant", "unit", "baseline_name"):
            assert r[key], (key, r)
        for key in ("value", "baseline", "ratio"):
            assert isinstance(r[key], float), (key, r)
            assert math.isfinite(r[key]), (key, r)
            assert r[key] > 0, (key, r)
        expected = r["baseline"] / r["value"] if r["better"] == "lower" else r["value"] / r["baseline"]
        assert r["better"] in ("lower", "higher"), r
        assert math.isclose(r["ratio"], expected), r


def test_harness_writes_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """run.py end to end on the one benchmark that needs nothing beyond vframework, shrunk."""
    bench_run = importlib.import_module("bench_run")
    monkeypatch.setattr(bench_run, "QUICK_SIZE", bench_run.SMOKE_SIZE)
    harness = importlib.import_module("run")
    out = tmp_path / "results.json"
    assert harness.main(["run", "--quick", "--repeat", "1", "--output", str(out)]) == 0
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["benchmarks"] == ["run"]
    assert document["quick"] is True
    assert {"python", "cpus", "packages", "date"} <= set(document["environment"])
    assert [r["benchmark"] for r in document["rows"]] == ["run.events", "run.speed", "run.metering"]


def test_harness_rejects_an_unknown_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    harness = importlib.import_module("run")
    with pytest.raises(SystemExit) as exc:
        harness.main(["no-such-benchmark"])
    assert exc.value.code == 2
    assert "unknown benchmark" in capsys.readouterr().err


def teardown_module() -> None:
    # Leave no benchmark module cached for other tests (``run`` is a very generic name).
    for name in ["run", "common", *(f"bench_{n}" for n in NAMES)]:
        sys.modules.pop(name, None)
