"""The results writer: a results folder appears whole or not at all, and never over another."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from vf_helpers import results_left_behind

from vframework.run import report
from vframework.run.results import ResultsError, atomic_folder, write_results


def test_write_results_is_all_or_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_plot(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("matplotlib exploded")

    monkeypatch.setattr(report, "plot_timeseries", broken_plot)
    out = tmp_path / "results"
    with pytest.raises(RuntimeError, match="matplotlib exploded"):
        write_results(out, {"scenario": "x"}, ["time_ns", "vm"], [(0, "a")], plot=True)
    assert not out.exists()
    assert results_left_behind(out) == []
    path = write_results(out, {"scenario": "x"}, ["time_ns", "vm"], [(0, "a")], plot=False)
    assert path == out
    assert sorted(p.name for p in out.iterdir()) == ["summary.json", "timeseries.csv", "timeseries.parquet"]
    with pytest.raises(ResultsError):
        write_results(out, {"scenario": "x"}, ["time_ns", "vm"], [(0, "a")], plot=False)


def test_atomic_folder_appears_only_when_complete(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    with atomic_folder(out) as tmp:
        assert tmp.parent == out.parent
        assert tmp.name.startswith(".b.")
        assert not out.exists()
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
