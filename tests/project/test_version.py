"""One version for the kernel and every standard plugin: the root VERSION file.

Each plugin's VERSION is a symbolic link to it (setuptools reads no file outside a project's
folder), each pyproject reads its version from there, and each plugin accepts exactly the
kernel's minor series."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from vf_helpers import ROOT

import vframework

VERSION_FILE = ROOT / "VERSION"
PLUGINS = sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml"))


def _version() -> str:
    return VERSION_FILE.read_text(encoding="utf-8").strip()


def _project(folder: Path) -> dict:
    with (folder / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def test_the_version_file_holds_a_release_version() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", _version()), _version()


@pytest.mark.parametrize("folder", [ROOT, *PLUGINS], ids=lambda p: p.name)
def test_every_distribution_reads_its_version_from_the_version_file(folder: Path) -> None:
    config = _project(folder)
    assert "version" not in config["project"], f"{folder}: a static version"
    assert "version" in config["project"].get("dynamic", [])
    assert config["tool"]["setuptools"]["dynamic"]["version"] == {"file": "VERSION"}
    assert (folder / "VERSION").resolve() == VERSION_FILE, f"{folder / 'VERSION'} is not a link to {VERSION_FILE}"


@pytest.mark.parametrize("folder", PLUGINS, ids=lambda p: p.name)
def test_every_plugin_accepts_exactly_the_kernels_minor_series(folder: Path) -> None:
    major, minor, _ = (int(n) for n in _version().split("."))
    wanted = f"vframework>={major}.{minor},<{major}.{minor + 1}"
    dependencies = [d.replace(" ", "") for d in _project(folder)["project"]["dependencies"]]
    kernel = [d for d in dependencies if re.match(r"vframework\b(?!-)", d)]
    assert kernel == [wanted], f"{folder.name}: {kernel}"


@pytest.mark.parametrize("folder", PLUGINS, ids=lambda p: p.name)
def test_every_plugin_package_is_typed(folder: Path) -> None:
    config = _project(folder)
    packages = [p.parent.name for p in (folder / "src").glob("*/__init__.py")]
    assert packages
    for package in packages:
        assert (folder / "src" / package / "py.typed").is_file(), f"{package} has no py.typed"
        assert "py.typed" in config["tool"]["setuptools"]["package-data"][package]


def test_installed_distributions_carry_the_version() -> None:
    assert version("vframework") == _version()
    assert vframework.__version__ == _version()
    for folder in PLUGINS:
        name = _project(folder)["project"]["name"]
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue
        assert installed == _version(), f"{name} {installed} is installed; reinstall it"
