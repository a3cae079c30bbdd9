"""What an imported VM carries, and how it becomes scenario data for a host.

A :class:`Domain` holds the values the simulator models, in the formats' own terms. Where a
value lands depends on the host: CPU shares become the scheduler's ``share_param`` (credit's
``weight``, proportional's ``shares``), a cap its ``cap_param``; the balloon target and memory
limits become the memory policy's ``mem_max`` and ``mem_min`` when its VM parameters have them.
A value the host cannot take is reported, like an element the format reader does not model.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vframework.errors import Problem, ScenarioError
from vframework.run.scenario import HostConfig, parse_scenario

if TYPE_CHECKING:
    from vframework.api.manager import PluginManager

__all__ = [
    "HARDWARE",
    "MAPPING",
    "Domain",
    "ImportError_",
    "Unmodelled",
    "component_name",
    "default_host",
    "host_table",
    "to_scenario",
]

MIB = 1024**2
#: Registered names and XML names the formats map onto (``mapping.toml``: no plugin named here).
MAPPING: dict[str, Any] = tomllib.loads(
    resources.files("vframework.formats").joinpath("mapping.toml").read_text(encoding="utf-8")
)
#: The mode a domain gets unless it says paravirtual.
HARDWARE: str = MAPPING["mode"]["hardware"]


class ImportError_(ScenarioError):  # noqa: N801 (ImportError is Python's)
    """A domain file that cannot be read: malformed, or a value out of range (with its path)."""


@dataclass
class Unmodelled:
    """An element or key the simulator does not model, with where it was."""

    source: str
    path: str
    why: str = "not modelled"

    def __str__(self) -> str:
        return f"{self.source}: {self.path}: {self.why}"


@dataclass
class Domain:
    """One VM as a domain file describes it (bytes for memory, percent of one CPU for caps)."""

    name: str
    source: str
    memory: int
    vcpus: int = 1
    #: The balloon target (libvirt currentMemory, xl memory when below maxmem); None: memory.
    current_memory: int | None = None
    shares: int | None = None
    cap: int | None = None
    hard_limit: int | None = None
    min_guarantee: int | None = None
    balloon: bool = True
    #: False: libvirt's memoryBacking/nosharepages (no page sharing for this VM).
    share_pages: bool = True
    mode: dict[str, Any] | str = HARDWARE
    devices: list[str] = field(default_factory=list)


def default_host(domains: list[Domain]) -> dict[str, Any]:
    """A host for the domains when no host file is given: as many CPUs as the widest VM has
    vCPUs (at least two), and room for every VM's memory (rounded up to a GiB)."""
    total = sum(d.memory for d in domains)
    gib = -(-total // 1024**3)
    return {"cpus": max(2, *(d.vcpus for d in domains)), "memory": f"{max(1, gib)}GiB"}


def host_table(path: Path) -> dict[str, Any]:
    """The ``[host]`` table of a host file (a scenario's, or one holding only that table)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportError_([Problem(str(path), "", f"cannot read the host file: {exc}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ImportError_([Problem(str(path), "", f"not valid TOML: {exc}")]) from None
    if not isinstance(data.get("host"), dict):
        raise ImportError_([Problem(str(path), "host", "the host file needs a [host] table")])
    host: dict[str, Any] = data["host"]
    return host


def component_name(ref: Any) -> str:
    """The name in a component reference: ``"credit"`` or ``{ name = "credit", ... }``."""
    return str(ref.get("name")) if isinstance(ref, dict) else str(ref)


def _size(n: int) -> str:
    return f"{n // MIB}MiB" if n % MIB == 0 else f"{n // 1024}KiB"


def to_scenario(
    domains: list[Domain], host: dict[str, Any], plugins: PluginManager, name: str = "imported"
) -> tuple[dict[str, Any], list[Unmodelled]]:
    """Scenario data for ``domains`` on ``host`` (a ``[host]`` table), validated; and the values
    the host's scheduler or memory policy cannot take."""
    names = [d.name for d in domains]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ImportError_([Problem("domains", "name", f"two domains are named {dupes[0]!r}")])
    defaults = HostConfig.model_fields
    scheduler = _component(plugins, "scheduler", host.get("scheduler", _default(defaults["scheduler"])))
    policy = _component(plugins, "memory_policy", host.get("memory_policy", _default(defaults["memory_policy"])))
    sched_fields = set(scheduler.vm_params_model.model_fields) if scheduler and scheduler.vm_params_model else set()
    policy_fields = set(policy.vm_params_model.model_fields) if policy and policy.vm_params_model else set()
    left: list[Unmodelled] = []
    vms = []
    for d in domains:
        vm: dict[str, Any] = {"name": d.name, "vcpus": d.vcpus, "memory": _size(d.memory), "mode": d.mode}
        if not d.balloon:
            vm[MAPPING["scenario"]["balloon_driver"]] = "off"
        if not d.share_pages:
            vm["share_pages"] = False
        if d.devices:
            vm["devices"] = list(d.devices)
        for value, param, what in (
            (d.shares, scheduler.share_param if scheduler else None, "CPU shares"),
            (d.cap, scheduler.cap_param if scheduler else None, "CPU cap"),
        ):
            if value is None:
                continue
            if param and param in sched_fields:
                vm[param] = value
            else:
                left.append(Unmodelled(d.source, what, f"scheduler {scheduler.name if scheduler else '?'!r} has none"))
        limit = min((v for v in (d.current_memory, d.hard_limit) if v is not None), default=None)
        for value, param, what in (
            (limit, "mem_max", "balloon target / hard limit"),
            (d.min_guarantee, "mem_min", "minimum guarantee"),
        ):
            if value is None or (param == "mem_max" and value >= d.memory):
                continue
            if param in policy_fields:
                vm[param] = _size(value)
            else:
                left.append(
                    Unmodelled(d.source, what, f"memory policy {policy.name if policy else '?'!r} has no {param}")
                )
        vms.append(vm)
    data = {"name": name, "duration": "10s", "host": dict(host), "vm": vms}
    parse_scenario(data, f"<imported {', '.join(names)}>", plugins)  # raises ScenarioError, with paths
    return data, left


def _default(info: Any) -> str:
    """The name of the component a scenario gets when its host table names none."""
    return str(info.get_default(call_default_factory=True).name)


def _component(plugins: PluginManager, kind: str, ref: Any) -> Any:
    try:
        return plugins.get(kind, component_name(ref))
    except Exception:
        return None  # parse_scenario names the unknown component
