"""The figures the experiment pages document for ``--quick`` runs are what a quick run gives.

A page marks such a table with ``<!-- checked-by-tests: vframework experiment NAME --quick,
FILE.csv -->``; its header cells are columns of ``FILE.csv`` and its rows must be the CSV's
rows, in order, cell for cell. Full-run figures (too slow for the suite) are pinned by the
golden hashes instead.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import pytest

PAGES = Path(__file__).resolve().parents[3] / "docs" / "experiments"
MARKER = re.compile(r"<!-- checked-by-tests: vframework experiment (\S+) --quick, (\S+\.csv) -->\n\n((?:\|.*\n)+)")


def _tables() -> list[tuple[str, str, str, str]]:
    found = []
    for page in sorted(PAGES.glob("*.md")):
        for m in MARKER.finditer(page.read_text(encoding="utf-8")):
            found.append((page.name, m.group(1), m.group(2), m.group(3)))
    return found


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_the_checked_pages_are_found() -> None:
    pages = {page for page, *_ in _tables()}
    assert {
        "aa06.md",
        "xen03.md",
        "modes.md",
        "mmu.md",
        "cpu-shares.md",
        "esx-balloon.md",
        "esx-idle-tax.md",
        "esx-sharing.md",
        "esx-sampling.md",
        "io.md",
    } <= pages


@pytest.mark.parametrize(("page", "name", "csv_name", "table"), _tables(), ids=lambda v: str(v)[:20])
def test_documented_quick_figures(cli: Any, tmp_path: Path, page: str, name: str, csv_name: str, table: str) -> None:
    out = tmp_path / name
    cli(["experiment", name, "--quick", "--out", out])
    with (out / csv_name).open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    lines = table.strip().splitlines()
    header = _cells(lines[0])
    assert set(header) <= set(rows[0]), f"{page}: columns not in {csv_name}: {set(header) - set(rows[0])}"
    documented = [dict(zip(header, _cells(line), strict=True)) for line in lines[2:]]
    measured = [{c: r[c] for c in header} for r in rows]
    assert documented == measured, f"{page}: the documented quick figures differ from a quick run of {name}"
