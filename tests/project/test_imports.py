"""What importing vframework costs: the package and `vframework --help` load nothing heavy.

No time is asserted (speed lives in benchmarks/); the modules a fresh interpreter loads are.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import vframework

HEAVY = ("numpy", "pydantic", "networkx", "matplotlib", "hypothesis", "pluggy")


def _modules_after(code: str) -> set[str]:
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "code",
    [
        "import vframework",
        "from vframework.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
    ],
    ids=["import", "--help"],
)
def test_nothing_heavy_is_imported(code: str) -> None:
    loaded = _modules_after(code)
    assert not [m for m in HEAVY if m in loaded]


def test_every_export_resolves() -> None:
    for name in vframework.__all__:
        assert getattr(vframework, name) is not None, name
    assert set(vframework.__all__) <= set(dir(vframework))


def test_an_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        vframework.nonexistent  # noqa: B018
