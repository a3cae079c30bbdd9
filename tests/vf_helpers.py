"""Helpers shared by the test modules, in every folder (imported as ``vf_helpers``: pytest's
``pythonpath`` setting in pyproject.toml puts tests/ on sys.path). Fixtures are in conftest.py."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from vframework import PluginManager, Simulation
from vframework.cli import main
from vframework.run.scenario import parse_scenario

#: The repository's root folder, and its documentation.
ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


# -- the command line -----------------------------------------------------------------------


def check_clean(result: Result, code: int) -> str:
    """Assert the exit code and that nothing escaped as an exception; return all output."""
    output = result.output
    exc = result.exception
    assert exc is None or isinstance(exc, SystemExit), f"uncaught {type(exc).__name__}: {exc}\n--- output ---\n{output}"
    assert "Traceback" not in output, output
    assert result.exit_code == code, f"exit {result.exit_code}, expected {code}\n--- output ---\n{output}"
    return output


class CLI:
    """``cli(args, code=0)`` runs ``vframework ARGS`` in-process and returns its output."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def invoke(self, args: Sequence[str], env: dict[str, str | None] | None = None) -> Result:
        return self.runner.invoke(main, [str(a) for a in args], env=env, catch_exceptions=True)

    def __call__(self, args: Sequence[str], code: int = 0, env: dict[str, str | None] | None = None) -> str:
        return check_clean(self.invoke(args, env), code)


def flat(output: str) -> str:
    """The output with rich's line wrapping undone (words joined by single spaces)."""
    return " ".join(output.split())


# -- scenarios and runs ---------------------------------------------------------------------


#: A scenario file: VM ``guest`` runs ``{workload}`` next to a busy ``neighbour`` for 50 ms on
#: one CPU (the plugin tests put a third party's workload or observers in it).
PLUGGED = """\
name = "plugged"
seed = 2
duration = "50ms"
sample_interval = "10ms"

[host]
cpus = 1
memory = "512MiB"

[[vm]]
name = "guest"
memory = "64MiB"
workload = "{workload}"

[[vm]]
name = "neighbour"
memory = "64MiB"
workload = "cpu"
"""


def scenario(
    vms: list[dict[str, Any]] | None = None,
    *,
    name: str = "t",
    seed: int | None = None,
    duration: str = "100ms",
    sample_interval: str | None = None,
    **host: Any,
) -> dict[str, Any]:
    """Scenario data as a TOML file gives it. Top-level keys come from the keyword arguments
    (``seed`` and ``sample_interval`` only when given), every other keyword is a ``host`` key
    (2 CPUs and 1 GiB unless given); ``vms`` is the ``vm`` list (by default VM ``a`` running
    ``cpu`` and VM ``b`` with the default workload, 64 MiB each)."""
    data: dict[str, Any] = {"name": name, "duration": duration}
    if seed is not None:
        data["seed"] = seed
    if sample_interval is not None:
        data["sample_interval"] = sample_interval
    data["host"] = {"cpus": 2, "memory": "1GiB", **host}
    if vms is None:
        vms = [{"name": "a", "memory": "64MiB", "workload": "cpu"}, {"name": "b", "memory": "64MiB"}]
    data["vm"] = vms
    return data


def simulate(
    data: dict[str, Any], plugins: PluginManager, check_every_step: bool = False
) -> tuple[Simulation, dict[str, Any]]:
    """Validate ``data`` and run it to the end: the simulation and its summary. With
    ``check_every_step``, CPU time must be conserved at every progress report, not only at the end."""
    spec = parse_scenario(data, "test.toml", plugins)
    sim = Simulation(spec, plugins)
    balances: list[tuple[int, int]] = []

    def progress(t: int, total: int) -> None:
        if check_every_step:
            sim.hypervisor.sync()
            balances.append(sim.hypervisor.cpu_time_balance())

    summary = sim.run(progress=progress)
    for charged, elapsed in balances:
        assert charged == elapsed, f"CPU time not conserved mid-run: {charged} != {elapsed}"
    return sim, summary


