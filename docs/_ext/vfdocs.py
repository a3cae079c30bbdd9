"""Reference tables generated from the code, so the docs cannot drift from it.

``.. vf-scenario-reference::`` documents every scenario key (the pydantic models of
:mod:`vframework.run.scenario`) and every parameter of every installed component;
``.. vf-cost-reference::`` the cost model; ``.. vf-metrics-reference::`` every counter.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from docutils import nodes
from docutils.parsers.rst import Directive

from vframework.api.manager import PluginManager
from vframework.hv.metrics import HOST_METRICS, VM_METRICS
from vframework.machine.costs import CostModel
from vframework.run.scenario import HostConfig, ScenarioConfig, VMConfig


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


def _fields(model: Any) -> list[list[str]]:
    rows = []
    for name, info in model.model_fields.items():
        default = info.default_factory() if info.default_factory is not None else info.default
        if hasattr(default, "name") and hasattr(default, "params"):
            default = default.name
        if default is dataclasses.MISSING or repr(default) == "PydanticUndefined":
            default = "(required)"
        ann = getattr(info.annotation, "__name__", str(info.annotation)).replace("typing.", "")
        rows.append([name, ann, repr(default) if not isinstance(default, str) else default, info.description or ""])
    return rows


class ScenarioReference(Directive):
    def run(self) -> list[nodes.Node]:
        header = ["key", "type", "default", "description"]
        out: list[nodes.Node] = [
            _table("top level", header, [r for r in _fields(ScenarioConfig) if r[0] not in ("host", "vm")]),
            _table("[host]", header, _fields(HostConfig)),
            _table("[[vm]]", header, _fields(VMConfig)),
        ]
        pm = PluginManager()
        for kind, components in sorted(pm.components.items()):
            for name, cls in sorted(components.items()):
                if cls.params_model is not None and cls.params_model.model_fields:
                    out.append(_table(f"{kind} {name!r}: parameters", header, _fields(cls.params_model)))
                vm_params = getattr(cls, "vm_params_model", None)
                if vm_params is not None and vm_params.model_fields:
                    out.append(_table(f"{kind} {name!r}: per-VM keys in [[vm]]", header, _fields(vm_params)))
        return out


class CostReference(Directive):
    def run(self) -> list[nodes.Node]:
        rows = []
        for f in dataclasses.fields(CostModel):
            rows.append([f.name, repr(f.default), f.metadata.get("doc", f.metadata.get("description", ""))])
        return [_table("cost model (cycles unless stated)", ["field", "default", "description"], rows)]


class MetricsReference(Directive):
    def run(self) -> list[nodes.Node]:
        header = ["name", "unit", "kind", "description"]
        return [
            _table(title, header, [[m.name, m.unit, m.kind, m.description] for m in metrics.values()])
            for title, metrics in (("per VM", VM_METRICS), ("host", HOST_METRICS))
        ]


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("vf-scenario-reference", ScenarioReference)
    app.add_directive("vf-cost-reference", CostReference)
    app.add_directive("vf-metrics-reference", MetricsReference)
    return {"parallel_read_safe": True}
