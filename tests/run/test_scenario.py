"""Scenarios: TOML in, validated objects out; ``--set`` overrides; the embedded default scenario."""

from __future__ import annotations

import copy
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from vf_helpers import scenario

from vframework import PluginManager, ScenarioError
from vframework.run.scenario import (
    DEFAULT_SCENARIO,
    ComponentRef,
    Problem,
    apply_overrides,
    load_default_scenario,
    load_scenario,
    parse_scenario,
)

MiB, GiB = 1024**2, 1024**3


def default_data() -> dict[str, Any]:
    text = resources.files("vframework.run").joinpath("scenarios", DEFAULT_SCENARIO).read_text(encoding="utf-8")
    return tomllib.loads(text)


# -- the default scenario ---------------------------------------------------------------------


def test_default_scenario_validates(plugins: PluginManager) -> None:
    spec = load_default_scenario(plugins)
    config = spec.config
    assert spec.name == config.name == "default"
    assert config.host.cpus == 2
    assert len(spec.vms) >= 3
    assert len(spec.vms) == len(config.vm)
    assert config.duration > 0
    assert 0 < config.sample_interval <= config.duration
    assert spec.scheduler.cls.kind == "scheduler"
    assert spec.memory_policy.cls.kind == "memory_policy"
    names = [vm.config.name for vm in spec.vms]
    assert len(set(names)) == len(names)
    for vm in spec.vms:
        assert vm.mode.cls.kind == "mode"
        assert vm.workload.cls.kind == "workload"
    # More than one kind of guest, so the default run shows something.
    assert len({vm.workload.name for vm in spec.vms}) >= 3
    # Overcommitted, so the default run shows reclamation: a policy that can, and services.
    assert sum(vm.memory for vm in config.vm) + config.host.hypervisor_memory > config.host.memory
    assert spec.memory_policy.cls.can_overcommit
    assert {s.name for s in spec.memory_services} >= {"balloon", "host-swap"}


def test_default_scenario_source_names_it(plugins: PluginManager) -> None:
    assert DEFAULT_SCENARIO in load_default_scenario(plugins).source


def test_default_scenario_with_overrides(plugins: PluginManager) -> None:
    spec = load_default_scenario(
        plugins,
        ["host.cpus=4", "vm[0].memory=2GiB", "duration=750ms", 'host.scheduler={ name = "fair", tslice = "5ms" }'],
    )
    assert spec.config.host.cpus == 4
    assert spec.vms[0].config.memory == 2 * GiB
    assert spec.config.duration == 750_000_000
    assert spec.scheduler.name == "fair"
    assert spec.scheduler.params.tslice == 5_000_000


# -- apply_overrides ----------------------------------------------------------------------------


def test_override_an_int() -> None:
    data = default_data()
    out = apply_overrides(data, ["host.cpus=4"])
    assert out is data
    assert data["host"]["cpus"] == 4
    assert type(data["host"]["cpus"]) is int


def test_override_an_indexed_vm() -> None:
    data = default_data()
    before = copy.deepcopy(data)
    apply_overrides(data, ["vm[0].memory=2GiB"])
    assert data["vm"][0]["memory"] == "2GiB"
    data["vm"][0]["memory"] = before["vm"][0]["memory"]
    assert data == before, "only vm[0].memory changed"


def test_override_with_an_inline_table() -> None:
    data = default_data()
    apply_overrides(data, ['host.scheduler={ name = "fair", tslice = "5ms" }'])
    assert data["host"]["scheduler"] == {"name": "fair", "tslice": "5ms"}


@pytest.mark.parametrize(
    ("item", "key", "value"),
    [
        ("seed=7", ("seed",), 7),
        ("duration=500ms", ("duration",), "500ms"),
        ('duration="500ms"', ("duration",), "500ms"),
        ("name=my run", ("name",), "my run"),
        ("host.memory=8GiB", ("host", "memory"), "8GiB"),
        ("host.costs.trap=5000", ("host", "costs", "trap"), 5000),
        ("host.irq_affinity=cpu0", ("host", "irq_affinity"), "cpu0"),
        ("host.host_os_load=0.25", ("host", "host_os_load"), 0.25),
        ("vm[1].vcpus=3", ("vm", 1, "vcpus"), 3),
        ("vm[2].workload=idle", ("vm", 2, "workload"), "idle"),
        ('vm[3].workload={ name = "cpu", burst = "1ms" }', ("vm", 3, "workload"), {"name": "cpu", "burst": "1ms"}),
        ("vm[0].workload.batch=64", ("vm", 0, "workload", "batch"), 64),
        ("host.memory_services=[]", ("host", "memory_services"), []),
        (" host.cpus = 3", ("host", "cpus"), 3),
        ("flag=true", ("flag",), True),
    ],
)
def test_override_values(item: str, key: tuple[Any, ...], value: Any) -> None:
    data = default_data()
    apply_overrides(data, [item])
    node: Any = data
    for part in key:
        node = node[part]
    assert node == value


def test_overrides_apply_in_order() -> None:
    data = default_data()
    apply_overrides(data, ["host.cpus=4", "host.cpus=8"])
    assert data["host"]["cpus"] == 8


def test_override_creates_missing_tables() -> None:
    data: dict[str, Any] = {"name": "x"}
    apply_overrides(data, ["host.costs.trap=1"])
    assert data == {"name": "x", "host": {"costs": {"trap": 1}}}


