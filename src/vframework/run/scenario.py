"""Scenarios: TOML in, typed and validated objects out; every problem named by file and key path.

Validation has two phases. The first (pydantic) checks the shape: types, units, positive
sizes and durations, unique VM names. The second resolves component names through the plugin
manager and validates each component's own parameters with its ``params_model``, the per-VM
keys with the chosen scheduler's and memory policy's ``vm_params_model``, and whether the VMs fit
on the host. All problems of both phases are reported together.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Generic, Literal, TypeVar, overload

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from vframework.api.contract import Billing, Component, Device, MemoryPolicy, MemoryService, Mode, Scheduler, Workload
from vframework.api.manager import PluginManager
from vframework.api.params import Duration, Params, Size, positive
from vframework.api.pricing import parse_price
from vframework.errors import Problem, ScenarioError
from vframework.machine.costs import COST_FIELDS, DEFAULT_PROFILE, CostModel, profile, profiles
from vframework.machine.hardware import MAX_VMS
from vframework.sim.units import PAGE_SIZE, format_duration, format_size, parse_size

__all__ = [
    "DEFAULT_SCENARIO",
    "ComponentRef",
    "Duration",
    "HostConfig",
    "Problem",
    "ResolvedComponent",
    "Scenario",
    "ScenarioConfig",
    "ScenarioError",
    "Size",
    "VMConfig",
    "apply_overrides",
    "load_default_scenario",
    "load_scenario",
    "parse_scenario",
    "parse_scenario_text",
]

#: The scenario embedded in the package, run by ``vframework run`` with no file.
DEFAULT_SCENARIO = "default.toml"


def _default_components() -> dict[str, dict[str, str]]:
    text = resources.files("vframework.run").joinpath("scenarios", "defaults.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


#: The component a scenario gets for each key it leaves out (``scenarios/defaults.toml``).
DEFAULT_COMPONENTS = _default_components()


def _default_ref(table: str, key: str) -> Callable[[], ComponentRef]:
    return lambda: ComponentRef(name=DEFAULT_COMPONENTS[table][key])


def _short(value: object, limit: int = 120) -> str:
    """``repr(value)``, cut to ``limit`` characters: an error never echoes a huge input whole."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 25]}... ({len(text):,} characters)"


def _memory(value: Any) -> int:
    n = positive(parse_size, "size")(value)
    if n < PAGE_SIZE:
        raise ValueError(f"must hold at least one {PAGE_SIZE}-byte page, got {value!r}")
    if n > MAX_MEMORY:
        # Frame numbers are int32 in every per-page array (P2M, shadow tables).
        raise ValueError(f"at most 8TiB (2**31 - 1 pages) can be simulated, got {value!r}")
    return n


_memory.vf_unit = "size"  # type: ignore[attr-defined]

#: The most memory a host or a guest may have: 2**31 - 1 pages of 4 KiB (8 TiB).
MAX_MEMORY = (2**31 - 1) * PAGE_SIZE
#: The largest guest page frame table entry: a quarter of every page (Linux's is 64 bytes).
MAX_PAGE_STRUCT = PAGE_SIZE // 4
#: The highest guest timer frequency accepted (a tick every 100 µs).
MAX_HZ = 10_000
#: Bytes of memory (host or guest), from "4GiB"-style text; at least one page.
MemorySize = Annotated[int, BeforeValidator(_memory)]


