"""How a results folder was made: the scenario as given and as resolved, the seed, the versions,
the platform and the command line (``provenance.json``), and the resolved scenario as TOML
(``scenario.toml``), from which ``vframework run --from DIR`` reruns the same run.

The resolved scenario spells out every default and ``--set`` override: each component with
every one of its parameters, each VM with its scheduler and memory-policy keys. Sizes are
written in bytes and durations in nanoseconds (integers, exact). It is not part of the results'
byte-identity (it records versions and the time), but the run it describes is.
"""

from __future__ import annotations

import platform
import sys
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import tomli_w

from vframework.api.manager import PluginManager
from vframework.api.params import Params
from vframework.run.scenario import ResolvedComponent, Scenario

__all__ = ["provenance", "resolved_scenario", "scenario_toml"]


def _drop_none(value: Any) -> Any:
    """TOML has no null: leave unset optional keys out (they resolve to the same default)."""
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def _component(component: ResolvedComponent[Any]) -> dict[str, Any]:
    params: Params = component.params
    return {"name": component.name, **params.model_dump(mode="json")}


def resolved_scenario(scenario: Scenario, seed: int) -> dict[str, Any]:
    """The scenario with every default applied, as plain TOML-ready data (``seed`` set)."""
    config = scenario.config
    host = config.host.model_dump(mode="json")
    host["scheduler"] = _component(scenario.scheduler)
    host["memory_policy"] = _component(scenario.memory_policy)
    host["memory_services"] = [_component(s) for s in scenario.memory_services]
    vms = []
    for spec in scenario.vms:
        vm = spec.config.model_dump(mode="json", exclude=set(spec.config.model_extra or {}))
        vm["mode"] = _component(spec.mode)
        vm["workload"] = _component(spec.workload)
        vm["devices"] = [_component(d) for d in spec.devices]
        for extra in (spec.scheduler_params, spec.policy_params):
            if extra is not None:
                vm.update(extra.model_dump(mode="json"))
        vms.append(vm)
    billing = config.billing.model_dump(mode="json")
    billing["interval"] = config.billing_interval
    if scenario.billing is not None:
        billing["pricing"] = _component(scenario.billing)
    else:
        billing["pricing"] = {"name": config.billing.pricing.name, **config.billing.pricing.params}
    resolved: dict[str, Any] = _drop_none(
        {
            "name": config.name,
            "seed": seed,
            "duration": config.duration,
            "sample_interval": config.sample_interval,
            "host": host,
            "vm": vms,
            "billing": billing,
        }
    )
    return resolved


def scenario_toml(scenario: Scenario, seed: int) -> str:
    """``scenario.toml``: the resolved scenario, rerunnable with ``vframework run --from``."""
    head = (
        f"# The scenario {scenario.name!r} as it ran: every default and override applied, seed {seed}.\n"
        "# Sizes are in bytes and durations in nanoseconds. Rerun it: vframework run --from <this folder>\n"
    )
    return head + tomli_w.dumps(resolved_scenario(scenario, seed))


def provenance(scenario: Scenario, seed: int, plugins: PluginManager, argv: list[str]) -> dict[str, Any]:
    """``provenance.json``: what made the results (versions, platform, command, scenario)."""
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": argv,
        "seed": seed,
        "scenario": {
            "name": scenario.name,
            "source": scenario.source,
            "given": scenario.given,
            "overrides": list(scenario.overrides),
            "resolved": resolved_scenario(scenario, seed),
        },
        "versions": {
            "vframework": metadata.version("vframework"),
            "plugins": plugins.versions(),
            "python": sys.version.split()[0],
            "implementation": platform.python_implementation(),
            "numpy": metadata.version("numpy"),
        },
        "platform": {"system": platform.system(), "machine": platform.machine(), "platform": platform.platform()},
    }
