"""libvirt domain XML and xl.cfg into scenarios, and scenarios back into domain XML."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from vf_helpers import CLI, flat

DOMAINS = Path(__file__).resolve().parent / "domains"
HOST = DOMAINS / "host.toml"
XMLS = ("minimal.xml", "tuned.xml", "pv.xml")


def _scenario(cli: CLI, out: Path, *args: object) -> dict[str, object]:
    cli([*args, "--out", out])
    return tomllib.loads(out.read_text(encoding="utf-8"))


def _vms(data: dict[str, object]) -> dict[str, dict[str, object]]:
    return {vm["name"]: vm for vm in data["vm"]}  # type: ignore[attr-defined,index]


def test_libvirt_domains_map_onto_the_hosts_parameters(cli: CLI, tmp_path: Path) -> None:
    out = tmp_path / "s.toml"
    result = cli.invoke(["import", "libvirt", *(DOMAINS / n for n in XMLS), "--host", HOST, "--out", out])
    assert result.exit_code == 0, result.output
    vms = _vms(tomllib.loads(out.read_text(encoding="utf-8")))
    assert vms["minimal"] == {
        "name": "minimal", "vcpus": 1, "memory": "214MiB", "mode": "hardware-assisted", "balloon": "off",
    }  # fmt: skip
    db = vms["db"]
    assert (db["vcpus"], db["memory"], db["weight"]) == (2, "4096MiB", 2048)
    assert db["cap"] == 100, "quota / period is per vCPU: 50% x 2 vCPUs"
    assert (db["mem_max"], db["mem_min"]) == ("3072MiB", "1024MiB"), "currentMemory below hard_limit"
    assert db["mode"] == {"name": "hardware-assisted", "nested_paging": False}, "<hap state='off'/>"
    assert db["devices"] == ["ring-block", "emulated-nic"]
    assert vms["web"]["mode"] == "paravirtual"
    assert vms["web"]["devices"] == ["ring-block", "ring-net"]
    said = flat(result.output)
    assert db["share_pages"] is False, "<memoryBacking><nosharepages/>"
    for path in ("/domain/uuid", "/domain/cputune/vcpupin", "/domain/memtune/soft_limit"):
        assert path in said
    assert "/domain/devices/disk[1]" in said, "the cdrom"


def test_xl_configs_map_too(cli: CLI, tmp_path: Path) -> None:
    vms = _vms(
        _scenario(cli, tmp_path / "s.toml", "import", "xl", DOMAINS / "web.cfg", DOMAINS / "win.cfg", "--host", HOST)
    )
    web = vms["web"]
    assert (web["memory"], web["mem_max"], web["vcpus"], web["weight"], web["cap"]) == ("1024MiB", "512MiB", 2, 512, 50)
    assert (web["mode"], web["devices"]) == ("paravirtual", ["ring-block", "ring-net"])
    assert (vms["win"]["mode"], vms["win"]["devices"]) == ("hardware-assisted", ["emulated-disk", "emulated-nic"])


def test_values_the_host_cannot_take_are_reported(cli: CLI, tmp_path: Path) -> None:
    host = tmp_path / "host.toml"
    host.write_text('[host]\ncpus = 2\nmemory = "8GiB"\nscheduler = "fair"\n', encoding="utf-8")
    result = cli.invoke(["import", "libvirt", DOMAINS / "tuned.xml", "--host", host])
    assert result.exit_code == 0, result.output
    said = flat(result.output)
    assert "CPU shares: scheduler 'fair' has none" in said
    assert "memory policy 'static' has no mem_max" in said


def test_strict_refuses_what_is_not_modelled_and_writes_nothing(cli: CLI, tmp_path: Path) -> None:
    out = tmp_path / "s.toml"
    said = flat(cli(["import", "libvirt", DOMAINS / "minimal.xml", "--strict", "--out", out], code=2))
    assert "error: " + str(DOMAINS / "minimal.xml") + ": /domain/uuid: not modelled" in said
    assert "5 element(s) not modelled (--strict); nothing written" in said
    assert not out.exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<domain><name>x</name><memory>1", "malformed XML"),
        ("<vm/>", "/vm: the root element must be <domain>"),
        ("<domain><memory>1024</memory></domain>", "/domain/name: a domain needs a <name>"),
        ("<domain><name>x</name><memory unit='parsecs'>1</memory></domain>", "/domain/memory: unknown unit"),
        ("<domain><name>x</name><memory>lots</memory></domain>", "/domain/memory: expected an integer"),
        ("<domain><name>x</name><memory>1024</memory><vcpu>0</vcpu></domain>", "/domain/vcpu: must be at least 1"),
        (
            "<domain><name>x</name><memory>1024</memory><currentMemory>2048</currentMemory></domain>",
            "/domain/currentMemory: is more than <memory>",
        ),
        (
            "<domain><name>x</name><memory>1024</memory><cputune><quota>5000</quota></cputune></domain>",
            "/domain/cputune/quota: needs a positive <period>",
        ),
        ("<domain><name>x</name><memory>1024</memory><os><type>exe</type></os></domain>", "/domain/os/type"),
    ],
)
def test_bad_domain_xml_is_refused_with_its_element_path(cli: CLI, tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "d.xml"
    path.write_text(text, encoding="utf-8")
    assert message in flat(cli(["import", "libvirt", path], code=2))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name = 'x'\nmemory = \n", "line 2: not xl.cfg syntax"),
        ("name = 'x'\nmemory = 512\nvcpus = 'two'\n", "vcpus: expected an integer of at least 1"),
        ("name = 'x'\nmemory = open('/etc/passwd')\n", "memory: the value must be"),
        ("memory = 512\n", "name: a domain needs a name"),
        ("name = 'x'\nmemory = 512\ntype = 'hvm-ish'\n", "type: 'hvm-ish' is not one of"),
    ],
)
def test_bad_xl_config_is_refused_with_its_key(cli: CLI, tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "d.cfg"
    path.write_text(text, encoding="utf-8")
    assert message in flat(cli(["import", "xl", path], code=2))


def test_two_domains_of_one_name_are_refused(cli: CLI) -> None:
    said = flat(cli(["import", "xl", DOMAINS / "web.cfg", DOMAINS / "web.cfg"], code=2))
    assert "two domains are named 'web'" in said


def test_an_imported_scenario_runs(cli: CLI, tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    cli(["import", "libvirt", DOMAINS / "tuned.xml", DOMAINS / "pv.xml", "--host", HOST, "--out", scenario])
    cli(["run", scenario, "--set", 'duration="30ms"', "--no-plot", "-q", "--out", tmp_path / "r"])
    assert (tmp_path / "r" / "summary.json").is_file()


def test_export_then_import_keeps_every_mapped_value(cli: CLI, tmp_path: Path) -> None:
    first = tmp_path / "first.toml"
    cli(["import", "libvirt", *(DOMAINS / n for n in XMLS), "--host", HOST, "--out", first])
    cli(["export", "libvirt", first, "--out", tmp_path / "xml"])
    files = sorted((tmp_path / "xml").glob("*.xml"))
    assert [f.name for f in files] == ["db.xml", "minimal.xml", "web.xml"]
    second = tmp_path / "second.toml"
    exported = (tmp_path / "xml" / n for n in ("minimal.xml", "db.xml", "web.xml"))
    cli(["import", "libvirt", *exported, "--host", HOST, "--out", second])
    assert tomllib.loads(second.read_text(encoding="utf-8")) == tomllib.loads(first.read_text(encoding="utf-8"))


def test_without_out_the_scenario_goes_to_stdout_and_warnings_to_stderr(cli: CLI) -> None:
    result = cli.invoke(["import", "xl", DOMAINS / "web.cfg"])
    assert result.exit_code == 0, result.output
    data = tomllib.loads(result.stdout)
    assert data["host"] == {"cpus": 2, "memory": "1GiB"}, "a host big enough for the VMs"
    assert "kernel: not modelled" in result.stderr


def test_run_takes_a_folder_of_domains_with_its_host_file(cli: CLI, tmp_path: Path) -> None:
    folder = tmp_path / "rack"
    folder.mkdir()
    for name in ("tuned.xml", "pv.xml", "host.toml"):
        (folder / name).write_bytes((DOMAINS / name).read_bytes())
    out = tmp_path / "r"
    said = flat(cli(["run", folder, "--set", 'duration="30ms"', "--no-plot", "-q", "--out", out]))
    assert "warning: " in said
    assert "/domain/cputune/vcpupin: not modelled" in said
    ran = tomllib.loads((out / "scenario.toml").read_text(encoding="utf-8"))
    assert ran["host"]["cpus"] == 4, "host.toml's [host]"
    assert [vm["name"] for vm in ran["vm"]] == ["web", "db"], "the files in name order"
    assert ran["vm"][1]["weight"] == 2048
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no domain XML files" in flat(cli(["run", empty], code=2))


def test_a_virtio_guest_gets_ring_devices_and_a_whole_vm_cap(cli: CLI, tmp_path: Path) -> None:
    vm = _vms(_scenario(cli, tmp_path / "s.toml", "import", "libvirt", DOMAINS / "virtio.xml", "--host", HOST))["app"]
    assert vm["devices"] == ["ring-block", "ring-net"]
    assert vm["cap"] == 150, "global_quota / global_period: 1.5 CPUs for the whole VM"
    assert (vm["vcpus"], vm["memory"], vm["mode"]) == (4, "2048MiB", "hardware-assisted")