class ComponentRef(BaseModel):
    """A component chosen by name, with its parameters: ``"name"`` or ``{ name = "name", ... }``."""

    model_config = ConfigDict(frozen=True)
    name: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return {"name": value, "params": {}}
        if isinstance(value, dict):
            if "name" not in value:
                raise ValueError("a component table needs a `name` key")
            if not isinstance(value["name"], str):
                raise ValueError("`name` must be a string naming an installed component")
            if set(value) == {"name", "params"} and isinstance(value["params"], dict):
                return value  # already split (a ComponentRef dumped and read back)
            return {"name": value["name"], "params": {k: v for k, v in value.items() if k != "name"}}
        raise ValueError(f"expected a component name or a table with `name`, got {_short(value)}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _costs(value: Any) -> Any:
    """``costs = "name"`` is ``costs = { profile = "name" }``."""
    return {"profile": value} if isinstance(value, str) else value


class HostConfig(_Strict):
    """The ``[host]`` table."""

    cpus: int = Field(2, gt=0, le=4096, description="physical CPUs")
    sockets: int = Field(1, gt=0, description="CPU sockets (CPUs split evenly over them)")
    memory: MemorySize = Field(4 * 1024**3, description="machine memory")
    hypervisor_memory: Annotated[int, BeforeValidator(parse_size)] = Field(
        0, ge=0, description="machine memory the hypervisor keeps for itself"
    )
    scheduler: ComponentRef = Field(default_factory=_default_ref("host", "scheduler"), description="the CPU scheduler")
    memory_policy: ComponentRef = Field(
        default_factory=_default_ref("host", "memory_policy"), description="the memory allocation policy"
    )
    memory_services: list[ComponentRef] = Field(default_factory=list, description="memory services to run")
    arch: Literal["x86", "classic", "x86-vt"] = Field(
        "x86-vt", description="CPU architecture: x86 (not classically virtualizable), classic, x86-vt (VT-x)"
    )
    hypervisor_type: Literal["native", "hosted"] = Field(
        "native", description="native (bare-metal hypervisor, like ESX or Xen) or hosted (on a host OS)"
    )
    host_os_load: float = Field(
        0.05, ge=0.0, le=0.9, description="hosted only: share of each CPU the host OS's own work takes"
    )
    page_levels: int = Field(4, ge=2, le=5, description="levels of the page tables (4 on x86-64; 5 with LA57)")
    tlb_entries: int = Field(1024, gt=0, le=1 << 20, description="TLB entries per CPU (a power of two; direct-mapped)")
    tlb_tagged: bool = Field(False, description="TLB entries tagged by VM and process (VPID/ASID)")
    irq_affinity: Literal["round-robin", "cpu0"] = Field(
        "round-robin", description="which CPU services device interrupts: each in turn, or always CPU 0"
    )
    costs: Annotated[dict[str, int | str], BeforeValidator(_costs)] = Field(
        default_factory=dict,
        description='the cost profile (costs = "pentium4-2006") or a table: `profile` and overrides in cycles',
    )

    @property
    def cost_model(self) -> CostModel:
        """The profile's costs with the overrides applied."""
        base = str(self.costs.get("profile", DEFAULT_PROFILE))
        overrides = {k: int(v) for k, v in self.costs.items() if k != "profile"}
        return profile(base).replace(**overrides)

    @field_validator("costs")
    @classmethod
    def _check_costs(cls, costs: dict[str, int | str]) -> dict[str, int | str]:
        for key, value in costs.items():
            if key == "profile":
                if value not in profiles():
                    raise ValueError(f"unknown cost profile {value!r}; profiles: {', '.join(profiles())}")
                continue
            if not isinstance(value, int):
                raise ValueError(f"host.costs.{key} must be an integer number of cycles, got {_short(value)}")
            if key not in COST_FIELDS:
                raise ValueError(f"unknown cost {key!r} in host.costs; known: {', '.join(COST_FIELDS)}")
            if value < (1 if key == "clock_hz" else 0):
                raise ValueError(f"host.costs.{key} must be {'positive' if key == 'clock_hz' else '>= 0'}")
        return costs

    @model_validator(mode="after")
    def _check_tlb(self) -> HostConfig:
        if self.tlb_entries & (self.tlb_entries - 1):
            raise ValueError(f"host.tlb_entries must be a power of two, got {self.tlb_entries}")
        return self


class VMConfig(BaseModel):
    """One ``[[vm]]`` table. Keys beyond these belong to the scheduler or memory policy."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$", description="unique VM name")
    vcpus: int = Field(1, gt=0, le=1024, description="virtual CPUs")
    memory: MemorySize = Field(1024**3, description="guest-physical memory")
    mode: ComponentRef = Field(default_factory=_default_ref("vm", "mode"), description="virtualization mode")
    workload: ComponentRef = Field(default_factory=_default_ref("vm", "workload"), description="what runs inside")
    devices: list[ComponentRef] = Field(
        default_factory=list,
        description="device plugins attached to the VM (at most one per kind served: disk, net); "
        "without one, a workload's I/O is a fixed delay",
    )
    swap: Annotated[int, BeforeValidator(parse_size)] = Field(
        0, ge=0, description="the guest's swap area on its virtual disk (0: no swap)"
    )
    balloon: Literal["on", "slow", "off"] = Field(
        "on", description="the guest's balloon driver: on, slow (a tenth of the asked rate) or off (absent)"
    )
    event_channels: bool = Field(
        True,
        description="whether the guest uses event channels; without them each device notification is an "
        "interrupt delivered as it occurs (no pending bits, masking or coalescing)",
    )
    image: str = Field(
        "linux",
        min_length=1,
        max_length=64,
        description="the disk image the VM boots from: VMs with the same image hold identical image pages",
    )
    hz: int = Field(
        250,
        ge=0,
        le=MAX_HZ,
        description="the guest kernel's timer: ticks per second on each vCPU, each a virtual timer interrupt "
        "the mode charges for (Linux: 100 to 1000); 0: no timer, as a bare test kernel",
    )
    tickless: bool = Field(
        False,
        description="a tickless kernel (Linux NO_HZ_IDLE): no ticks while a vCPU is idle; a periodic kernel "
        "wakes for every tick",
    )
    share_pages: bool = Field(
        True,
        description="the host's page-sharing services may share its pages (false: libvirt's "
        "memoryBacking/nosharepages; QEMU then leaves its memory out of KSM)",
    )
    page_struct_bytes: int = Field(
        0,
        ge=0,
        le=MAX_PAGE_STRUCT,
        description="bytes the guest kernel sets aside per page of its memory for its page frame table "
        "(Linux's struct page: 64); 0: none",
    )


#: The price sheet a scenario gets when its ``[billing]`` table gives none: list prices of the
#: kind public clouds quote (illustrative, not any provider's).
DEFAULT_PRICES = {
    "cpu": "0.05/vcpu-hour",
    "memory": "0.01/GiB-hour",
    "storage": "0.10/GiB-month",
    "disk_ops": "0.05/million-requests",
    "net_sent": "0.09/GiB",
}


def _prices(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError(f'expected a table of resource = "price/unit", got {_short(value)}')
    problems = []
    for resource, price in value.items():
        try:
            parse_price(price, resource)
        except ValueError as exc:
            problems.append(f"{resource}: {exc}")
    if problems:
        raise ValueError("; ".join(problems))
    return dict(value)


class BillingConfig(_Strict):
    """The ``[billing]`` table: how each VM's metered use is priced (see the metering docs)."""

    enabled: bool = Field(True, description="meter and bill the run (ledger.csv, invoice.json)")
    pricing: ComponentRef = Field(
        default_factory=_default_ref("billing", "pricing"), description="the pricing component and its parameters"
    )
    interval: Duration | None = Field(
        None,
        description="billing interval (a multiple of sample_interval); default 1s, or a hundredth of the "
        "duration if longer, rounded up to a multiple of sample_interval",
    )
    currency: str = Field("USD", min_length=1, max_length=8, description="the currency amounts are in")
    decimals: int = Field(9, ge=0, le=12, description="decimal places each ledger amount is rounded to (half-even)")
    prices: Annotated[dict[str, str], BeforeValidator(_prices)] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES),
        description='price per resource with its unit (cpu = "0.05/vcpu-hour"); given, it replaces the '
        "default sheet and unlisted resources are free",
    )


