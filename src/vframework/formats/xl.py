"""Xen's xl.cfg (``man 5 xl.cfg``): ``KEY = VALUE`` lines, read into domains.

Mapped (every other key is reported by name): ``name``; ``memory`` and ``maxmem`` (MiB: the VM
has ``maxmem``, its balloon target is ``memory``); ``vcpus``; ``cpu_weight`` (the scheduler's
share); ``cap`` (percent of one CPU); ``type`` (``pv``: paravirtual; ``hvm`` and ``pvh``:
hardware-assisted; the older ``builder = "hvm"`` too); ``disk`` (``xvd*`` or a PV domain:
``ring-block``; ``hd*``/``sd*`` of an HVM domain: ``emulated-disk``); ``vif`` (``model=e1000``
or ``rtl8139`` on HVM: ``emulated-nic``; otherwise the PV ``ring-net``).

The file is parsed as Python literals (xl's syntax is a subset: numbers, strings, lists of
strings), never evaluated.
"""

from __future__ import annotations

import ast
from typing import Any

from vframework.errors import Problem
from vframework.formats.domains import MAPPING, MIB, Domain, ImportError_, Unmodelled

__all__ = ["read"]

_MAPPED = {"name", "memory", "maxmem", "vcpus", "cpu_weight", "cap", "type", "builder", "disk", "vif"}
_HW: str = MAPPING["mode"]["hardware"]
_TYPES = {"pv": MAPPING["mode"]["paravirtual"], "hvm": _HW, "pvh": _HW}
_DEVICES: dict[str, str] = MAPPING["device"]
_MAX_VCPUS = 1024


def _settings(text: str, source: str) -> dict[str, tuple[Any, int]]:
    try:
        tree = ast.parse(text, filename=source)
    except SyntaxError as exc:
        raise ImportError_([Problem(source, f"line {exc.lineno}", f"not xl.cfg syntax: {exc.msg}")]) from None
    found: dict[str, tuple[Any, int]] = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise ImportError_([Problem(source, f"line {node.lineno}", "expected KEY = VALUE")])
        key = node.targets[0].id
        try:
            found[key] = (ast.literal_eval(node.value), node.lineno)
        except ValueError:
            raise ImportError_([Problem(source, key, "the value must be a number, a string or a list")]) from None
    return found


def _number(settings: dict[str, tuple[Any, int]], key: str, source: str, low: int) -> int | None:
    if key not in settings:
        return None
    value = settings[key][0]
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ImportError_([Problem(source, key, f"expected an integer of at least {low}, got {value!r}")])
    return value


def _specs(settings: dict[str, tuple[Any, int]], key: str, source: str) -> list[dict[str, str]]:
    """xl's device specs: each a string of ``k=v`` (or positional) items separated by commas."""
    value = settings.get(key, ([], 0))[0]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ImportError_([Problem(source, key, "expected a list of strings")])
    out = []
    for spec in value:
        items: dict[str, str] = {}
        for n, part in enumerate(p.strip() for p in spec.split(",")):
            k, sep, v = part.partition("=")
            items[k.strip() if sep else f"_{n}"] = v.strip() if sep else part
        out.append(items)
    return out


def read(text: str, source: str) -> tuple[Domain, list[Unmodelled]]:
    """One domain from an xl.cfg file; ImportError_ names the key of what is wrong."""
    settings = _settings(text, source)
    left = [Unmodelled(source, key) for key in settings if key not in _MAPPED]
    name = settings.get("name", (None, 0))[0]
    if not isinstance(name, str) or not name:
        raise ImportError_([Problem(source, "name", "a domain needs a name")])
    memory = _number(settings, "memory", source, 1)
    maxmem = _number(settings, "maxmem", source, 1)
    if memory is None and maxmem is None:
        raise ImportError_([Problem(source, "memory", "a domain needs memory (MiB)")])
    top = max(v for v in (memory, maxmem) if v is not None)
    d = Domain(name, source, top * MIB)
    if memory is not None and maxmem is not None and memory < maxmem:
        d.current_memory = memory * MIB
    d.vcpus = _number(settings, "vcpus", source, 1) or 1
    if d.vcpus > _MAX_VCPUS:
        raise ImportError_([Problem(source, "vcpus", f"at most {_MAX_VCPUS}, got {d.vcpus}")])
    d.shares = _number(settings, "cpu_weight", source, 1)
    cap = _number(settings, "cap", source, 0)
    d.cap = cap or None
    kind = settings.get("type", (None, 0))[0] or ("hvm" if settings.get("builder", ("", 0))[0] == "hvm" else "pv")
    if kind not in _TYPES:
        raise ImportError_([Problem(source, "type", f"{kind!r} is not one of {', '.join(_TYPES)}")])
    d.mode = _TYPES[kind]
    hvm = kind == "hvm"
    for i, spec in enumerate(_specs(settings, "disk", source)):
        vdev = spec.get("vdev", spec.get("_2", ""))
        emulated = hvm and vdev.startswith(("hd", "sd"))
        _add(d, left, "disk", _DEVICES["emulated_disk" if emulated else "ring_disk"], f"disk[{i}]")
    for i, spec in enumerate(_specs(settings, "vif", source)):
        model = spec.get("model", "rtl8139" if hvm and spec.get("type") != "vif" else "netfront")
        emulated = hvm and model in ("e1000", "rtl8139")
        _add(d, left, "net", _DEVICES["emulated_nic" if emulated else "ring_nic"], f"vif[{i}]")
    return d, left


def _add(d: Domain, left: list[Unmodelled], serves: str, name: str, path: str) -> None:
    kinds = ("ring_disk", "emulated_disk") if serves == "disk" else ("ring_nic", "emulated_nic")
    have = [_DEVICES[k] for k in kinds]
    if any(x in d.devices for x in have):
        left.append(Unmodelled(d.source, path, f"not modelled (a VM has one {serves} device here)"))
    else:
        d.devices.append(name)
