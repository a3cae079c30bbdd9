"""What `vframework run` prints after a run: the VM table, and a line on memory reclamation."""

from __future__ import annotations

from pathlib import Path

from vf_helpers import flat


def test_an_overcommitted_run_says_what_reclamation_holds(cli, tmp_path: Path) -> None:
    output = flat(cli(["run", "--set", "duration=1s", "--out", tmp_path / "out", "--no-plot"]))
    assert "memory:" in output
    assert "reclaim state" in output
    assert "ballooned" in output


def test_a_run_without_reclamation_prints_no_memory_line(cli, write_scenario, tmp_path: Path) -> None:
    path = write_scenario(
        """
        name = "plain"
        duration = "20ms"
        [[vm]]
        name = "a"
        memory = "64MiB"
        workload = "cpu"
        """
    )
    output = flat(cli(["run", path, "--out", tmp_path / "out", "--no-plot"]))
    assert "memory:" not in output
