"""libvirt domain XML (https://libvirt.org/formatdomain.html): read into domains, and written back.

Mapped (everything else is reported by its path):

==========================================  =================================================
element                                     becomes
==========================================  =================================================
``name``                                    the VM's name
``memory`` (``unit``, default KiB)          ``memory``
``currentMemory``                           the balloon target: the policy's ``mem_max``
``vcpu``                                    ``vcpus``
``cputune/shares``                          the scheduler's share (credit ``weight``, ...)
``cputune/period`` + ``quota``              a cap: quota / period x vCPUs, in % of a CPU
``cputune/global_period`` + ``global_quota``  a cap for the whole VM
``memtune/hard_limit``, ``min_guarantee``   the policy's ``mem_max``, ``mem_min``
``memballoon model="none"``                 ``balloon = "off"``
``memoryBacking/nosharepages``              ``share_pages = false``
``os/type``                                 ``hvm``: hardware-assisted; ``xen``/``linux``: paravirtual
``features/hap state="off"``                hardware assist without nested paging
``disk`` (``target bus``)                   virtio, xen: ``ring-block``; ide, sata, scsi: ``emulated-disk``
``interface`` (``model type``)              virtio, netfront: ``ring-net``; e1000, rtl8139: ``emulated-nic``
==========================================  =================================================
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from vframework.errors import Problem
from vframework.formats.domains import (
    HARDWARE,
    MAPPING,
    Domain,
    ImportError_,
    Unmodelled,
    component_name,
    default_host,
    host_table,
    to_scenario,
)
from vframework.run.scenario import DEFAULT_COMPONENTS
from vframework.sim.units import parse_size

__all__ = ["export", "read", "read_folder"]

_UNITS = {
    "b": 1, "bytes": 1, "kb": 1000, "k": 1024, "kib": 1024, "mb": 1000**2, "m": 1024**2, "mib": 1024**2,
    "gb": 1000**3, "g": 1024**3, "gib": 1024**3, "tb": 1000**4, "t": 1024**4, "tib": 1024**4,
}  # fmt: skip
_DEVICES: dict[str, str] = MAPPING["device"]
_DISK_BUS = {bus: _DEVICES[kind] for bus, kind in MAPPING["libvirt"]["disk_bus"].items()}
_NIC_MODEL = {model: _DEVICES[kind] for model, kind in MAPPING["libvirt"]["nic_model"].items()}
_SHARE_TAG: str = MAPPING["libvirt"]["cputune_share"]
_CPUTUNE = (_SHARE_TAG, *MAPPING["libvirt"]["cputune"])
_RING = {_DEVICES["ring_disk"], _DEVICES["ring_nic"]}
_DISKS = {_DEVICES["ring_disk"], _DEVICES["emulated_disk"]}
_NICS = {_DEVICES["ring_nic"], _DEVICES["emulated_nic"]}
_PV: str = MAPPING["mode"]["paravirtual"]
_MAPPED = {
    "name",
    "memory",
    "currentMemory",
    "vcpu",
    "cputune",
    "memtune",
    "memoryBacking",
    "os",
    "features",
    "devices",
}
_MODES = {os_type: MAPPING["mode"][kind] for os_type, kind in MAPPING["libvirt"]["os_type"].items()}
_MAX_VCPUS = 1024


def _int(el: ET.Element, path: str, source: str, low: int = 0) -> int:
    text = (el.text or "").strip()
    try:
        value = int(text)
    except ValueError:
        raise ImportError_([Problem(source, path, f"expected an integer, got {text!r}")]) from None
    if value < low:
        raise ImportError_([Problem(source, path, f"must be at least {low}, got {value}")])
    return value


def _bytes(el: ET.Element, path: str, source: str) -> int:
    unit = el.get("unit", "KiB")
    scale = _UNITS.get(unit.lower())
    if scale is None:
        raise ImportError_([Problem(source, path, f"unknown unit {unit!r}; libvirt's: {', '.join(_UNITS)}")])
    return _int(el, path, source) * scale


def read(text: str, source: str) -> tuple[Domain, list[Unmodelled]]:
    """One domain from its XML; ImportError_ names the element path of what is wrong."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ImportError_([Problem(source, "", f"malformed XML: {exc}")]) from None
    if root.tag != "domain":
        raise ImportError_([Problem(source, f"/{root.tag}", "the root element must be <domain>")])
    left = [Unmodelled(source, f"/domain/{child.tag}") for child in root if child.tag not in _MAPPED]
    name_el = root.find("name")
    if name_el is None or not (name_el.text or "").strip():
        raise ImportError_([Problem(source, "/domain/name", "a domain needs a <name>")])
    memory_el = root.find("memory")
    if memory_el is None:
        raise ImportError_([Problem(source, "/domain/memory", "a domain needs a <memory>")])
    d = Domain(name_el.text.strip(), source, _bytes(memory_el, "/domain/memory", source))  # type: ignore[union-attr]
    if d.memory <= 0:
        raise ImportError_([Problem(source, "/domain/memory", "must be more than 0")])
    if (el := root.find("currentMemory")) is not None:
        d.current_memory = _bytes(el, "/domain/currentMemory", source)
        if d.current_memory > d.memory:
            raise ImportError_([Problem(source, "/domain/currentMemory", "is more than <memory>")])
    if (el := root.find("vcpu")) is not None:
        d.vcpus = _int(el, "/domain/vcpu", source, low=1)
        if d.vcpus > _MAX_VCPUS:
            raise ImportError_([Problem(source, "/domain/vcpu", f"at most {_MAX_VCPUS} vCPUs, got {d.vcpus}")])
    _cputune(root, d, left)
    _memtune(root, d, left)
    backing = root.find("memoryBacking")
    for child in backing if backing is not None else []:
        if child.tag == "nosharepages":
            d.share_pages = False
        else:
            left.append(Unmodelled(source, f"/domain/memoryBacking/{child.tag}"))
    _os(root, d, left)
    _devices(root, d, left)
    return d, left


