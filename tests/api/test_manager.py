"""The plugin manager: plugins are found through the ``vframework`` entry-point group, exactly as a
third party's would be, registered, listed, and their hooks called.

One test builds a real plugin distribution (pyproject.toml, a module) in a temporary folder,
installs it with pip into an isolated virtual environment and uses it from there. The others
put a distribution (a module plus its ``.dist-info``) on ``sys.path`` in-process: the plugin
manager sees it through ``importlib.metadata`` like any installed one, and each failure mode of
a plugin must give a message naming the distribution (and the hook), never a traceback.
Lifecycle hooks during a run: ``tests/run/test_lifecycle.py``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from abc import abstractmethod
from pathlib import Path
from typing import Any

import pytest
from vf_helpers import PLUGGED, flat, summary_of

from vframework import KINDS, PluginError, PluginManager, Workload, hookimpl

STANDARD = {
    "vframework-schedulers": {"scheduler": {"fair"}},
    "vframework-memory": {"memory_policy": {"static"}, "memory_service": {"esx-sharing", "ksm"}},
    "vframework-modes": {"mode": {"bare-metal"}},
    "vframework-workloads": {"workload": {"idle", "cpu", "io", "memory"}},
    "vframework-devices": {"device": {"emulated-disk", "emulated-nic", "ring-block", "ring-net"}},
    "vframework-billing": {"billing": {"flat", "tiered", "reserved"}},
    "vframework-experiments": {"experiment": {"cpu-shares", "mmu", "modes"}},
}
#: What ``vframework plugins --json`` lists per distribution: the component kinds, then experiments.
LISTED = [*KINDS, "experiment"]


PULSE = '''\
"""A third-party workload: computes a little, sleeps a little."""
from vframework import Compute, Sleep, Workload, hookimpl


class Pulse(Workload):
    name = "acme-pulse"
    description = "computes 10 us, sleeps 1 ms"

    def run(self):
        while True:
            yield Compute(self.context.cycles(10_000))
            yield Sleep(1_000_000)


@hookimpl
def register_workloads():
    return [Pulse]
'''


# -- a real distribution, installed with pip into an isolated environment -------------------


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _run(argv: list[Any], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INDEX": "1",
        "PIP_NO_INPUT": "1",
        "MPLBACKEND": "Agg",
        "PYTHONNOUSERSITE": "1",
    }
    env.pop("VFRAMEWORK_DISABLE_PLUGIN_AUTOLOAD", None)
    env.pop("PIP_REQUIRE_VIRTUALENV", None)
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, env=env, timeout=300, check=False, **kwargs
    )


@pytest.fixture(scope="module")
def isolated_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment that sees this environment's packages (through a .pth file) but
    has its own site-packages to install into."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    proc = _run([sys.executable, "-m", "venv", "--without-pip", venv])
    assert proc.returncode == 0, proc.stderr
    python = _venv_python(venv)
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    # Every directory on this interpreter's path: site-packages, and the folders of editable
    # installs (their own .pth files are not read from a path added by a .pth file).
    paths = [p for p in sys.path if p and os.path.isabs(p) and os.path.isdir(p) and not p.startswith(str(venv))]
    Path(purelib, "_outer_environment.pth").write_text("\n".join(paths) + "\n", encoding="utf-8")
    if _run([python, "-m", "pip", "--version"]).returncode != 0:  # pragma: no cover - no pip outside
        proc = _run([python, "-m", "ensurepip", "--default-pip"])
        assert proc.returncode == 0, proc.stderr
    return venv


#: A minimal PEP 517 backend, used only when setuptools here cannot build wheels (setuptools < 70.1
#: without the ``wheel`` package): it reads the same ``[project]`` table and writes a plain wheel.
FALLBACK_BACKEND = r"""
import base64, hashlib, pathlib, tomllib, zipfile