class ScenarioConfig(_Strict):
    """The whole file, before component names are resolved."""

    name: str = Field(min_length=1, description="scenario name (used in results)")
    seed: int = Field(0, ge=0, description="the run's one random seed")
    duration: Duration = Field(10 * 10**9, description="simulated time to run")
    sample_interval: Duration = Field(100 * 10**6, description="time between time-series samples")
    host: HostConfig = Field(default_factory=lambda: HostConfig.model_validate({}), description="the physical host")
    vm: list[VMConfig] = Field(min_length=1, max_length=MAX_VMS, description="the virtual machines")
    billing: BillingConfig = Field(
        default_factory=lambda: BillingConfig.model_validate({}), description="metering and billing"
    )

    @model_validator(mode="after")
    def _check_interval(self) -> ScenarioConfig:
        interval = self.billing.interval
        if interval is not None and interval % self.sample_interval:
            raise ValueError(
                f"billing.interval ({format_duration(interval)}) must be a multiple of sample_interval "
                f"({format_duration(self.sample_interval)}): the meter reads the counters at every sample"
            )
        return self

    @property
    def billing_interval(self) -> int:
        """The billing interval in ns: as given; by default 1 s, or a hundredth of the duration
        when that is longer (a ledger of at most about 100 intervals), rounded up to a multiple
        of the sample interval."""
        if self.billing.interval is not None:
            return self.billing.interval
        wanted = max(10**9, -(-self.duration // 100))
        return -(-wanted // self.sample_interval) * self.sample_interval


#: The kind of component a :class:`ResolvedComponent` holds (``Scheduler[Params]``...).
C_co = TypeVar("C_co", bound=Component[Params], covariant=True)


@dataclass(frozen=True)
class ResolvedComponent(Generic[C_co]):
    """A component class with its validated parameters."""

    cls: type[C_co]
    #: An instance of ``cls.params_model``.
    params: Params

    @property
    def name(self) -> str:
        return self.cls.name


@dataclass(frozen=True)
class ResolvedVM:
    """A VM with its components resolved."""

    config: VMConfig
    mode: ResolvedComponent[Mode[Params]]
    workload: ResolvedComponent[Workload[Params]]
    devices: tuple[ResolvedComponent[Device[Params]], ...]
    scheduler_params: Params | None
    policy_params: Params | None


@dataclass(frozen=True)
class Scenario:
    """A validated scenario, ready to build."""

    config: ScenarioConfig
    source: str
    scheduler: ResolvedComponent[Scheduler[Params]]
    memory_policy: ResolvedComponent[MemoryPolicy[Params]]
    memory_services: tuple[ResolvedComponent[MemoryService[Params]], ...]
    vms: tuple[ResolvedVM, ...] = field(default=())
    #: The pricing component; None when ``billing.enabled`` is false.
    billing: ResolvedComponent[Billing[Params]] | None = None
    #: The scenario's text as given (before overrides), and the ``--set`` overrides applied.
    given: str = ""
    overrides: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.config.name


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("params",):  # internal split of component tables
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def _problems(exc: ValidationError, source: str, prefix: tuple[int | str, ...] = ()) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = prefix + tuple(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif "input" in err and err["type"] not in ("value_error",) and not isinstance(err["input"], dict):
            msg = f"{msg} (got {_short(err['input'])})"
        problems.append(Problem(source, _path(loc), msg))
    return problems


@overload
def _resolve(
    plugins: PluginManager,
    kind: Literal["scheduler"],
    ref: ComponentRef,
    loc: tuple[int | str, ...],
    source: str,
    problems: list[Problem],
) -> ResolvedComponent[Scheduler[Params]] | None: ...
@overload
def _resolve(
    plugins: PluginManager,
    kind: Literal["memory_policy"],
    ref: ComponentRef,
    loc: tuple[int | str, ...],
    source: str,
    problems: list[Problem],
) -> ResolvedComponent[MemoryPolicy[Params]] | None: ...
@overload
def _resolve(
    plugins: PluginManager,
    kind: Literal["memory_service"],
    ref: ComponentRef,
    loc: tuple[int | str, ...],
    source: str,
    problems: list[Problem],
) -> ResolvedComponent[MemoryService[Params]] | None: ...
@overload
def _resolve(
    plugins: PluginManager,
    kind: Literal["mode"],
    ref: ComponentRef,
    loc: tuple[int | str, ...],
    source: str,
    problems: list[Problem],
) -> ResolvedComponent[Mode[Params]] | None: ...
@overload
def _resolve(
    plugins: PluginManager,
    kind: Literal["device"],
    ref: ComponentRef,
    loc: tuple[int | str, ...],
    source: str,
    problems: list[Problem],
) -> ResolvedComponent[Device[Params]] | None: ...
@overload
def _resolve(
    plugins: PluginManager,
    kind: Literal["workload"],
    ref: ComponentRef,
    loc: tuple[int | str, ...],
    source: str,
    problems: list[Problem],
) -> ResolvedComponent[Workload[Params]] | None: ...
@overload
def _resolve(
    plugins: PluginManager,
    kind: Literal["billing"],
    ref: ComponentRef,
    loc: tuple[int | str, ...],
    source: str,
    problems: list[Problem],
) -> ResolvedComponent[Billing[Params]] | None: ...
@overload
def _resolve(
    plugins: PluginManager,
    kind: str,
    ref: ComponentRef,
    loc: tuple[int | str, ...],
    source: str,
    problems: list[Problem],
) -> ResolvedComponent[Component[Params]] | None: ...
def _resolve(
    plugins: PluginManager,
    kind: str,
    ref: ComponentRef,
    loc: tuple[int | str, ...],
    source: str,
    problems: list[Problem],
) -> ResolvedComponent[Component[Params]] | None:
    """The component ``ref`` names, of ``kind`` (the overloads: a ``kind`` literal gives that
    kind's base class, as :meth:`PluginManager.get` does), with its parameters validated."""
    try:
        cls = plugins.get(kind, ref.name)
    except KeyError as exc:
        problems.append(Problem(source, _path(loc), str(exc.args[0])))
        return None
    try:
        params = cls.params_model(**ref.params)
    except ValidationError as exc:
        problems.extend(_problems(exc, source, loc))
        return None
    except TypeError as exc:
        problems.append(Problem(source, _path(loc), f"invalid parameters for {kind} {ref.name!r}: {exc}"))
        return None
    return ResolvedComponent(cls, params)


def _can_overcommit(plugins: PluginManager) -> str:
    """The installed memory policies that can overcommit, for an error message."""
    names = sorted(n for n, cls in plugins.components["memory_policy"].items() if getattr(cls, "can_overcommit", False))
    return ", ".join(names) or "none installed"


def parse_scenario(data: dict[str, Any], source: str, plugins: PluginManager) -> Scenario:
    """Validate a scenario already read from TOML; raises :class:`ScenarioError`."""
    config, problems = _validate_shape(data, source)
    if config is None:
        # Shape errors first, then whatever of the components can still be resolved, so one
        # pass reports every problem.
        _resolve_partial(data, source, plugins, problems)
        raise ScenarioError(problems)
    host = config.host
    scheduler = _resolve(plugins, "scheduler", host.scheduler, ("host", "scheduler"), source, problems)
    policy = _resolve(plugins, "memory_policy", host.memory_policy, ("host", "memory_policy"), source, problems)
    services = tuple(
        r
        for i, ref in enumerate(host.memory_services)
        if (r := _resolve(plugins, "memory_service", ref, ("host", "memory_services", i), source, problems))
    )
    first_at: dict[str, int] = {}
    for i, ref in enumerate(host.memory_services):
        if (first := first_at.setdefault(ref.name, i)) != i:
            problems.append(
                Problem(
                    source,
                    f"host.memory_services[{i}]",
                    f"{ref.name!r} is listed twice (also at [{first}]): each service runs once; "
                    "give its one entry the parameters",
                )
            )
    names: set[str] = set()
    vms = []
    for i, vm in enumerate(config.vm):
        if vm.name in names:
            problems.append(Problem(source, f"vm[{i}].name", f"duplicate VM name {vm.name!r}"))
        names.add(vm.name)
        mode = _resolve(plugins, "mode", vm.mode, ("vm", i, "mode"), source, problems)
        workload = _resolve(plugins, "workload", vm.workload, ("vm", i, "workload"), source, problems)
        devices = tuple(
            dev
            for j, ref in enumerate(vm.devices)
            if (dev := _resolve(plugins, "device", ref, ("vm", i, "devices", j), source, problems))
        )
        served: dict[str, str] = {}
        for j, dev in enumerate(devices):
            if (other := served.setdefault(dev.cls.serves, dev.name)) is not dev.name:
                problems.append(
                    Problem(
                        source,
                        f"vm[{i}].devices[{j}]",
                        f"devices {other!r} and {dev.name!r} both serve {dev.cls.serves!r}; a VM attaches one of each",
                    )
                )
        sched_params, policy_params = _vm_extras(scheduler, policy, dict(vm.model_extra or {}), i, source, problems)
        if workload is not None:
            for key, message in workload.cls.check(
                workload.params, vm.memory // PAGE_SIZE // vm.vcpus, vm.swap // PAGE_SIZE // vm.vcpus
            ):
                problems.append(Problem(source, f"vm[{i}].workload.{key}", message))
        if mode is not None and host.arch not in mode.cls.architectures:
            problems.append(
                Problem(
                    source,
                    f"vm[{i}].mode",
                    f"mode {mode.name!r} runs on host.arch in {list(mode.cls.architectures)}, not {host.arch!r}",
                )
            )
        if mode and workload:
            vms.append(ResolvedVM(vm, mode, workload, devices, sched_params, policy_params))
    total = sum(vm.memory for vm in config.vm) + host.hypervisor_memory
    if policy is not None and not policy.cls.can_overcommit and total > host.memory:
        problems.append(
            Problem(
                source,
                "vm",
                f"the VMs need {format_size(total)} (with the hypervisor's {format_size(host.hypervisor_memory)}) "
                f"but the host has {format_size(host.memory)}, and memory policy {policy.name!r} cannot overcommit "
                f"(policies that can, with a memory service: {_can_overcommit(plugins)})",
            )
        )
    if policy is not None:
        host_pages = (host.memory - host.hypervisor_memory) // PAGE_SIZE
        admitted = [(v.config.name, v.config.memory // PAGE_SIZE, v.policy_params) for v in vms]
        for message in policy.cls.admit(policy.params, host_pages, admitted):
            problems.append(Problem(source, "vm", message))
    if policy is not None and policy.cls.can_overcommit:
        fixed = [v for v in vms if v.mode.cls.preallocate]
        pinned = sum(v.config.memory for v in fixed) + host.hypervisor_memory
        if fixed and pinned > host.memory:
            listed = ", ".join(f"{v.config.name!r} ({v.mode.name})" for v in fixed)
            problems.append(
                Problem(
                    source,
                    "vm",
                    f"VMs {listed} preallocate all their memory ({format_size(pinned)} with the hypervisor's), "
                    f"more than the host's {format_size(host.memory)}: a mode that preallocates cannot be "
                    "overcommitted; give them a mode that backs pages on demand",
                )
            )
    if policy is not None and policy.cls.can_overcommit and not host.memory_services and total > host.memory:
        installed = ", ".join(sorted(plugins.components["memory_service"])) or "none installed"
        problems.append(
            Problem(
                source,
                "host.memory_services",
                f"the VMs need {format_size(total)} (with the hypervisor's {format_size(host.hypervisor_memory)}) "
                f"but the host has {format_size(host.memory)}: memory policy {policy.name!r} can overcommit only "
                f"with a memory service that reclaims or saves frames ({installed}); page sharing alone saves "
                "only what equal contents allow, so list one that takes frames back (a balloon, hypervisor swap)",
            )
        )
    billing = None
    if config.billing.enabled:
        billing = _resolve(plugins, "billing", config.billing.pricing, ("billing", "pricing"), source, problems)
    if problems:
        raise ScenarioError(problems)
    assert scheduler
    assert policy
    return Scenario(config, source, scheduler, policy, services, tuple(vms), billing)


def _validate_shape(data: dict[str, Any], source: str) -> tuple[ScenarioConfig | None, list[Problem]]:
    """Validate the top level, the host and each VM separately, so every shape error is found."""
    problems: list[Problem] = []
    host, vms = data.get("host", {}), data.get("vm")
    # The top level alone: host and vm swapped for valid placeholders, checked below.
    placeholder = {**data, "host": {}, "vm": [{"name": "placeholder"}]}
    try:
        ScenarioConfig.model_validate(placeholder)
    except ValidationError as exc:
        problems.extend(_problems(exc, source))
    try:
        HostConfig.model_validate(host)
    except ValidationError as exc:
        problems.extend(_problems(exc, source, ("host",)))
    if vms is None:
        problems.append(Problem(source, "vm", "required key is missing: add at least one [[vm]] table"))
    elif not isinstance(vms, list) or not vms:
        problems.append(Problem(source, "vm", "expected one or more [[vm]] tables"))
    else:
        for i, vm in enumerate(vms):
            try:
                VMConfig.model_validate(vm)
            except ValidationError as exc:
                problems.extend(_problems(exc, source, ("vm", i)))
    if problems:
        return None, problems
    try:
        return ScenarioConfig.model_validate(data), []
    except ValidationError as exc:  # pragma: no cover - the parts above cover the whole
        return None, _problems(exc, source)


def _resolve_partial(data: dict[str, Any], source: str, plugins: PluginManager, problems: list[Problem]) -> None:
    """Report unknown component names in a scenario whose shape is invalid."""
    seen = {p.path for p in problems}

    def check(
        kind: str, raw: object, loc: tuple[int | str, ...], default: str | None = None
    ) -> ResolvedComponent[Component[Params]] | None:
        if _path(loc) in seen or any(p.startswith(_path(loc) + ".") for p in seen):
            return None
        if raw is None:
            if default is None:
                return None
            raw = default
        try:
            ref = ComponentRef.model_validate(raw)
        except ValidationError:
            return None
        return _resolve(plugins, kind, ref, loc, source, problems)

    host = data.get("host", {})
    scheduler = policy = None
    if isinstance(host, dict):
        defaults = DEFAULT_COMPONENTS["host"]
        scheduler = check("scheduler", host.get("scheduler"), ("host", "scheduler"), defaults["scheduler"])
        policy = check("memory_policy", host.get("memory_policy"), ("host", "memory_policy"), defaults["memory_policy"])
    vms = data.get("vm")
    if isinstance(vms, list):
        for i, vm in enumerate(vms):
            if isinstance(vm, dict):
                check("mode", vm.get("mode"), ("vm", i, "mode"))
                check("workload", vm.get("workload"), ("vm", i, "workload"))
                extras = {k: v for k, v in vm.items() if k not in VMConfig.model_fields}
                if scheduler is not None or policy is not None:
                    note = "" if scheduler else "; the scheduler named in host.scheduler is not known"
                    _vm_extras(scheduler, policy, extras, i, source, problems, note)


def _vm_extras(
    scheduler: ResolvedComponent[Component[Params]] | None,
    policy: ResolvedComponent[Component[Params]] | None,
    extras: dict[str, Any],
    index: int,
    source: str,
    problems: list[Problem],
    note: str = "",
) -> tuple[Params | None, Params | None]:
    """A VM's keys beyond :class:`VMConfig` belong to the scheduler or the memory policy."""
    sched_params = _vm_params(scheduler, extras, index, source, problems)
    policy_params = _vm_params(policy, extras, index, source, problems)
    for key in extras:
        owners = [c.cls for c in (scheduler, policy) if c is not None]
        why = " or ".join(f"{c.kind.replace('_', ' ')} {c.name!r}" for c in owners) or "any component"
        problems.append(Problem(source, f"vm[{index}].{key}", f"unknown key (not used by {why}{note})"))
    return sched_params, policy_params


def _vm_params(
    owner: ResolvedComponent[Component[Params]] | None,
    extras: dict[str, Any],
    index: int,
    source: str,
    problems: list[Problem],
) -> Params | None:
    if owner is None or owner.cls.vm_params_model is None:
        return None
    model = owner.cls.vm_params_model
    mine = {k: extras.pop(k) for k in list(extras) if k in model.model_fields}
    try:
        return model(**mine)
    except ValidationError as exc:
        problems.extend(_problems(exc, source, ("vm", index)))
        return None


_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*)(?:\[(\d+)\])?")


def apply_overrides(data: dict[str, Any], overrides: list[str], source: str = "--set") -> dict[str, Any]:
    """Apply ``KEY=VALUE`` overrides (``host.cpus=4``, ``vm[0].memory=2GiB``) to raw scenario data.

    VALUE is read as a TOML value when it parses as one (``4``, ``true``, ``{ name = "x" }``),
    else as a string.
    """
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ScenarioError([Problem(source, item, "expected KEY=VALUE, e.g. host.cpus=4")])
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        parts = key.strip().split(".")
        node: Any = data
        for n, part in enumerate(parts):
            m = _KEY.fullmatch(part)
            if not m:
                raise ScenarioError([Problem(source, key, f"{part!r} is not a key or key[index]")])
            name, index = m.group(1), m.group(2)
            last = n == len(parts) - 1
            if index is None:
                if last:
                    node[name] = value
                else:
                    node = node.setdefault(name, {})
                    if not isinstance(node, dict):
                        raise ScenarioError([Problem(source, key, f"{name!r} is not a table")])
            else:
                seq = node.get(name)
                if not isinstance(seq, list) or int(index) >= len(seq):
                    size = len(seq) if isinstance(seq, list) else 0
                    raise ScenarioError([Problem(source, key, f"{name} has {size} entries; no index {index}")])
                if last:
                    seq[int(index)] = value
                else:
                    node = seq[int(index)]
                    if not isinstance(node, dict):
                        raise ScenarioError(
                            [
                                Problem(
                                    source,
                                    key,
                                    f"{name}[{index}] is {_short(node)}, not a table, "
                                    f"so it has no key {parts[n + 1]!r}",
                                )
                            ]
                        )
    return data


def parse_scenario_text(text: str, source: str, plugins: PluginManager, overrides: list[str] | None) -> Scenario:
    """Parse scenario TOML ``text`` (read from ``source``) with ``overrides`` applied; a problem
    with an overridden key is reported against the ``--set`` that gave it, not the file."""
    overrides = list(overrides or [])
    data = apply_overrides(_read(text, source), overrides)
    try:
        scenario = parse_scenario(data, source, plugins)
    except ScenarioError as exc:
        given = {item.partition("=")[0].strip().replace(" ", ""): item for item in overrides}
        problems = []
        for p in exc.problems:
            item = next((v for k, v in given.items() if p.path == k or p.path.startswith((k + ".", k + "["))), None)
            problems.append(Problem(f"--set {item}", p.path, p.message) if item else p)
        raise ScenarioError(problems) from None
    return replace(scenario, given=text, overrides=tuple(overrides))


def _read(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError([Problem(source, "", f"not valid TOML: {exc}")]) from None


def load_scenario(path: str | Path, plugins: PluginManager, overrides: list[str] | None = None) -> Scenario:
    """Read, override and validate a scenario file."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ScenarioError([Problem(source, "", f"cannot read the file: {reason}")]) from None
    return parse_scenario_text(text, source, plugins, overrides)


def load_default_scenario(plugins: PluginManager, overrides: list[str] | None = None) -> Scenario:
    """The scenario shipped inside the package."""
    text = resources.files("vframework.run").joinpath("scenarios", DEFAULT_SCENARIO).read_text(encoding="utf-8")
    source = f"<default scenario {DEFAULT_SCENARIO}>"
    return parse_scenario_text(text, source, plugins, overrides)
