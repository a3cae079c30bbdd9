"""The docs cover the code: every hook in the hook reference, every parameter described, and
the scheduler tutorial's plugin builds, installs and passes the kit exactly as written."""

from __future__ import annotations

import contextlib
import csv
import inspect
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

from vf_helpers import DOCS

from vframework.api import hookspecs
from vframework.api.manager import PluginManager
from vframework.run.scenario import HostConfig, ScenarioConfig, VMConfig


def _hooks() -> list[str]:
    return [n for n in hookspecs.__all__ if n != "hookspec"]


def test_every_hook_is_in_the_hook_reference() -> None:
    page = (DOCS / "hook-reference.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"autofunction:: vframework\.api\.hookspecs\.(\w+)", page))
    missing = [h for h in _hooks() if h not in documented]
    assert not missing, f"hooks missing from docs/hook-reference.md: {missing}"


def test_every_hook_has_a_docstring() -> None:
    for name in _hooks():
        assert (getattr(hookspecs, name).__doc__ or "").strip(), f"hook {name} has no docstring"


def test_every_hook_parameter_and_return_value_is_documented() -> None:
    """Each hookspec argument has a ``:param <name>:`` line, and the return value a
    ``:return:`` line (as pytest's hookspecs do)."""
    problems = []
    for name in _hooks():
        spec = getattr(hookspecs, name)
        doc = inspect.getdoc(spec) or ""
        for param in inspect.signature(spec).parameters:
            if not re.search(rf"^:param {param}:\s*\S", doc, re.M):
                problems.append(f"{name}: no ':param {param}:'")
        documented = set(re.findall(r"^:param (\w+):", doc, re.M))
        problems += [
            f"{name}: ':param {p}:' is not a parameter" for p in documented - set(inspect.signature(spec).parameters)
        ]
        if not re.search(r"^:return:\s*\S", doc, re.M):
            problems.append(f"{name}: no ':return:'")
    assert not problems, "\n".join(problems)


def test_every_scenario_key_and_component_parameter_is_described() -> None:
    models = [ScenarioConfig, HostConfig, VMConfig]
    pm = PluginManager()
    for components in pm.components.values():
        for cls in components.values():
            models += [m for m in (cls.params_model, getattr(cls, "VMParams", None)) if m is not None]
    for model in models:
        for key, info in model.model_fields.items():
            assert info.description, f"{model.__qualname__}.{key} has no description"


def _tutorial_files(page_name: str = "scheduler") -> dict[str, str]:
    page = (DOCS / "tutorials" / f"{page_name}.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```\{code-block\} \w+\n:caption: (\S+)\n\n(.*?)```", page, re.S)
    return {name: body for name, body in blocks}


def _write(files: dict[str, str], root: Path) -> None:
    for name, body in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf-8")


def test_tutorial_shows_the_whole_plugin() -> None:
    assert set(_tutorial_files()) == {"lottery/pyproject.toml", "lottery/vf_lottery.py"}
    assert set(_tutorial_files("workload")) == {
        "webserver/pyproject.toml",
        "webserver/vf_webserver.py",
        "webserver/demo.toml",
    }
    assert set(_tutorial_files("memory-policy")) == {
        "reserve/pyproject.toml",
        "reserve/vf_reserve.py",
        "reserve/demo.toml",
    }
    assert set(_tutorial_files("memory-service")) == {
        "zeroshare/pyproject.toml",
        "zeroshare/vf_zeroshare.py",
        "zeroshare/demo.toml",
    }
    assert set(_tutorial_files("device")) == {"ramdisk/pyproject.toml", "ramdisk/vf_ramdisk.py", "ramdisk/demo.toml"}
    assert set(_tutorial_files("billing")) == {"peak/pyproject.toml", "peak/vf_peak.py", "peak/demo.toml"}


CLI = [sys.executable, "-c", "from vframework.cli import main; main()"]
PIP = [sys.executable, "-m", "pip"]


@contextlib.contextmanager
def installed_tutorial(page: str, folder: str, dist: str, kind: str, name: str, root: Path) -> Iterator[Path]:
    """Write a tutorial's files under ``root``, pip-install its plugin, check that
    ``vframework plugins`` lists it and ``vframework check`` passes it; uninstall afterwards."""
    _write(_tutorial_files(page), root)
    subprocess.run([*PIP, "install", "--quiet", "--no-deps", str(root / folder)], check=True)
    try:
        listed = subprocess.run([*CLI, "plugins", "--json"], check=True, capture_output=True, text=True)
        plugins = {p["name"]: p for p in json.loads(listed.stdout)}
        assert plugins[dist]["components"][kind] == [name]
        checked = subprocess.run(
            [*CLI, "check", name, "--profile", "ci"], capture_output=True, text=True, check=False, cwd=root
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert name in checked.stdout
        assert "FAIL" not in checked.stdout
        yield root / folder
    finally:
        subprocess.run([*PIP, "uninstall", "--quiet", "--yes", dist], check=True)


def _run_demo(folder: Path, tmp_path: Path) -> Path:
    """Run the tutorial's demo.toml with the plugin installed; returns its results folder."""
    out = tmp_path / "results"
    ran = subprocess.run(
        [*CLI, "run", str(folder / "demo.toml"), "--out", str(out)], capture_output=True, text=True, check=False
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return out


def test_tutorial_plugin_installs_and_passes_the_kit(tmp_path: Path) -> None:
    with installed_tutorial("scheduler", "lottery", "vf-lottery", "scheduler", "lottery", tmp_path):
        pass


def test_workload_tutorial_installs_checks_and_runs(tmp_path: Path) -> None:
    with installed_tutorial("workload", "webserver", "vf-webserver", "workload", "webserver", tmp_path) as folder:
        out = _run_demo(folder, tmp_path)
        vms = json.loads((out / "summary.json").read_text(encoding="utf-8"))["vms"]
        assert set(vms) == {"web-hvm", "web-pv", "hog"}
        for vm in ("web-hvm", "web-pv"):
            assert vms[vm]["syscalls"] > 100, vms[vm]
            assert vms[vm]["io_requests"] > 10, vms[vm]


def test_memory_service_tutorial_installs_checks_and_runs(tmp_path: Path) -> None:
    with installed_tutorial(
        "memory-service", "zeroshare", "vf-zeroshare", "memory_service", "zeroshare", tmp_path
    ) as folder:
        out = _run_demo(folder, tmp_path)
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        assert summary["host"]["pages_shared"] == 1  # the one zero frame
        for vm in summary["vms"].values():
            assert vm["mem_shared"] >= 1024 - 64, vm  # a quarter of 16 MiB
            assert vm["mem_consumed"] < vm["mem_granted"]


def test_memory_policy_tutorial_installs_checks_and_runs(tmp_path: Path) -> None:
    with installed_tutorial("memory-policy", "reserve", "vf-reserve", "memory_policy", "reserve", tmp_path) as folder:
        out = _run_demo(folder, tmp_path)
        vms = json.loads((out / "summary.json").read_text(encoding="utf-8"))["vms"]
        assert vms["db"]["mem_target"] >= 96 * 256, vms["db"]
        assert vms["batch"]["mem_granted"] <= 32 * 256, vms["batch"]
        assert vms["batch"]["host_swap_ins"] > 0, vms["batch"]
        assert vms["web"]["mem_granted"] == 96 * 256, vms["web"]
        with (out / "timeseries.csv").open(encoding="utf-8") as rows:
            held = [int(r["mem_granted"]) for r in csv.DictReader(rows) if r["vm"] == "batch"]
        assert max(held) > 32 * 256, "batch goes above its limit as it touches its working set"


def test_device_tutorial_installs_checks_and_runs(tmp_path: Path) -> None:
    with installed_tutorial("device", "ramdisk", "vf-ramdisk", "device", "ramdisk", tmp_path) as folder:
        out = _run_demo(folder, tmp_path)
        vms = json.loads((out / "summary.json").read_text(encoding="utf-8"))["vms"]
        for vm in vms.values():
            assert vm["io_completed"] > 100, vm
            assert vm["io_bytes_copied"] == 16 * 1024 * vm["io_requests"], vm  # copied at submission
        assert vms["hvm"]["vm_exits_io"] > vms["hvm"]["io_completed"]
        assert vms["pv"]["hypercalls"] > vms["pv"]["io_completed"]


def test_billing_tutorial_installs_checks_and_bills(tmp_path: Path) -> None:
    with installed_tutorial("billing", "peak", "vf-peak", "billing", "peak", tmp_path) as folder:
        out = _run_demo(folder, tmp_path)
        with (out / "ledger.csv").open(encoding="utf-8") as f:
            cpu = [r for r in csv.DictReader(f) if r["resource"] == "cpu" and r["vm"] == "a"]
        assert len(cpu) == 8
        peak = [Decimal(r["amount"]) for r in cpu if int(r["interval_start_ns"]) % 2_000_000_000 < 1_000_000_000]
        off = [Decimal(r["amount"]) for r in cpu if int(r["interval_start_ns"]) % 2_000_000_000 >= 1_000_000_000]
        # About 0.0015 and 0.0005 (a VM shares its CPU with the hypervisor's few switches).
        assert all(Decimal("0.0013") < a <= Decimal("0.0015") for a in peak), peak
        assert all(Decimal("0.00043") < a <= Decimal("0.0005") for a in off), off
        invoice = json.loads((out / "invoice.json").read_text(encoding="utf-8"))
        assert Decimal(invoice["vms"]["a"]["total"]) == sum(peak + off, Decimal(0))