def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    pyproject = tomllib.loads(pathlib.Path("pyproject.toml").read_text(encoding="utf-8"))
    project = pyproject["project"]
    name, version = project["name"], project["version"]
    info = name.replace("-", "_") + "-" + version + ".dist-info"
    files = {}
    for module in pyproject["tool"]["setuptools"]["py-modules"]:
        files[module + ".py"] = pathlib.Path(module + ".py").read_bytes()
    files[info + "/METADATA"] = ("Metadata-Version: 2.1\nName: " + name + "\nVersion: " + version + "\n").encode()
    files[info + "/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    entry_points = ""
    for group, eps in project.get("entry-points", {}).items():
        entry_points += "[" + group + "]\n" + "".join(k + " = " + v + "\n" for k, v in eps.items()) + "\n"
    files[info + "/entry_points.txt"] = entry_points.encode()
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(path + ",sha256=" + digest + "," + str(len(data)))
    record.append(info + "/RECORD,,")
    files[info + "/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel_name = name.replace("-", "_") + "-" + version + "-py3-none-any.whl"
    with zipfile.ZipFile(pathlib.Path(wheel_directory) / wheel_name, "w") as wheel:
        for path, data in files.items():
            wheel.writestr(path, data)
    return wheel_name
"""


def _setuptools_builds_wheels() -> bool:
    try:
        return (
            importlib.util.find_spec("wheel") is not None
            or importlib.util.find_spec("setuptools.command.bdist_wheel") is not None
        )
    except ImportError:  # pragma: no cover - no setuptools at all
        return False


def write_plugin_project(project: Path) -> None:
    """acme-vframework-plugin: a pyproject.toml with a ``vframework`` entry point and one module."""
    project.mkdir()
    if _setuptools_builds_wheels():
        build = """\
            [build-system]
            requires = ["setuptools>=61"]
            build-backend = "setuptools.build_meta"
            """
    else:
        (project / "_backend").mkdir()
        (project / "_backend" / "acme_test_backend.py").write_text(FALLBACK_BACKEND, encoding="utf-8")
        build = """\
            [build-system]
            requires = []
            build-backend = "acme_test_backend"
            backend-path = ["_backend"]
            """
    (project / "pyproject.toml").write_text(
        textwrap.dedent(build)
        + textwrap.dedent("""\

        [project]
        name = "acme-vframework-plugin"
        version = "2.5.1"
        description = "a third-party vframework plugin, built by the test suite"
        dependencies = ["vframework"]

        [project.entry-points.vframework]
        acme = "acme_vframework_plugin"

        [tool.setuptools]
        py-modules = ["acme_vframework_plugin"]
        """),
        encoding="utf-8",
    )
    (project / "acme_vframework_plugin.py").write_text(PULSE, encoding="utf-8")


def test_installed_plugin_distribution_is_found_and_usable(isolated_env: Path, tmp_path: Path, cli) -> None:
    project = tmp_path / "acme-vframework-plugin"
    write_plugin_project(project)
    python = _venv_python(isolated_env)

    proc = _run([python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--quiet", project], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    proc = _run([python, "-m", "vframework", "plugins", "--json"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    listed = {p["name"]: p for p in json.loads(proc.stdout)}
    assert set(STANDARD) <= set(listed), listed
    acme = listed["acme-vframework-plugin"]
    assert acme["version"] == "2.5.1"
    assert acme["components"]["workload"] == ["acme-pulse"]
    assert all(acme["components"][k] == [] for k in LISTED if k != "workload")

    scenario = tmp_path / "plugged.toml"
    scenario.write_text(PLUGGED.format(workload="acme-pulse"), encoding="utf-8")
    out = tmp_path / "results"
    proc = _run([python, "-m", "vframework", "run", scenario, "--out", out, "-q", "--no-plot"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    summary = summary_of(out)
    assert summary["components"]["vms"]["guest"]["workload"] == "acme-pulse"
    assert {"name": "acme-vframework-plugin", "version": "2.5.1"} in summary["plugins"]
    guest = summary["vms"]["guest"]
    assert 0 < guest["cpu_run_ns"] < 10_000_000  # ~10 us every ms of 50 ms, far from a busy CPU
    assert guest["cpu_wakeups"] > 0

    # The environment is isolated: the plugin is not installed here.
    here = json.loads(cli(["plugins", "--json"]))
    assert "acme-vframework-plugin" not in {p["name"] for p in here}


# -- what is installed here -------------------------------------------------------------------


def test_plugins_json_lists_standard_distributions_by_kind(cli) -> None:
    data = json.loads(cli(["plugins", "--json"]))
    assert isinstance(data, list)
    by_name = {p["name"]: p for p in data}
    assert set(STANDARD) <= set(by_name), sorted(by_name)
    for dist, expected in STANDARD.items():
        entry = by_name[dist]
        assert set(entry) == {"name", "version", "components"}
        assert entry["version"]
        assert entry["version"] != "unknown"
        assert list(entry["components"]) == LISTED
        assert set(KINDS) == {"scheduler", "memory_policy", "memory_service", "mode", "device", "workload", "billing"}
        for kind, names in entry["components"].items():
            assert names == sorted(names)
            assert set(expected.get(kind, set())) <= set(names), (dist, kind, names)
            if kind not in expected:
                assert names == [], f"{dist} registers {kind} components: {names}"
    assert [p["name"] for p in data] == sorted(p["name"] for p in data)


def test_plugins_table(cli) -> None:
    output = cli(["plugins"])
    for dist in STANDARD:
        assert dist in output
    for word in (
        "distribution",
        "version",
        "kind",
        "components",
        "fair",
        "static",
        "bare-metal",
        "experiment",
        "cpu-shares",
    ):
        assert word in output


def test_disable_autoload_gives_an_empty_registry(cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VFRAMEWORK_DISABLE_PLUGIN_AUTOLOAD", "1")
    pm = PluginManager()
    assert pm.plugins == {}
    assert all(pm.components[kind] == {} for kind in KINDS)
    assert json.loads(cli(["plugins", "--json"])) == []
    out = tmp_path / "out"
    output = cli(["run", "--out", out, "-q", "--no-plot"], code=2)
    assert "unknown scheduler 'fair'; installed: none" in output
    assert not out.exists()
    # Explicit autoload wins over the environment.
    assert "fair" in PluginManager(autoload=True).components["scheduler"]


def test_summary_lists_plugins_with_versions(cli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cli(["run", "--set", "duration=20ms", "--out", out, "-q", "--no-plot"])
    plugins = summary_of(out)["plugins"]
    assert plugins == sorted(plugins, key=lambda p: p["name"])
    assert all(set(p) == {"name", "version"} for p in plugins)
    assert set(STANDARD) <= {p["name"] for p in plugins}


# -- plugins that fail to load ----------------------------------------------------------------


def test_plugin_that_raises_on_import(make_dist, cli, tmp_path: Path) -> None:
    """It is left out with a one-line warning; everything that does not use it still works."""
    make_dist("acme-broken", "raise RuntimeError('the acme plugin cannot start')\n")
    out = tmp_path / "out"
    for args in (["plugins", "--json"], ["run", "--set", "duration=20ms", "--out", out, "-q", "--no-plot"]):
        output = cli(args)
        assert "warning: plugin distribution 'acme-broken'" in output
        assert "failed to import" in output
        assert "the acme plugin cannot start" in output
    assert (out / "summary.json").exists()
    output = cli(["run", "--set", "vm[0].workload=acme", "--out", tmp_path / "o2", "-q"], code=2)
    assert "unknown workload 'acme'" in output
    assert "not loaded, and perhaps providing it: acme-broken" in output
    assert not (tmp_path / "o2").exists()


def test_plugin_with_a_missing_dependency(make_dist, cli) -> None:
    make_dist("acme-needs-more", "import acme_library_that_is_not_installed\n")
    output = cli(["plugins"])
    assert "acme-needs-more" in output
    assert "acme_library_that_is_not_installed" in output


def test_two_plugins_registering_the_same_name(make_dist, cli) -> None:
    source = """\
        from vframework import Compute, Workload, hookimpl

        class Twin(Workload):
            name = "twin"

            def run(self):
                yield Compute(1000)

        @hookimpl
        def register_workloads():
            return [Twin]
        """
    make_dist("acme-first", source)
    make_dist("acme-second", source)
    output = cli(["plugins", "--json"], code=2)
    assert "acme-first" in output
    assert "acme-second" in output
    assert "'twin'" in output


def test_plugin_registering_a_standard_name(make_dist, cli) -> None:
    make_dist(
        "acme-fair",
        """\
        from vframework import hookimpl
        from vframework_schedulers import FairScheduler

        class AnotherFair(FairScheduler):
            name = "fair"

        @hookimpl
        def register_schedulers():
            return [AnotherFair]
        """,
    )
    output = cli(["plugins"], code=2)
    assert "acme-fair" in output
    assert "vframework-schedulers" in output
    assert "'fair'" in output


@pytest.mark.parametrize(
    "returned",
    ["[object]", "['cpu']", "[Sneaky]", "[42]"],
    ids=["object-class", "a-string", "wrong-kind", "an-int"],
)
def test_hook_returning_a_non_component(returned: str, make_dist, cli) -> None:
    make_dist(
        "acme-confused",
        f"""\
        from vframework import Scheduler, hookimpl

        class Sneaky(Scheduler):
            name = "sneaky"

        @hookimpl
        def register_workloads():
            return {returned}
        """,
    )
    output = cli(["plugins", "--json"], code=2)
    assert "acme-confused" in output
    assert "register_workloads" in output
    assert "Workload" in output


def test_component_without_a_name(make_dist, cli) -> None:
    make_dist(
        "acme-anonymous",
        """\
        from vframework import Workload, hookimpl

        class Nameless(Workload):
            pass

        @hookimpl
        def register_workloads():
            return [Nameless]
        """,
    )
    output = cli(["plugins"], code=2)
    assert "acme-anonymous" in output
    assert "Nameless" in output
    assert "name" in output


def test_abstract_component_is_refused_at_registration(make_dist, cli) -> None:
    make_dist(
        "acme-lottery",
        """\
        from vframework import Scheduler, hookimpl

        class Lottery(Scheduler):
            name = "lottery"

            def attach(self, vcpu, vm_params):
                pass

            def detach(self, vcpu):
                pass

            def wake(self, vcpu, now):
                return ()

            def block(self, vcpu, now):
                pass

        @hookimpl
        def register_schedulers():
            return [Lottery]
        """,
    )
    output = cli(["plugins"], code=2)
    assert (
        "plugin 'acme-lottery': scheduler class Lottery does not implement pick, charge "
        "(abstract methods of vframework.Scheduler)"
    ) in flat(output)


def test_abstract_method_of_an_intermediate_abc_is_refused() -> None:
    """The check is inspect.isabstract: it holds for abstract methods a plugin's own ABC adds."""

    class Base(Workload):
        def run(self):  # type: ignore[override]
            yield from ()

        @abstractmethod
        def pace(self) -> int: ...

    class Incomplete(Base):
        name = "acme-incomplete"

    class Plugin:
        @hookimpl
        def register_workloads(self) -> list[type]:
            return [Incomplete]

    pm = PluginManager(autoload=False)
    with pytest.raises(
        PluginError,
        match=r"plugin 'acme-abc': workload class .*Incomplete does not implement "
        r"pace \(abstract methods of vframework.Workload\)",
    ):
        pm.register(Plugin(), "acme-abc")
    assert pm.plugins == {}
    assert pm.components["workload"] == {}

    class Complete(Base):
        name = "acme-complete"

        def pace(self) -> int:
            return 1

    class Fixed:
        @hookimpl
        def register_workloads(self) -> list[type]:
            return [Complete]

    pm.register(Fixed(), "acme-abc")
    assert pm.get("workload", "acme-complete") is Complete


def test_registration_hook_that_raises(make_dist, cli) -> None:
    make_dist(
        "acme-grumpy",
        """\
        from vframework import hookimpl

        @hookimpl
        def register_modes():
            raise LookupError("no modes today")
        """,
    )
    output = cli(["plugins"], code=2)
    assert "acme-grumpy" in output
    assert "register_modes" in output
    assert "no modes today" in output


def test_hook_implementation_with_unknown_name(make_dist, cli) -> None:
    """pluggy refuses a hookimpl that matches no hookspec; the message names the plugin."""
    make_dist(
        "acme-typo",
        """\
        from vframework import hookimpl

        @hookimpl
        def register_workload():  # singular: not a hook
            return []
        """,
    )
    output = cli(["plugins"], code=2)
    assert "acme-typo" in output
    assert "register_workload" in output


# -- a third-party component in use -------------------------------------------------------------


def test_in_process_plugin_component_runs(make_dist, cli, write_scenario, tmp_path: Path) -> None:
    make_dist("acme-pulse", PULSE, version="0.3")
    out = tmp_path / "out"
    cli(["run", write_scenario(PLUGGED.format(workload="acme-pulse")), "--out", out, "-q", "--no-plot"])
    summary = summary_of(out)
    assert summary["components"]["vms"]["guest"]["workload"] == "acme-pulse"
    assert {"name": "acme-pulse", "version": "0.3"} in summary["plugins"]
    assert summary["vms"]["guest"]["cpu_run_ns"] > 0


# -- calling hooks ----------------------------------------------------------------------------


def _order_plugin(tag: str, **options: bool) -> str:
    marker = f"hookimpl({', '.join(f'{k}=True' for k in options)})" if options else "hookimpl"
    if options.get("wrapper"):
        body = (
            f"    builtins.VFRAMEWORK_TEST_ORDER.append('{tag}-before')\n"
            f"    result = yield\n"
            f"    builtins.VFRAMEWORK_TEST_ORDER.append('{tag}-after')\n"
            f"    return result\n"
        )
    else:
        body = f"    builtins.VFRAMEWORK_TEST_ORDER.append('{tag}')\n    return '{tag}'\n"
    header = "import builtins\nfrom vframework import hookimpl\n\n\n"
    return f"{header}@{marker}\ndef simulation_configured(scenario):\n{body}"


def test_lifecycle_hooks_keep_pluggy_options(make_dist, hook_order: list[str]) -> None:
    """Hooks go through pluggy: tryfirst runs first, trylast last, a wrapper wraps the call;
    plain implementations run in registration order (entry points sorted by name)."""
    make_dist("acme-1-plain", _order_plugin("1-plain"))
    make_dist("acme-2-last", _order_plugin("2-last", trylast=True))
    make_dist("acme-3-first", _order_plugin("3-first", tryfirst=True))
    make_dist("acme-4-plain", _order_plugin("4-plain"))
    make_dist("acme-5-wrapper", _order_plugin("5-wrapper", wrapper=True))
    results = PluginManager().call("simulation_configured", scenario=None)
    assert hook_order == ["5-wrapper-before", "3-first", "1-plain", "4-plain", "2-last", "5-wrapper-after"]
    assert results == ["3-first", "1-plain", "4-plain", "2-last"]


@pytest.mark.usefixtures("hook_order")
def test_lifecycle_error_names_the_plugin_that_raised(make_dist) -> None:
    """The PluginError names the implementation that raised, not the wrapper around it nor the
    plugins before it."""
    make_dist("acme-a-calm", _order_plugin("calm"))
    make_dist("acme-b-wrapper", _order_plugin("wrapper", wrapper=True))
    make_dist(
        "acme-c-angry",
        """\
        from vframework import hookimpl


        def _helper():
            raise KeyError("deep inside")


        @hookimpl
        def simulation_configured(scenario):
            _helper()
        """,
    )
    with pytest.raises(PluginError) as info:
        PluginManager().call("simulation_configured", scenario=None)
    message = str(info.value)
    assert message.startswith("plugin 'acme-c-angry' raised in hook simulation_configured: KeyError")
    assert "deep inside" in message
    assert isinstance(info.value.__cause__, KeyError)


def test_a_hook_shared_by_two_plugin_objects_names_the_right_one() -> None:
    class Observer:
        def __init__(self, fail: bool) -> None:
            self.fail = fail

        @hookimpl
        def simulation_started(self, simulation: object) -> None:
            if self.fail:
                raise RuntimeError("this one")

    pm = PluginManager(autoload=False)
    pm.register(Observer(False), "acme-quiet")
    pm.register(Observer(True), "acme-loud")
    pm.register(Observer(False), "acme-late")
    with pytest.raises(PluginError, match=r"^plugin 'acme-loud' raised in hook simulation_started"):
        pm.call("simulation_started", simulation=None)


def test_hook_implementation_with_unknown_argument(make_dist, cli) -> None:
    """pluggy refuses an argument the hookspec does not have; the message names the plugin."""
    make_dist(
        "acme-wrong-args",
        """\
        from vframework import hookimpl

        @hookimpl
        def vm_created(simulation, machine):
            pass
        """,
    )
    output = cli(["plugins"], code=2)
    assert "acme-wrong-args" in output
    assert "vm_created" in output
    assert "machine" in output
