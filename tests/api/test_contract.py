"""The plugin contract holds: plugins import only the contract, the kernel names no plugin,
the kind bases are abstract and generic, and each kind gets a narrow context."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from vf_helpers import ROOT

import vframework
from vframework import api
from vframework.api import KINDS, Mode, Params, Scheduler, Workload
from vframework.api.manager import PluginManager
from vframework.run.scenario import DEFAULT_COMPONENTS

KERNEL = ROOT / "src" / "vframework"
PLUGIN_SOURCES = sorted(p for p in (ROOT / "plugins").glob("*/src/*/**/*.py"))
PUBLIC = {"vframework", "vframework.api"}

#: Kernel words that happen to be the names of standard components too: the guest kernel's
#: ``fork`` and ``idle`` routines and its ``paravirtual`` port flag, the ``io`` VM-exit
#: reason, the topology's ``cpu`` and ``memory`` node kinds. Anything else a plugin registers
#: must not appear in the kernel.
KERNEL_VOCABULARY = {"fork", "idle", "io", "cpu", "memory", "paravirtual"}


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


def test_there_are_plugin_sources() -> None:
    assert len(PLUGIN_SOURCES) >= 10


@pytest.mark.parametrize("path", PLUGIN_SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_plugin_modules_import_only_the_public_contract(path: Path) -> None:
    private = [f"line {n}: {m}" for n, m in _imports(path) if m.startswith("vframework.") and m not in PUBLIC]
    assert not private, f"{path.name} reaches past vframework.api: {private}"


def _string_constants(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_the_kernel_names_no_registered_plugin() -> None:
    pm = PluginManager()
    names = {name for kind in KINDS for name in pm.components[kind]} - KERNEL_VOCABULARY
    assert {"fair", "credit", "static", "bare-metal", "full"} <= names, "the standard plugins are not installed"
    hits = [
        f"{path.relative_to(ROOT)}:{line}: {value!r}"
        for path in sorted(KERNEL.rglob("*.py"))
        for line, value in _string_constants(path)
        if value in names
    ]
    assert not hits, "the kernel names plugins (defaults belong in run/scenarios/defaults.toml):\n" + "\n".join(hits)


def test_default_components_are_installed() -> None:
    pm = PluginManager()
    kinds = {
        "scheduler": "scheduler",
        "memory_policy": "memory_policy",
        "mode": "mode",
        "workload": "workload",
        "pricing": "billing",
    }
    for table in DEFAULT_COMPONENTS.values():
        for key, name in table.items():
            assert name in pm.components[kinds[key]], f"default {key} {name!r} is not installed"


def test_the_contract_is_re_exported_from_the_root() -> None:
    for name in api.__all__:
        assert getattr(vframework, name) is getattr(api, name), name
    assert set(api.__all__) <= set(vframework.__all__)


def test_kind_bases_are_abstract() -> None:
    class Incomplete(Scheduler[Params]):
        name = "incomplete"

        def attach(self, vcpu: object, vm_params: Params | None) -> None:
            pass

    assert {"detach", "wake", "block", "pick", "charge"} <= Incomplete.__abstractmethods__
    with pytest.raises(TypeError, match="abstract"):
        Incomplete(Params(), 1)  # type: ignore[abstract]
    assert {"classify", "deliver", "hidden_fault", "io"} == Mode.__abstractmethods__
    assert {"run"} == Workload.__abstractmethods__


def test_params_models_are_named_for_what_they_are() -> None:
    pm = PluginManager()
    for kind in KINDS:
        for cls in pm.components[kind].values():
            assert "Params" not in vars(cls), f"{cls.__qualname__} still declares `Params`"
            assert issubclass(cls.params_model, Params)
            assert cls.vm_params_model is None or issubclass(cls.vm_params_model, Params)
