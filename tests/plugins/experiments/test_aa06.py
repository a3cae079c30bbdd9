"""``aa06``: the paper's figures as published, ours beside them, fitted rows told from predictions."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from vframework_experiments.aa06 import CONFIGS, PAPER, TESTS

from vframework.machine.costs import profiles


def test_aa06_table_beside_the_paper(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "aa06"
    output = cli(["experiment", "aa06", "--quick", "--out", out])
    with (out / "aa06.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {"benchmark", "config", "ratio_to_native", "paper_ratio_to_native"} <= set(rows[0])
    assert {r["config"] for r in rows} == {"native", "binary-translation", "hardware-no-nested-paging"}
    assert [r["benchmark"] for r in rows[:: len(CONFIGS)]] == list(TESTS)
    by = {(r["benchmark"], r["config"]): r for r in rows}
    # The paper's ratios, from its raw-data appendix (Figure 4, cycles; forkwait, seconds).
    assert float(by["syscall", "binary-translation"]["paper_ratio_to_native"]) == round(2308 / 242, 3)
    assert float(by["forkwait", "hardware-no-nested-paging"]["paper_ratio_to_native"]) == round(106.4 / 6.02, 3)
    assert PAPER["pgfault"] == (1093, 3927, 11242)
    fitted = profiles()["pentium4-2006"].fitted("aa06")
    assert ("ptemod", "hardware-no-nested-paging") in fitted
    for bench in TESTS:
        for config in CONFIGS:
            row = by[bench, config]
            assert float(row["ratio_to_native"]) > 0, (bench, config)
            assert row["calibration"] == ("fitted" if (bench, config) in fitted else "prediction"), (bench, config)
            assert (row["within_25_percent"] == "True") == (abs(float(row["ours_over_paper"]) - 1) <= 0.25)
    assert float(by["syscall", "native"]["ratio_to_native"]) == 1.0
    # A value fitted to a row makes that row match: the nanobenchmarks' native column exactly.
    for bench in ("syscall", "in", "cr8wr", "call/ret", "pgfault", "divzero", "ptemod"):
        assert float(by[bench, "native"]["cycles_per_op"]) == PAPER[bench][0], bench
    # Every ordering the paper reports is checked and holds; the 25% goal is reported either way.
    assert output.count("\nholds ") + output.startswith("holds ") >= 9, output
    assert "FAILS" not in output.replace("FAILS every ratio within 25%", ""), output
    assert "every ratio within 25% of the paper's" in output
    assert (out / "aa06.png").read_bytes()[:4] == b"\x89PNG"
