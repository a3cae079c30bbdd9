"""Shared fixtures for the vframework test suite.

* The Hypothesis profile comes from ``VFRAMEWORK_HYPOTHESIS_PROFILE`` (``default`` when unset),
  through the conformance kit's own loader, so ``tox -e invariants`` runs the same tests longer.
* ``cli`` runs the command line in-process (click's CliRunner) and checks the contract every
  command keeps: the expected exit code, and never an uncaught exception or a traceback.
* ``make_dist`` builds a real, importable plugin distribution (a module plus its ``.dist-info``
  with a ``vframework`` entry point) in a temporary folder and puts it on ``sys.path``: the plugin
  manager finds it through ``importlib.metadata`` exactly as it finds an installed plugin.
"""

from __future__ import annotations

import os
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

from vf_helpers import CLI  # noqa: E402

from vframework.testing import load_profile  # noqa: E402

#: The Hypothesis profile every property in this suite runs with.
HYPOTHESIS_PROFILE = load_profile()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "invariants: conformance-kit and invariant checks (run longer by `tox -e invariants`)"
    )
    config.addinivalue_line(
        "markers", "full_experiments: full-length experiment runs against recorded hashes (`tox -e invariants`)"
    )


def pytest_report_header(config: pytest.Config) -> str:
    return f"vframework hypothesis profile: {HYPOTHESIS_PROFILE}"


@pytest.fixture
def hypothesis_profile() -> str:
    """The name of the loaded profile (``default``, ``ci`` or ``thorough``), for ``check --profile``."""
    return HYPOTHESIS_PROFILE


@pytest.fixture(autouse=True)
def _plugins_autoload(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's shell may disable autoloading; the suite expects the installed plugins.
    monkeypatch.delenv("VFRAMEWORK_DISABLE_PLUGIN_AUTOLOAD", raising=False)


# -- the command line -----------------------------------------------------------------------


@pytest.fixture
def cli() -> CLI:
    return CLI()


# -- scenarios ------------------------------------------------------------------------------


@pytest.fixture
def write_scenario(tmp_path: Path) -> Callable[..., Path]:
    """``write_scenario(text, name="s.toml")``: a scenario file in a fresh folder."""
    folder = tmp_path / "scenarios"
    folder.mkdir()

    def write(text: str, name: str = "scenario.toml") -> Path:
        path = folder / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


# -- plugin distributions -------------------------------------------------------------------


class DistFactory:
    """Builds importable plugin distributions under one folder on ``sys.path``."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.modules: list[str] = []
        root.mkdir()
        monkeypatch.syspath_prepend(str(root))

    def __call__(self, dist: str, source: str, version: str = "1.0", entry_point: str | None = None) -> str:
        """Create distribution ``dist`` whose ``vframework`` entry point is a module holding
        ``source``; returns the module name (unique, so tests never share a cached module)."""
        module = f"{dist.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
        (self.root / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        info = self.root / f"{module}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8")
        (info / "entry_points.txt").write_text(f"[vframework]\n{entry_point or dist} = {module}\n", encoding="utf-8")
        self.modules.append(module)
        import importlib

        importlib.invalidate_caches()
        return module


@pytest.fixture
def make_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DistFactory]:
    factory = DistFactory(tmp_path / "site", monkeypatch)
    yield factory
    for module in factory.modules:
        sys.modules.pop(module, None)