def _cputune(root: ET.Element, d: Domain, left: list[Unmodelled]) -> None:
    tune = root.find("cputune")
    if tune is None:
        return
    values: dict[str, int] = {}
    for child in tune:
        path = f"/domain/cputune/{child.tag}"
        if child.tag in _CPUTUNE:
            values[child.tag] = _int(child, path, d.source, low=-1)
        else:
            left.append(Unmodelled(d.source, path, "not modelled (no scheduler here has CPU affinity)"
                                   if child.tag in ("vcpupin", "emulatorpin") else "not modelled"))  # fmt: skip
    if _SHARE_TAG in values:
        d.shares = max(1, values[_SHARE_TAG])
    for period, quota, per_vcpu in (("period", "quota", True), ("global_period", "global_quota", False)):
        if values.get(quota, -1) > 0:
            if values.get(period, 0) <= 0:
                raise ImportError_([Problem(d.source, f"/domain/cputune/{quota}", f"needs a positive <{period}>")])
            cap = round(values[quota] / values[period] * 100 * (d.vcpus if per_vcpu else 1))
            d.cap = cap if d.cap is None else min(d.cap, cap)


def _memtune(root: ET.Element, d: Domain, left: list[Unmodelled]) -> None:
    tune = root.find("memtune")
    if tune is None:
        return
    for child in tune:
        path = f"/domain/memtune/{child.tag}"
        if child.tag == "hard_limit":
            d.hard_limit = _bytes(child, path, d.source)
        elif child.tag == "min_guarantee":
            d.min_guarantee = _bytes(child, path, d.source)
        else:
            left.append(Unmodelled(d.source, path))


def _os(root: ET.Element, d: Domain, left: list[Unmodelled]) -> None:
    os_type = root.findtext("os/type", default="hvm").strip()
    if os_type not in _MODES:
        raise ImportError_([Problem(d.source, "/domain/os/type", f"{os_type!r} is not one of {', '.join(_MODES)}")])
    d.mode = _MODES[os_type]
    os_el = root.find("os")
    for child in os_el if os_el is not None else []:
        if child.tag != "type":
            left.append(Unmodelled(d.source, f"/domain/os/{child.tag}"))
    features = root.find("features")
    for child in features if features is not None else []:
        if child.tag == "hap" and d.mode == HARDWARE:
            if child.get("state", "on") == "off":
                d.mode = {"name": HARDWARE, "nested_paging": False}
        else:
            left.append(Unmodelled(d.source, f"/domain/features/{child.tag}"))