# -- the results folder ---------------------------------------------------------------------


def results_left_behind(out: Path) -> list[str]:
    """Anything in ``out``'s parent that looks like (part of) the results folder ``out``."""
    if not out.parent.exists():
        return []
    return sorted(p.name for p in out.parent.iterdir() if p.name == out.name or p.name.startswith(f".{out.name}"))


def summary_of(out: Path) -> dict[str, Any]:
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))


def timeseries_of(out: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the rows of ``out/timeseries.csv``."""
    text = (out / "timeseries.csv").read_text(encoding="utf-8")
    reader = csv.DictReader(io.StringIO(text))
    return list(reader.fieldnames or []), list(reader)


# -- small hosts for the sharing services' table tests ---------------------------------------


def sharing_host(contents: list[list[int]]) -> Any:
    """A bare host with one VM per list of ``contents``, each page backed and holding its token
    (no guest OS, no scheduler: the services' tables are what is tested)."""
    import numpy as np  # noqa: PLC0415  (only the sharing tests need the machinery)

    from vframework.hv.hypervisor import Hypervisor  # noqa: PLC0415
    from vframework.hv.vm import VM  # noqa: PLC0415
    from vframework.machine.hardware import Machine  # noqa: PLC0415
    from vframework.sim.engine import Engine  # noqa: PLC0415
    from vframework.sim.units import PAGE_SIZE  # noqa: PLC0415
    from vframework.testing.doubles import FifoScheduler, FixedPolicy, FlatMode  # noqa: PLC0415

    pages = len(contents[0])
    frames = (len(contents) * pages + 8) * PAGE_SIZE
    hv = Hypervisor(Engine(0), Machine(1, frames), FifoScheduler(None, 1), FixedPolicy(None), [])
    for i, tokens in enumerate(contents):
        vm = VM(i, f"vm{i}", 1, pages)
        hv.attach_mode(vm, FlatMode, FlatMode.params_model())
        hv.add_vm(vm)
        hv.back_pages(vm, np.arange(pages))
        hv.machine.memory.content[vm.p2m] = np.array(tokens, dtype=np.uint64)
    return hv


def guest_write(hv: Any, vm_id: int, ppn: int, token: int) -> None:
    """A guest write: a shared page gets a private copy first (copy-on-write), then new content."""
    import numpy as np  # noqa: PLC0415

    from vframework.hv.sharing import break_sharing  # noqa: PLC0415

    vm = hv.vms[vm_id]
    break_sharing(hv, vm, np.array([ppn], dtype=np.int64))
    hv.machine.memory.content[int(vm.p2m[ppn])] = np.uint64(token)


def guest_step(hv: Any, kind: str, vm_id: int, ppn: int, token: int = 0) -> None:
    """A ``write`` (if backed), a ``reclaim`` of the page's frame, or a ``grant`` (if unbacked)."""
    backed = int(hv.vms[vm_id].p2m[ppn]) >= 0
    if kind == "write" and backed:
        guest_write(hv, vm_id, ppn, token)
    elif kind == "reclaim":
        hv.memory.reclaim(vm_id, [ppn])
    elif kind == "grant" and not backed:
        hv.memory.grant(vm_id, [ppn])


def frames_by_content(hv: Any) -> tuple[list[Any], int]:
    """Each page's (frame, content, frame state, reference count), frames named by the order
    they are first met in, and the free frames: a host's state whatever its frames' numbers."""
    memory = hv.machine.memory
    names: dict[int, int] = {}
    pages: list[Any] = []
    for vm in hv.vms.values():
        for mpn in vm.p2m.tolist():
            if mpn < 0:
                pages.append(None)
                continue
            name = names.setdefault(mpn, len(names))
            pages.append((name, int(memory.content[mpn]), int(memory.state[mpn]), int(memory.refcount[mpn])))
    return pages, memory.free_frames
