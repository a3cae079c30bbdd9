"""Reference tables generated from the code, so the docs cannot drift from it.

``.. vf-scenario-reference::`` documents every scenario key (the pydantic models of
:mod:`vframework.run.scenario`) and every parameter of every installed component;
``.. vf-cost-reference::`` the cost model; ``.. vf-metrics-reference::`` every counter.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, get_args, get_origin

from docutils import nodes
from docutils.parsers.rst import Directive

from vframework.api.manager import PluginManager
from vframework.api.pricing import RESOURCES
from vframework.hv.metrics import HOST_METRICS, VM_METRICS
from vframework.machine.costs import CostModel, profiles
from vframework.run.scenario import BillingConfig, HostConfig, ScenarioConfig, VMConfig
from vframework.run.top import COLUMNS, KEYS
from vframework.sim.units import format_duration, format_size, parse_duration, parse_size


def _table(title: str, header: list[str], rows: list[list[str]]) -> nodes.table:
    table = nodes.table()
    table += nodes.title(text=title)
    group = nodes.tgroup(cols=len(header))
    table += group
    for _ in header:
        group += nodes.colspec(colwidth=1)
    head = nodes.thead()
    group += head
    body = nodes.tbody()
    group += body
    for target, cells in ((head, [header]), (body, rows)):
        for cells_row in cells:
            row = nodes.row()
            for cell in cells_row:
                entry = nodes.entry()
                entry += nodes.paragraph(text=str(cell))
                row += entry
            target.append(row)
    return table


#: Scenario keys naming a component, and the kind each names.
_COMPONENT_KEYS = {
    "scheduler": "scheduler",
    "memory_policy": "memory_policy",
    "memory_services": "memory_service",
    "mode": "mode",
    "workload": "workload",
    "devices": "device",
    "pricing": "billing",
}


def _unit(metadata: Any) -> str | None:
    """ "size" or "duration" when a field's validators parse text with units."""
    for meta in metadata:
        func = getattr(meta, "func", None)
        if func is parse_size or getattr(func, "vf_unit", None) == "size":
            return "size"
        if func is parse_duration or getattr(func, "vf_unit", None) == "duration":
            return "duration"
    return None


def _type(name: str, info: Any, plugins: PluginManager | None) -> str:
    """A type as a scenario writer reads it: size, duration, one of a | b, component of kind..."""
    unit = _unit(info.metadata)
    ann = info.annotation
    args = [a for a in get_args(ann) if a is not type(None)]
    optional = len(args) < len(get_args(ann))
    if unit is None and optional and len(args) == 1:
        unit = _unit(get_args(args[0]))  # Duration | None: the validator is inside the Annotated
    if unit is not None:
        return unit + (" (optional)" if optional else "")
    if get_origin(ann) is Literal:
        return "one of: " + ", ".join(str(a) for a in get_args(ann))
    if name in _COMPONENT_KEYS:
        kind = _COMPONENT_KEYS[name]
        installed = sorted(plugins.components[kind]) if plugins is not None else []
        many = "list of components" if get_origin(ann) is list else "component"
        return f"{many} ({kind.replace('_', ' ')}): " + (", ".join(installed) or "none installed")
    text = getattr(ann, "__name__", None) or str(ann).replace("typing.", "")
    return {"int": "integer", "str": "string", "bool": "boolean", "float": "number"}.get(text, text)


def _default(info: Any, kind: str) -> str:
    default = info.default_factory() if info.default_factory is not None else info.default
    if hasattr(default, "name") and hasattr(default, "params"):
        return str(default.name)
    if default is dataclasses.MISSING or repr(default) == "PydanticUndefined":
        return "(required)"
    if isinstance(default, int) and not isinstance(default, bool) and kind.startswith("size"):
        return format_size(default)
    if isinstance(default, int) and not isinstance(default, bool) and kind.startswith("duration"):
        return format_duration(default)
    if isinstance(default, dict) and default and all(isinstance(v, str) for v in default.values()):
        return ", ".join(f"{k} = {v}" for k, v in default.items())
    return repr(default) if not isinstance(default, str) else default


def _fields(model: Any, plugins: PluginManager | None = None) -> list[list[str]]:
    rows = []
    for name, info in model.model_fields.items():
        kind = _type(name, info, plugins)
        rows.append([name, kind, _default(info, kind), info.description or ""])
    return rows


class ScenarioReference(Directive):
    def run(self) -> list[nodes.Node]:
        header = ["key", "type", "default", "description"]
        pm = PluginManager()
        top = [r for r in _fields(ScenarioConfig, pm) if r[0] not in ("host", "vm", "billing")]
        out: list[nodes.Node] = [
            _table("top level", header, top),
            _table("[host]", header, _fields(HostConfig, pm)),
            _table("[[vm]]", header, _fields(VMConfig, pm)),
            _table("[billing]", header, _fields(BillingConfig, pm)),
        ]
        for kind, components in sorted(pm.components.items()):
            for name, cls in sorted(components.items()):
                if cls.params_model is not None and cls.params_model.model_fields:
                    out.append(_table(f"{kind} {name!r}: parameters", header, _fields(cls.params_model, pm)))
                vm_params = getattr(cls, "vm_params_model", None)
                if vm_params is not None and vm_params.model_fields:
                    out.append(_table(f"{kind} {name!r}: per-VM keys in [[vm]]", header, _fields(vm_params, pm)))
        return out


class CostReference(Directive):
    def run(self) -> list[nodes.Node]:
        rows = []
        for f in dataclasses.fields(CostModel):
            rows.append([f.name, repr(f.default), f.metadata.get("doc", f.metadata.get("description", ""))])
        out: list[nodes.Node] = [_table("cost model (cycles unless stated)", ["field", "default", "description"], rows)]
        for name, prof in profiles().items():
            if prof.values:
                cells = [[key, str(value), source] for key, (value, source) in prof.values.items()]
                out.append(_table(f"profile {name!r}: {prof.description}", ["cost", "value", "source"], cells))
        return out


class MetricsReference(Directive):
    def run(self) -> list[nodes.Node]:
        header = ["name", "unit", "kind", "description"]
        return [
            _table(title, header, [[m.name, m.unit, m.kind, m.description] for m in metrics.values()])
            for title, metrics in (("per VM", VM_METRICS), ("host", HOST_METRICS))
        ]


class ResourcesReference(Directive):
    def run(self) -> list[nodes.Node]:
        rows = [[r.name, r.unit, r.description] for r in RESOURCES.values()]
        return [_table("metered resources", ["resource", "base unit", "what"], rows)]


class TopReference(Directive):
    def run(self) -> list[nodes.Node]:
        key_of = {column: key for key, column in KEYS.items()}
        rows = [["VM", "the VM's name", key_of["VM"]]]
        rows += [[title, c.description, key_of.get(title, "")] for title, c in COLUMNS.items()]
        return [_table("vframework top: columns", ["column", "what", "key to sort by it"], rows)]


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("vf-resources-reference", ResourcesReference)
    app.add_directive("vf-top-reference", TopReference)
    app.add_directive("vf-scenario-reference", ScenarioReference)
    app.add_directive("vf-cost-reference", CostReference)
    app.add_directive("vf-metrics-reference", MetricsReference)
    return {"parallel_read_safe": True}
