"""Every golden case gives the results recorded in ``tests/golden/hashes.json``.

A refactoring must not change one result. The full-length experiments run only with the
``full_experiments`` marker (``tox -e invariants`` selects it); everything else runs in the default suite.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "golden"))
import hashes  # noqa: E402

RECORDED = json.loads(hashes.HASHES.read_text())
CASES = hashes.cases(full=True)


def test_every_case_is_recorded() -> None:
    assert sorted(RECORDED) == sorted(CASES)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.full_experiments) if n.startswith("experiment/") else n for n in CASES]
)
def test_results_are_byte_identical(name: str, tmp_path: Path) -> None:
    got = hashes.run_case(CASES[name], tmp_path / "out")
    want = RECORDED[name]
    assert sorted(got) == sorted(want), f"{name}: wrote {sorted(got)}, recorded {sorted(want)}"
    for filename, digest in want.items():
        assert got[filename]["result"] == digest["result"], f"{name}: {filename} changed"
