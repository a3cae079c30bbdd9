"""Cost profiles: machines as data, every value with its source, chosen by ``[host] costs``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from vf_helpers import scenario, simulate

from vframework import PluginManager
from vframework.machine.costs import COST_FIELDS, DEFAULT_PROFILE, CostModel, profile, profiles
from vframework.run.scenario import parse_scenario


def test_every_profile_value_is_a_known_cost_with_a_source() -> None:
    found = profiles()
    assert {"default", "pentium4-2006", "xeon-2003", "skylake-sp-kvm"} <= set(found)
    for name, p in found.items():
        assert p.description, name
        for key, (value, source) in p.values.items():
            assert key in COST_FIELDS, (name, key)
            assert value >= (1 if key == "clock_hz" else 0), (name, key)
            assert len(source) > 20, (name, key, source)


def test_the_default_profile_is_the_cost_model_defaults() -> None:
    assert profile(DEFAULT_PROFILE) == CostModel()


def test_papers_machines() -> None:
    p4 = profile("pentium4-2006")
    assert (p4.clock_hz, p4.syscall, p4.page_fault, p4.port_io + p4.instruction) == (3_800_000_000, 242, 1093, 3209)
    assert p4.vm_exit == 1931 + 2409
    xeon = profile("xeon-2003")
    assert xeon.clock_hz == 2_400_000_000
    assert xeon.ns(xeon.syscall + 156) == 450  # lmbench null call with the kernel's path, L-UP 0.45 us
    modern = profile("skylake-sp-kvm")
    assert (modern.vm_exit, modern.exit_emulate) == (1529, 0)  # kvm-unit-tests vmcall, handler included
    with pytest.raises(KeyError, match="unknown cost profile 'p5'"):
        profile("p5")


@pytest.mark.parametrize(
    ("costs", "expected"),
    [
        ("pentium4-2006", {"clock_hz": 3_800_000_000, "trap": 2066}),
        ({"profile": "xeon-2003", "trap": 5}, {"clock_hz": 2_400_000_000, "trap": 5}),
        ({"trap": 7}, {"clock_hz": 3_000_000_000, "trap": 7}),
    ],
)
def test_a_scenario_chooses_a_profile_and_overrides_it(
    plugins: PluginManager, costs: Any, expected: dict[str, int]
) -> None:
    sim, _ = simulate(scenario(duration="20ms", costs=costs), plugins)
    model = sim.machine.costs
    for key, value in expected.items():
        assert getattr(model, key) == value, key
    spec = parse_scenario(scenario(costs=costs), "s.toml", plugins)
    assert spec.config.host.cost_model == model


def test_fitted_values_name_the_rows_they_make_match() -> None:
    p4 = profiles()["pentium4-2006"]
    rows = p4.fitted("aa06")
    assert ("syscall", "native") in rows
    assert ("forkwait", "native") in rows
    # What is predicted is never fitted: the hardware VMM's system call and forkwait.
    assert ("syscall", "hardware-no-nested-paging") not in rows
    assert ("forkwait", "hardware-no-nested-paging") not in rows
    assert p4.fitted("xen03") == set()
    assert ("null call", "native") in profiles()["xeon-2003"].fitted("xen03")
    assert set(p4.fits) <= set(p4.values)


def test_the_fidelity_page_lists_every_fitted_value() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "fidelity.md").read_text(encoding="utf-8")
    for p in profiles().values():
        for key, rows in p.fits.items():
            for row in rows:
                assert f"`{row}`" in page, (p.name, key, row)


def test_the_modern_profile_runs_nested_paging_on_a_tagged_tlb(plugins: PluginManager) -> None:
    vms = [{"name": "a", "memory": "64MiB", "mode": "hardware-assisted", "workload": "fork"}]
    sim, summary = simulate(scenario(vms, duration="20ms", costs="skylake-sp-kvm", tlb_tagged=True), plugins)
    assert sim.machine.costs.vm_exit == 1529
    vm = summary["vms"]["a"]
    assert vm["forks"] > 0
    assert vm["shadow_pt_updates"] == 0, "nested paging keeps no shadow tables"