@pytest.mark.parametrize(
    ("item", "words"),
    [
        ("hostcpus", ["KEY=VALUE"]),
        ("=4", ["KEY=VALUE"]),
        ("vm[9].memory=1GiB", ["no index 9"]),
        ("vm[x].memory=1GiB", ["vm[x]"]),
        ("host..cpus=1", ["''"]),
        ("host.cpus.n=1", ["not a table"]),
        ("name[0]=x", ["no index 0"]),
    ],
)
def test_override_errors(item: str, words: list[str]) -> None:
    with pytest.raises(ScenarioError) as info:
        apply_overrides(default_data(), [item])
    [problem] = info.value.problems
    assert problem.file == "--set"
    assert problem.path == item.partition("=")[0].strip() or problem.path == item
    for word in words:
        assert word in problem.message


# -- validation ---------------------------------------------------------------------------------


def problems_of(data: dict[str, Any], plugins: PluginManager) -> dict[str, str]:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data, "test.toml", plugins)
    assert all(p.file == "test.toml" for p in info.value.problems)
    assert str(info.value) == "\n".join(str(p) for p in info.value.problems)
    return {p.path: p.message for p in info.value.problems}


def test_valid_scenario_resolves_everything(plugins: PluginManager) -> None:
    spec = parse_scenario(scenario(), "test.toml", plugins)
    assert spec.source == "test.toml"
    assert [vm.config.name for vm in spec.vms] == ["a", "b"]
    assert spec.vms[0].config.memory == 64 * MiB
    assert spec.vms[0].workload.name == "cpu"
    assert spec.vms[1].workload.name == "idle", "the default workload"
    assert spec.vms[1].mode.name == "bare-metal", "the default mode"
    assert spec.config.seed == 0
    assert spec.config.duration == 100_000_000
    assert spec.scheduler.name == "fair"
    assert spec.memory_policy.name == "static"


def test_sizes_and_durations_must_be_positive(plugins: PluginManager) -> None:
    data = scenario(duration="-1s", sample_interval="0ms")
    data["vm"][0]["memory"] = "0GiB"
    data["vm"][1]["memory"] = "-64MiB"
    data["host"]["memory"] = 0
    found = problems_of(data, plugins)
    for path in ("duration", "sample_interval", "vm[0].memory", "vm[1].memory", "host.memory"):
        assert path in found, (path, found)
        assert "positive" in found[path], (path, found)


def test_unknown_vm_key_names_the_components_asked(plugins: PluginManager) -> None:
    data = scenario()
    data["vm"][1]["shares"] = 2000
    found = problems_of(data, plugins)
    assert "vm[1].shares" in found
    assert "scheduler 'fair'" in found["vm[1].shares"]
    assert "memory policy 'static'" in found["vm[1].shares"]


def test_unknown_cost_is_refused(plugins: PluginManager) -> None:
    data = scenario()
    data["host"]["costs"] = {"teleport": 5}
    found = problems_of(data, plugins)
    assert any(path.startswith("host") and "teleport" in message for path, message in found.items()), found


def test_mode_must_run_on_the_host_architecture(plugins: PluginManager) -> None:
    data = scenario()
    data["host"]["arch"] = "x86"
    data["vm"][0]["mode"] = "hardware-assisted"
    found = problems_of(data, plugins)
    assert "vm[0].mode" in found
    assert "x86-vt" in found["vm[0].mode"]


def test_every_vm_problem_is_reported(plugins: PluginManager) -> None:
    data = scenario()
    data["vm"] = [
        {"name": "a", "memory": "64MiB", "workload": "nope"},
        {"name": "a", "memory": "64MiB", "mode": "nope"},
        {"name": "c", "memory": "64MiB", "workload": {"name": "cpu", "burst": "-1ms"}},
    ]
    found = problems_of(data, plugins)
    assert {"vm[0].workload", "vm[1].name", "vm[1].mode", "vm[2].workload.burst"} <= set(found), found


def test_component_refs() -> None:
    ref = ComponentRef.model_validate("fair")
    assert ref.name == "fair"
    assert ref.params == {}
    ref = ComponentRef.model_validate({"name": "fair", "tslice": "5ms"})
    assert ref.name == "fair"
    assert ref.params == {"tslice": "5ms"}
    for bad in ({"tslice": "5ms"}, {"name": 3}, 7, ""):
        with pytest.raises(ValueError, match="validation error for ComponentRef"):
            ComponentRef.model_validate(bad)


def test_component_ref_round_trips() -> None:
    ref = ComponentRef(name="fair", params={"tslice": "5ms"})
    assert ref.params == {"tslice": "5ms"}
    assert ComponentRef.model_validate(ref.model_dump()) == ref


def test_problem_text() -> None:
    assert str(Problem("s.toml", "vm[1].memory", "must be positive")) == "s.toml: vm[1].memory: must be positive"
    assert str(Problem("s.toml", "", "not valid TOML")) == "s.toml: not valid TOML"


def test_load_scenario_from_file(tmp_path: Path, plugins: PluginManager) -> None:
    path = tmp_path / "s.toml"
    path.write_text('name = "file"\n[[vm]]\nname = "only"\nmemory = "32MiB"\n', encoding="utf-8")
    spec = load_scenario(path, plugins, ["vm[0].vcpus=2"])
    assert spec.name == "file"
    assert spec.source == str(path)
    assert spec.vms[0].config.vcpus == 2
    with pytest.raises(ScenarioError) as info:
        load_scenario(tmp_path / "missing.toml", plugins)
    assert info.value.problems[0].file == str(tmp_path / "missing.toml")
    path.write_text("name = \n", encoding="utf-8")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(path, plugins)