def _devices(root: ET.Element, d: Domain, left: list[Unmodelled]) -> None:
    devices = root.find("devices")
    kinds: dict[str, str] = {}
    for i, child in enumerate(devices if devices is not None else []):
        path = f"/domain/devices/{child.tag}[{i}]"
        if child.tag == "disk" and child.get("device", "disk") == "disk":
            bus = (child.find("target").get("bus", "") if child.find("target") is not None else "") or "ide"  # type: ignore[union-attr]
            name = _DISK_BUS.get(bus)
            serves = "disk"
        elif child.tag == "interface":
            model = child.find("model")
            kind = (
                model.get("type", "") if model is not None else ("netfront" if d.mode == "paravirtual" else "rtl8139")
            )
            name = _NIC_MODEL.get(kind)
            serves = "net"
        elif child.tag == "memballoon":
            d.balloon = child.get("model", "virtio") != "none"
            continue
        else:
            left.append(Unmodelled(d.source, path))
            continue
        if name is None:
            left.append(Unmodelled(d.source, path, "not modelled (no device model for this bus or model)"))
        elif serves in kinds:
            left.append(
                Unmodelled(d.source, path, f"not modelled (a VM has one {serves} device here: {kinds[serves]})")
            )
        else:
            kinds[serves] = name
            d.devices.append(name)


def export(vm: dict[str, Any], host: dict[str, Any], plugins: Any) -> str:
    """A scenario VM (its data, as the scenario gives it) as libvirt domain XML."""
    root = ET.Element("domain", type="kvm")
    ET.SubElement(root, "name").text = vm["name"]
    memory = parse_size(vm.get("memory", "1GiB"))
    ET.SubElement(root, "memory", unit="KiB").text = str(memory // 1024)
    scheduler = plugins.get("scheduler", component_name(host.get("scheduler", DEFAULT_COMPONENTS["host"]["scheduler"])))
    if "mem_max" in vm:
        ET.SubElement(root, "currentMemory", unit="KiB").text = str(parse_size(vm["mem_max"]) // 1024)
    vcpus = int(vm.get("vcpus", 1))
    ET.SubElement(root, "vcpu").text = str(vcpus)
    tune = ET.Element("cputune")
    if scheduler.share_param and scheduler.share_param in vm:
        ET.SubElement(tune, _SHARE_TAG).text = str(vm[scheduler.share_param])
    if scheduler.cap_param and vm.get(scheduler.cap_param):
        ET.SubElement(tune, "global_period").text = "100000"
        ET.SubElement(tune, "global_quota").text = str(round(vm[scheduler.cap_param] * 1000))
    if len(tune):
        root.append(tune)
    if vm.get("share_pages") is False:
        ET.SubElement(ET.SubElement(root, "memoryBacking"), "nosharepages")
    if "mem_min" in vm:
        memtune = ET.SubElement(root, "memtune")
        ET.SubElement(memtune, "min_guarantee", unit="KiB").text = str(parse_size(vm["mem_min"]) // 1024)
    mode = vm.get("mode", DEFAULT_COMPONENTS["vm"]["mode"])
    os_el = ET.SubElement(root, "os")
    ET.SubElement(os_el, "type").text = "xen" if component_name(mode) == _PV else "hvm"
    if isinstance(mode, dict) and mode.get("nested_paging") is False:
        ET.SubElement(ET.SubElement(root, "features"), "hap", state="off")
    devices = ET.SubElement(root, "devices")
    for device in vm.get("devices", []):
        dev = component_name(device)
        if dev in _DISKS:
            disk = ET.SubElement(devices, "disk", type="file", device="disk")
            bus = "virtio" if dev in _RING else "ide"
            ET.SubElement(disk, "target", dev="vda" if bus == "virtio" else "hda", bus=bus)
        elif dev in _NICS:
            nic = ET.SubElement(devices, "interface", type="network")
            ET.SubElement(nic, "model", type="virtio" if dev in _RING else "e1000")
    balloon = vm.get(MAPPING["scenario"]["balloon_driver"])
    ET.SubElement(devices, "memballoon", model="none" if balloon == "off" else "virtio")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def read_folder(folder: Path, plugins: Any) -> tuple[dict[str, Any], list[Unmodelled]]:
    """Scenario data for every ``*.xml`` domain in ``folder``, on the host of its ``host.toml``
    (its ``[host]`` table) or, without one, a host big enough for the VMs."""
    paths = sorted(folder.glob("*.xml"))
    if not paths:
        raise ImportError_([Problem(str(folder), "", "no domain XML files (*.xml) in the folder")])
    domains, left = [], []
    for path in paths:
        domain, unmodelled = read(path.read_text(encoding="utf-8"), str(path))
        domains.append(domain)
        left += unmodelled
    host_file = folder / "host.toml"
    host = host_table(host_file) if host_file.is_file() else default_host(domains)
    scenario, more = to_scenario(domains, host, plugins, name=folder.resolve().name)
    return scenario, left + more
