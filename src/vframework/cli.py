"""The command line: ``vframework run | top | report | compare | sweep | import | export | plugins |
validate | check | experiment``.

Exit codes: 0 success; 1 a runtime failure (a plugin hook raised, the host ran out of memory,
a conformance property failed); 2 bad input (scenario, arguments, a plugin that cannot load).
Errors are one clear message, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from vframework.errors import GuestOutOfMemory, HostOutOfMemory, NoProgress, PluginError, ResultsError, ScenarioError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from vframework.api.manager import PluginManager
    from vframework.api.views import Summary
    from vframework.run.scenario import Scenario
    from vframework.run.simulation import Simulation
    from vframework.run.top import TopView

# Each command imports the kernel when it runs, so that `vframework --help` (and a mistyped
# command) answers at once instead of after loading numpy, pydantic and networkx.

__all__ = ["main"]


class _Console:
    """A rich console made on first use: importing rich costs ``vframework --help`` a third of
    its time, and help prints through click."""

    def __init__(self, stderr: bool) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    def get(self) -> Console:
        """The console itself (for rich's live displays)."""
        if self._console is None:
            from rich.console import Console

            # Not a terminal (a pipe, a file): no width limit, so tables are never cut or wrapped.
            wide = self._stderr or sys.stdout.isatty()
            self._console = Console(stderr=self._stderr, highlight=False, width=None if wide else 100_000)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)


def escape(text: str) -> str:
    """``text`` with rich markup escaped."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


_err = _Console(stderr=True)
_out = _Console(stderr=False)


def _fail(message: str, code: int) -> NoReturn:
    _err.print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)
    sys.exit(code)


def _fail_problems(what: str, exc: ScenarioError) -> NoReturn:
    """Every problem of ``exc``, one per line under ``what``; exit 2 (bad input)."""
    n = len(exc.problems)
    _err.print(f"[bold red]error:[/] {what} ({n} problem{'s' if n != 1 else ''}):", markup=True)
    for problem in exc.problems:
        _err.print(f"  {problem}", markup=False, soft_wrap=True)
    sys.exit(2)


def _table(title: str) -> Table:
    from rich.table import Table

    return Table(title=title)


def _plugins() -> PluginManager:
    from vframework.api.manager import PluginManager

    try:
        pm = PluginManager()
    except PluginError as exc:
        _fail(str(exc), 2)
        raise  # unreachable
    for reason in pm.broken.values():
        _err.print(f"warning: {reason} (scenarios that use it cannot run)", markup=False, soft_wrap=True)
    return pm


def _load(path: str | None, plugins: PluginManager, overrides: list[str]) -> Scenario:
    import warnings

    from vframework.errors import DecimalUnitWarning
    from vframework.run.scenario import load_default_scenario, load_scenario

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DecimalUnitWarning)
            if path is not None and Path(path).is_dir():
                spec = _load_domains(Path(path), plugins, overrides)
            else:
                spec = (
                    load_default_scenario(plugins, overrides)
                    if path is None
                    else load_scenario(path, plugins, overrides)
                )
        for message in dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, DecimalUnitWarning)):
            _err.print(f"warning: {message}", markup=False, soft_wrap=True)
        return spec
    except ScenarioError as exc:
        _fail_problems("invalid scenario", exc)


def _load_domains(folder: Path, plugins: PluginManager, overrides: list[str]) -> Scenario:
    """A folder of libvirt domain XMLs (and its host.toml) as a scenario; what is not modelled
    is a warning, as with `vframework import libvirt`."""
    import tomli_w

    from vframework.formats.libvirt import read_folder
    from vframework.run.scenario import parse_scenario_text

    data, left = read_folder(folder, plugins)
    for item in left:
        _err.print(f"warning: {item}", markup=False, soft_wrap=True)
    return parse_scenario_text(tomli_w.dumps(data), f"{folder} (domain XMLs)", plugins, overrides)


@click.group()
@click.version_option(package_name="vframework")
def main() -> None:
    """vframework: a virtual machine monitor simulator, a small kernel plus plugins."""


def _decorate(f: Callable[..., None], decorators: list[Callable[[Any], Any]]) -> Callable[..., None]:
    """``f`` under ``decorators``, the first outermost (as if written above it in that order)."""
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


def _run_options(f: Callable[..., None]) -> Callable[..., None]:
    """The options ``run`` and ``top`` share (both are the same run, writing the same results)."""
    return _decorate(
        f,
        [
            click.argument("scenario", required=False, type=click.Path()),
            click.option(
                "--from",
                "from_dir",
                type=click.Path(file_okay=False, exists=True, path_type=Path),
                help="rerun the results folder DIR exactly (its scenario.toml, seed included)",
            ),
            click.option(
                "--out", type=click.Path(file_okay=False, path_type=Path), help="results folder (new or empty)"
            ),
            click.option("--seed", type=click.IntRange(min=0), help="override the scenario's seed"),
            click.option(
                "--set",
                "overrides",
                multiple=True,
                metavar="KEY=VALUE",
                help="override a scenario key, e.g. host.cpus=4 or vm[0].memory=2GiB (repeatable)",
            ),
            click.option("--no-plot", is_flag=True, help="skip the PNG plot"),
            click.option("--debug", is_flag=True, help="show the traceback when a component raises"),
        ],
    )


def _prepare(
    scenario: str | None, from_dir: Path | None, out: Path | None, seed: int | None, overrides: tuple[str, ...]
) -> tuple[PluginManager, Scenario, int, Path]:
    """Load the scenario and choose the results folder; refuse a bad --out before anything runs."""
    from vframework.run.results import check_out, default_results_dir

    plugins = _plugins()
    if from_dir is not None:
        if scenario is not None or overrides or seed is not None:
            _fail("--from reruns a results folder as it was: give no SCENARIO, --set or --seed with it", 2)
        source = from_dir / "scenario.toml"
        if not source.is_file():
            _fail(f"{from_dir} has no scenario.toml: it is not a results folder of `vframework run`", 2)
        scenario = str(source)
    spec = _load(scenario, plugins, list(overrides))
    run_seed = spec.config.seed if seed is None else seed
    target = out or default_results_dir(spec.name, run_seed)
    try:
        check_out(target)
    except ResultsError as exc:
        _fail(str(exc), 2)
    return plugins, spec, run_seed, target


def _simulate(
    plugins: PluginManager, spec: Scenario, seed: int, debug: bool, progress: Callable[[Simulation, int, int], None]
) -> Simulation:
    """Run the simulation; every failure is one message (a traceback only with --debug)."""
    from vframework.run.simulation import Simulation

    try:
        sim = Simulation(spec, plugins, seed)
        sim.run(progress=lambda t, total: progress(sim, t, total))
    except (PluginError, HostOutOfMemory, GuestOutOfMemory, NoProgress) as exc:
        if debug:
            _err.print_exception()
        _fail(f"{exc}; the run was stopped and no results were written", 1)
    except Exception as exc:
        if debug:
            _err.print_exception()
        blame = plugins.blame(exc)
        if blame is None:
            raise
        hint = "" if debug else " (--debug shows the traceback)"
        _fail(f"{blame}; the run was stopped and no results were written{hint}", 1)
    return sim


def _write(sim: Simulation, target: Path, no_plot: bool) -> Path:
    from vframework.run.results import write_run

    try:
        return write_run(sim, target, plot=not no_plot, argv=["vframework", *sys.argv[1:]])
    except (ResultsError, OSError) as exc:
        _fail(f"cannot write results: {exc}", 1)


def _report_run(summary: Summary, path: Path, quiet: bool, fmt: str) -> None:
    for name, c in summary["vms"].items():
        if c["cpu_run_ns"] == 0:
            _err.print(f"warning: VM {name!r} received no CPU time in this run", markup=False)
    if quiet:
        _out.print(f"results: {path}", markup=False)
        return
    rows = _summary_rows(summary)
    if fmt == "json":
        click.echo(json.dumps({"results": str(path), "vms": rows, **_bill_total(summary)}, indent=2))
        return
    if fmt == "csv":
        _print_csv(rows)
        return
    _out.print(_summary_table(summary, rows))
    for line in (_memory_line(summary), *_io_lines(summary), _bill_line(summary)):
        if line:
            _out.print(line, markup=False)
    _out.print(f"results: {path}", markup=False)


@contextmanager
def _keys(view: TopView) -> Iterator[None]:
    """While a run is watched in a terminal, a key sorts its table (``view.press``): the
    terminal reads keys unbuffered and unechoed, and is restored on the way out."""
    if not (sys.stdin.isatty() and _out.is_terminal):
        yield
        return
    import termios
    import threading
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    stop = threading.Event()

    def read() -> None:
        import select

        while not stop.is_set():
            if select.select([fd], [], [], 0.2)[0]:
                view.press(os.read(fd, 1).decode(errors="ignore"))

    tty.setcbreak(fd)
    view.interactive = True
    reader = threading.Thread(target=read, name="vframework-top-keys", daemon=True)
    reader.start()
    try:
        yield
    finally:
        stop.set()
        reader.join(timeout=1)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _print_csv(rows: list[dict[str, object]]) -> None:
    import csv

    writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


_FORMAT = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="how to print the per-VM summary (json and csv: every VM, full names, for scripts)",
)


@main.command()
@_run_options
@_FORMAT
@click.option("--quiet", "-q", is_flag=True, help="no progress bar or table")
def run(
    scenario: str | None,
    from_dir: Path | None,
    out: Path | None,
    seed: int | None,
    overrides: tuple[str, ...],
    no_plot: bool,
    debug: bool,
    fmt: str,
    quiet: bool,
) -> None:
    """Run SCENARIO: a TOML file, a folder of libvirt domain XMLs (with its host.toml: the
    [host] table), or the embedded default scenario when omitted."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    plugins, spec, run_seed, target = _prepare(scenario, from_dir, out, seed, overrides)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeRemainingColumn(),
        console=_err.get(),
        disable=quiet,
        transient=True,
    ) as bar:
        task = bar.add_task(f"{spec.name} (seed {run_seed})", total=spec.config.duration)
        sim = _simulate(plugins, spec, run_seed, debug, lambda _sim, t, total: bar.update(task, completed=t))
    path = _write(sim, target, no_plot)
    assert sim.result is not None
    _report_run(sim.result, path, quiet, fmt)


@main.command()
@_run_options
@click.option(
    "--sort",
    default="%RUN",
    show_default=True,
    help="column to sort by: VM, %RUN, %RDY, MEMSZ, ...; in a terminal, keys sort it live (m: MEMSZ...)",
)
@click.option("--limit", type=click.IntRange(min=1), help="show at most this many VMs")
def top(
    scenario: str | None,
    from_dir: Path | None,
    out: Path | None,
    seed: int | None,
    overrides: tuple[str, ...],
    no_plot: bool,
    debug: bool,
    sort: str,
    limit: int | None,
) -> None:
    """Run SCENARIO like `run` (same results written), watching an esxtop-like table of its VMs."""
    from rich.live import Live

    from vframework.run.simulation import TIMESERIES_METRICS
    from vframework.run.top import COLUMNS, TopView

    if sort not in COLUMNS and sort != "VM":
        _fail(f"--sort: no column {sort!r}; columns: VM, {', '.join(COLUMNS)}", 2)
    plugins, spec, run_seed, target = _prepare(scenario, from_dir, out, seed, overrides)
    view = TopView(spec.name, [], sort, limit)
    seen = [0]

    def refresh(sim: Simulation, t: int, total: int) -> None:
        if not view.vms:
            view.vms = list(sim.vms)
        rows = sim.timeseries
        if len(rows) == seen[0] or not rows:
            return
        seen[0] = len(rows)
        at = rows[-1][0]
        sample = {}
        for row in reversed(rows):
            if row[0] != at:
                break
            sample[row[1]] = dict(zip(TIMESERIES_METRICS, row[2:], strict=True))
        view.update(at, sample)

    with _keys(view), Live(get_renderable=view.table, console=_out.get(), refresh_per_second=4, transient=False):
        sim = _simulate(plugins, spec, run_seed, debug, refresh)
    path = _write(sim, target, no_plot)
    if not _out.is_terminal:  # the last table was printed without its line end
        _out.print()
    _out.print(f"results: {path}", markup=False)


@main.command()
@click.argument("folder", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="where to write the page (FOLDER/report.html)"
)
@click.option("--x", "x_param", metavar="PARAM", help="a sweep folder: the parameter on the x axis")
def report(folder: Path, out: Path | None, x_param: str | None) -> None:
    """Regenerate FOLDER's plots and write a self-contained report.html (plots, tables, provenance).

    For a sweep's folder: each metric against one parameter (--x; default the first numeric
    one), a line per combination of the others, the mean over seeds with a 95% interval."""
    from vframework.run import report as plots
    from vframework.run.analysis import column_name, load
    from vframework.run.html import render_report
    from vframework.run.simulation import TIMESERIES_METRICS

    if (folder / "sweep.csv").is_file():
        _sweep_report(folder, out, x_param)
        return
    if x_param is not None:
        _fail(f"--x is for a sweep's folder, and {folder} has no sweep.csv", 2)
    try:
        results = load(folder)
    except ResultsError as exc:
        _fail(str(exc), 2)
    target = out or folder / "report.html"
    try:
        ts = results.timeseries
        if not ts.empty:
            # The plot reads the metrics by their names in timeseries.csv (no unit suffix).
            raw = {column_name(m): m for m in TIMESERIES_METRICS}
            columns = [raw.get(c, c) for c in ts.columns]
            rows = list(ts.itertuples(index=False, name=None))
            plots.plot_timeseries(columns, rows, folder / "timeseries.png", title=results.name)
        target.write_text(render_report(results), encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot write the report: {exc}", 1)
    _out.print(f"report: {target}", markup=False)


def _sweep_report(folder: Path, out: Path | None, x_param: str | None) -> None:
    from vframework.run.sweep_report import render_sweep_report

    target = out or folder / "report.html"
    try:
        target.write_text(render_sweep_report(folder, x_param), encoding="utf-8")
    except ResultsError as exc:
        _fail(str(exc), 2)
    except OSError as exc:
        _fail(f"cannot write the report: {exc}", 1)
    _out.print(f"report: {target}", markup=False)


_COMPARE_DEFAULT = (
    "cpu_run_ns",
    "cpu_ready_ns",
    "cpu_stolen_ns",
    "mem_consumed",
    "mem_balloon",
    "mem_swapped",
    "io_completed",
    "host.hypervisor_ns",
    "host.pages_sharing",
    "bill_total",
)


@main.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option(
    "--metric",
    "-m",
    "metrics",
    multiple=True,
    help="a VM counter (summed over VMs), VM.counter, host.counter or bill_total (repeatable)",
)
@_FORMAT
def compare(folders: tuple[Path, ...], metrics: tuple[str, ...], fmt: str) -> None:
    """Compare results folders side by side: each metric, and its ratio to the first folder."""
    from vframework.run.sweep import metric

    names = list(metrics or _COMPARE_DEFAULT)
    summaries = []
    for folder in folders:
        try:
            summaries.append(json.loads((folder / "summary.json").read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            _fail(f"{folder} is not a results folder: {exc}", 2)
    table_rows = []
    for name in names:
        values = [metric(s, name) for s in summaries]
        if all(v is None for v in values):
            known = sorted({k for s in summaries for c in s.get("vms", {}).values() for k in c})
            _fail(f"--metric {name!r} is in none of the folders; VM counters: {', '.join(known[:12])}, ...", 2)
        base = values[0]
        row: dict[str, object] = {"metric": name}
        for i, (folder, v) in enumerate(zip(folders, values, strict=True)):
            row[str(folder)] = v
            if i:
                row[f"ratio {i}"] = (v / base) if v is not None and base else None
        table_rows.append(row)
    if fmt == "json":
        click.echo(json.dumps(table_rows, indent=2))
        return
    if fmt == "csv":
        _print_csv(table_rows)
        return
    table = _table("compare (ratios to the first folder)")
    for col in table_rows[0]:
        table.add_column(escape(col), justify="left" if col == "metric" else "right")
    for row in table_rows:
        table.add_row(*(escape(_fmt(v)) for v in row.values()))
    _out.print(table)


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


_STATES = ("high", "soft", "hard", "low")


def _io_lines(summary: Summary) -> list[str]:
    """One line per VM with a device plugin: what its requests cost."""
    lines = []
    comps = summary["components"]["vms"]
    for name, c in summary["vms"].items():
        devices = comps[name].get("devices") or []
        done = c["io_completed"]
        if not devices or not done:
            continue
        exits = c["traps"] + c["vm_exits"] + c["hypercalls"] + c["bt_callouts"]
        lines.append(
            f"I/O {name} ({', '.join(devices)}): {done} requests; per request {exits / done:.1f} traps, exits, "
            f"hypercalls or callouts, {c['io_bytes_copied'] / done:.0f} bytes copied, "
            f"{c['events_sent'] / done:.2f} events"
        )
    return lines


def _memory_line(summary: Summary) -> str | None:
    """One line on reclamation, when any happened: what the balloons, hypervisor swap and
    sharing hold at the end of the run."""
    vms = summary["vms"].values()
    host = summary["host"]
    mib = 4096 / 2**20
    balloon = sum(c["mem_balloon"] for c in vms) * mib
    swapped = sum(c["mem_swapped"] for c in vms) * mib
    saved = host["pages_sharing"] * mib
    if not (balloon or swapped or saved or host["reclaim_state"]):
        return None
    state = _STATES[host["reclaim_state"]] if 0 <= host["reclaim_state"] < len(_STATES) else host["reclaim_state"]
    return (
        f"memory: {host['free_frames'] * mib:.0f} MiB free (reclaim state {state}); ballooned "
        f"{balloon:.0f} MiB, hypervisor-swapped {swapped:.0f} MiB, sharing saves {saved:.0f} MiB"
    )


def _summary_rows(summary: Summary) -> list[dict[str, object]]:
    comps = summary["components"]["vms"]
    bills = summary.get("billing", {}).get("vms", {})
    rows: list[dict[str, object]] = []
    for name, c in summary["vms"].items():
        row: dict[str, object] = {
            "vm": name,
            "mode": comps[name]["mode"],
            "workload": comps[name]["workload"],
            "run_s": round(c["cpu_run_ns"] / 1e9, 6),
            "ready_s": round(c["cpu_ready_ns"] / 1e9, 6),
            "mem_mib": round(c["mem_consumed"] * 4096 / 2**20, 3),
            "guest_pf": c["guest_page_faults"],
            "hidden_pf": c["hidden_page_faults"],
        }
        if name in bills:
            row["bill"] = bills[name]["bill_total"]
        rows.append(row)
    return rows


def _bill_total(summary: Summary) -> dict[str, object]:
    billing = summary.get("billing")
    return {"bill_total": billing["bill_total"], "currency": billing["currency"]} if billing else {}


def _bill_line(summary: Summary) -> str | None:
    billing = summary.get("billing")
    if not billing:
        return None
    return f"bill: {billing['bill_total']} {billing['currency']} in all (ledger.csv, invoice.json)"


def _summary_table(summary: Summary, rows: list[dict[str, object]]) -> Table:
    secs = summary["sim_time_ns"] / 1e9
    table = _table(f"{summary['scenario']} — seed {summary['seed']}, {secs:g} s simulated")
    titles = {
        "vm": "VM",
        "mode": "mode",
        "workload": "workload",
        "run_s": "run s",
        "ready_s": "ready s",
        "mem_mib": "mem MiB",
        "guest_pf": "guest PF",
        "hidden_pf": "hidden PF",
        "bill": "bill",
    }
    keys = [k for k in titles if rows and k in rows[0]]
    for k in keys:
        table.add_column(titles[k], justify="left" if k in ("vm", "mode", "workload") else "right", no_wrap=True)
    for row in rows:
        cells = []
        for k in keys:
            v = row[k]
            cells.append(f"{v:.3f}" if k in ("run_s", "ready_s") else f"{v:.1f}" if k == "mem_mib" else str(v))
        table.add_row(*(escape(c) for c in cells))
    return table


@main.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def plugins(as_json: bool) -> None:
    """List installed plugin distributions and the components and experiments they register."""
    from vframework.api.contract import KINDS
    from vframework.api.manager import EXPERIMENT

    listed = (*KINDS, EXPERIMENT)
    pm = _plugins()
    infos = sorted(pm.plugins.values(), key=lambda p: p.name)
    if as_json:
        data = [
            {"name": p.name, "version": p.version, "components": {k: sorted(p.components.get(k, [])) for k in listed}}
            for p in infos
        ]
        click.echo(json.dumps(data, indent=2))
        return
    table = _table("vframework plugins")
    for col in ("distribution", "version", "kind", "components"):
        table.add_column(col)
    for p in infos:
        first = True
        for kind in listed:
            names = sorted(p.components.get(kind, []))
            if names:
                table.add_row(p.name if first else "", p.version if first else "", kind, ", ".join(names))
                first = False
        if first:
            table.add_row(p.name, p.version, "-", "(registers nothing)")
    _out.print(table)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a key before validating")
def validate(file: str, overrides: tuple[str, ...]) -> None:
    """Check a scenario file and report every problem (exit 2 if any)."""
    spec = _load(file, _plugins(), list(overrides))
    n = len(spec.vms)
    _out.print(f"{file}: valid scenario {spec.name!r} ({n} VM{'s' if n != 1 else ''})")


@main.command()
@click.argument("components", nargs=-1)
@click.option(
    "--profile",
    default="default",
    show_default=True,
    type=click.Choice(["default", "thorough", "ci"]),
    help="Hypothesis profile (examples per property)",
)
@click.option(
    "--arch",
    type=click.Choice(["x86", "classic", "x86-vt"]),
    default=None,
    help="architecture for mode properties (default: each mode's first declared architecture)",
)
@click.option(
    "--shrink-seconds",
    type=click.FloatRange(min=0),
    default=20.0,
    show_default=True,
    help="time budget to shrink one property's failures; then the smallest found so far is shown",
)
@click.option("--strict", is_flag=True, help="fail (exit 1) when no property applies to a component")
@click.option(
    "--replay",
    "replay_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="rerun exactly the failure recorded in this file (written by a failing check), under the profile "
    "that found it",
)
@click.option(
    "--save",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".vframework-check"),
    show_default=True,
    help="folder for the replay files of failures",
)
def check(
    components: tuple[str, ...],
    profile: str,
    arch: str | None,
    shrink_seconds: float,
    strict: bool,
    replay_file: Path | None,
    save: Path,
) -> None:
    """Run the conformance kit against installed components (all when none is named).

    Every installed component gets a row per property of its kind: pass, FAIL, not applicable
    (with the reason), known limitation (declared by the component), or no property."""
    from vframework.testing.kit import Status, plan, run_check, select_targets

    pm = _plugins()
    replay = None
    if replay_file is not None:
        from vframework.testing.replay import ReplayError, load_replay

        try:
            replay = load_replay(replay_file)
        except ReplayError as exc:
            _fail(str(exc), 2)
        if components and list(components) != [replay.component]:
            _fail(f"{replay_file} replays {replay.component!r}, not {', '.join(components)}", 2)
        components, arch = (replay.component,), replay.arch
        # The profile that found it: a shorter one would cut the example's steps and pass.
        profile = replay.profile or profile
    try:
        targets = select_targets(pm, list(components))
    except KeyError as exc:
        _fail(str(exc.args[0]), 2)
    checks = plan(targets, arch)
    if replay is not None:
        checks = [c for c in checks if c.label == replay.property]
        if not checks:
            _fail(f"{replay.component!r} has no property {replay.property!r} to replay", 2)
    if not any(c.machine is not None for c in checks):
        _fail("no conformance property applies to the chosen components" + (f" on {arch}" if arch else ""), 2)
    outcomes = []
    try:
        for i, c in enumerate(checks, 1):
            with _err.status(f"[{i}/{len(checks)}] {escape(c.target.name)}: {escape(c.label)}"):
                outcomes.append(run_check(c, profile, shrink_seconds, replay.example if replay else None))
    except KeyboardInterrupt:
        _err.print(f"interrupted: {len(outcomes)} of {len(checks)} checks ran", markup=False)
        sys.exit(130)
    style = {Status.PASS: "green", Status.FAIL: "bold red", Status.KNOWN: "yellow", Status.UNEXPECTED_PASS: "yellow"}
    table = _table(f"conformance ({'replay, ' if replay else ''}{profile} profile)")
    for col in ("component", "kind", "property", "examples", "result"):
        table.add_column(col, justify="right" if col == "examples" else "left", no_wrap=col in ("component", "kind"))
    for o in outcomes:
        result = escape(o.status) + (f": {escape(o.reason)}" if o.reason else "")
        colour = style.get(o.status, "dim")
        examples = str(o.examples) if o.status not in (Status.NOT_APPLICABLE, Status.NO_PROPERTY) else "-"
        table.add_row(escape(o.component), o.kind, escape(o.prop), examples, f"[{colour}]{result}[/]")
    _out.print(table)
    failed = [(c, o) for c, o in zip(checks, outcomes, strict=False) if o.status == Status.FAIL]
    if replay is not None and not failed:
        if any(o.status == Status.KNOWN for o in outcomes):
            _out.print(
                f"the recorded failure still happens: {replay.component} declares it a known limitation of "
                f"{replay.property}"
            )
        else:
            _out.print(f"the recorded failure no longer happens: {replay.component} / {replay.property} holds for it")
    for c, o in failed:
        _out.print(f"\n[bold red]{escape(o.component)} / {escape(o.prop)} failed[/]", markup=True)
        _out.print(o.report, markup=False, highlight=False, soft_wrap=True)
        if replay is None:
            from vframework.testing.replay import save_replays

            for path in save_replays(o, c, save, profile):
                _out.print(
                    f"rerun this example: vframework check {o.component} --replay {path}", markup=False, soft_wrap=True
                )
    ran = {o.component for o in outcomes if o.status not in (Status.NOT_APPLICABLE, Status.NO_PROPERTY)}
    bare = sorted({o.component for o in outcomes} - ran)
    if bare:
        _err.print(f"no property applies to {', '.join(bare)}", markup=False)
    if failed or (strict and bare):
        sys.exit(1)


@main.command()
@click.argument("sweep_file", metavar="SWEEP.toml", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="the sweep's folder (default: results/<sweep name>); rerun with it to resume",
)
@click.option("--workers", type=click.IntRange(min=1), help="local processes (default: the core count)")
@click.option("--scheduler", metavar="ADDRESS", help="run the points on this Dask scheduler (tcp://host:8786)")
@click.option("--quiet", "-q", is_flag=True, help="no progress bar")
def sweep(sweep_file: Path, out: Path | None, workers: int | None, scheduler: str | None, quiet: bool) -> None:
    """Run a sweep: a base scenario under a grid of --set overrides, for every seed.

    Each point runs into OUT/points/NNNN like `vframework run`; OUT/sweep.csv gathers the
    chosen metrics. Rerunning into the same OUT runs only the points not done yet. Exit status:
    0, or 100 + the number of points that failed (at most 125)."""
    from rich.progress import Progress

    from vframework.run import sweep_run

    if workers is not None and scheduler is not None:
        _fail("give --workers or --scheduler, not both (Dask's workers are the cluster's)", 2)
    target = out or Path("results") / sweep_file.stem
    try:
        prepared = sweep_run.prepare(sweep_file, target)
    except ScenarioError as exc:
        _fail_problems("invalid sweep", exc)
    except (ResultsError, OSError) as exc:
        _fail(str(exc), 2)
    done = len(prepared.points) - len(prepared.pending)
    if done and not quiet:
        _err.print(f"resuming: {done} of {len(prepared.points)} points already done", markup=False)
    try:
        with Progress(console=_err.get(), transient=True, disable=quiet) as bar:
            task = bar.add_task("points", total=len(prepared.pending))
            sweep_run.run(prepared, workers, scheduler, progress=lambda n, total: bar.update(task, completed=n))
        sweep_run.finish(prepared)
    except (ResultsError, OSError) as exc:
        _fail(f"{exc}; points already done are kept: rerun to resume", 1)
    failed = len(prepared.errors)
    for index, error in sorted(prepared.errors.items()):
        _err.print(f"point {index:04d} failed: {error}", markup=False, soft_wrap=True)
    _out.print(
        f"sweep: {target} ({len(prepared.points) - failed} of {len(prepared.points)} points done, "
        f"{failed} failed; table: {target / 'sweep.csv'})",
        markup=False,
    )
    if failed:
        sys.exit(100 + min(failed, 25))


@main.group(name="import")
def import_group() -> None:
    """Write a scenario from VMs described for libvirt or xl."""


@main.group(name="export")
def export_group() -> None:
    """Write a scenario's VMs in an operator's format."""


def _import_options(f: Callable[..., None]) -> Callable[..., None]:
    """The options ``import libvirt`` and ``import xl`` share."""
    return _decorate(
        f,
        [
            click.argument(
                "files", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path)
            ),
            click.option(
                "--host",
                "host_file",
                type=click.Path(dir_okay=False, exists=True, path_type=Path),
                help="a TOML file whose [host] table is the host (default: CPUs and memory for the VMs)",
            ),
            click.option(
                "--out", type=click.Path(dir_okay=False, path_type=Path), help="the scenario file (default: stdout)"
            ),
            click.option("--strict", is_flag=True, help="an element or key that is not modelled is an error"),
        ],
    )


def _import(fmt: str, files: tuple[Path, ...], host_file: Path | None, out: Path | None, strict: bool) -> None:
    import tomli_w

    from vframework.formats import libvirt, xl
    from vframework.formats.domains import default_host, host_table, to_scenario

    reader = libvirt.read if fmt == "libvirt" else xl.read
    domains, left = [], []
    try:
        for path in files:
            domain, unmodelled = reader(path.read_text(encoding="utf-8"), str(path))
            domains.append(domain)
            left += unmodelled
        host = default_host(domains) if host_file is None else host_table(host_file)
        scenario, more = to_scenario(domains, host, _plugins())
    except ScenarioError as exc:
        _fail_problems("cannot import", exc)
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"cannot read: {exc}", 2)
    left += more
    for item in left:
        _err.print(f"{'error' if strict else 'warning'}: {item}", markup=False, soft_wrap=True)
    if strict and left:
        _fail(f"{len(left)} element(s) not modelled (--strict); nothing written", 2)
    text = tomli_w.dumps(scenario)
    if out is None:
        click.echo(text, nl=False)
    else:
        try:
            out.write_text(text, encoding="utf-8")
        except OSError as exc:
            _fail(f"cannot write {out}: {exc}", 1)
        _out.print(f"scenario: {out} ({len(domains)} VMs)", markup=False)


@import_group.command(name="libvirt")
@_import_options
def import_libvirt(files: tuple[Path, ...], host_file: Path | None, out: Path | None, strict: bool) -> None:
    """A scenario from libvirt domain XML files (one VM per <domain>)."""
    _import("libvirt", files, host_file, out, strict)


@import_group.command(name="xl")
@_import_options
def import_xl(files: tuple[Path, ...], host_file: Path | None, out: Path | None, strict: bool) -> None:
    """A scenario from Xen xl.cfg files (one VM per file)."""
    _import("xl", files, host_file, out, strict)


@export_group.command(name="libvirt")
@click.argument("scenario", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), help="folder for <vm>.xml files (default: stdout)"
)
def export_libvirt(scenario: Path, out: Path | None) -> None:
    """Write SCENARIO's VMs as libvirt domain XML (import libvirt reads them back)."""
    import tomllib

    from vframework.formats import libvirt

    plugins = _plugins()
    spec = _load(str(scenario), plugins, [])
    data = tomllib.loads(spec.given)
    host = data.get("host", {})
    docs = {vm["name"]: libvirt.export(vm, host, plugins) for vm in data.get("vm", [])}
    if out is None:
        click.echo("".join(docs.values()), nl=False)
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in docs.items():
            (out / f"{name}.xml").write_text(text, encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot write {out}: {exc}", 1)
    _out.print(f"domains: {out} ({len(docs)} files)", markup=False)


class _ExperimentCommand(click.Command):
    """``vframework experiment --help`` lists the installed experiments too (what NAME may be)."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        experiments = _plugins().experiments
        with formatter.section("Installed experiments"):
            if experiments:
                formatter.write_dl([(name, experiments[name].description) for name in sorted(experiments)])
            else:
                formatter.write_text("none: install vframework-experiments, or a plugin providing experiments")


@main.command(name="experiment", cls=_ExperimentCommand)
@click.argument("name", required=False)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="results folder (new or empty)")
@click.option("--quick", is_flag=True, help="shorter simulated runs (for a first look)")
def experiment_cmd(name: str | None, out: Path | None, quick: bool) -> None:
    """List the installed experiments, or run NAME and write its tables (CSV, JSON) and plots (PNG)."""
    from vframework.api.manager import EXPERIMENT
    from vframework.run.experiment import write_experiment
    from vframework.run.results import default_results_dir

    pm = _plugins()
    if name is None:
        table = _table("experiments")
        table.add_column("name")
        table.add_column("what it shows")
        table.add_column("distribution")
        for exp in sorted(pm.experiments.values(), key=lambda e: e.name):
            table.add_row(escape(exp.name), escape(exp.description), escape(pm.provider(EXPERIMENT, exp.name)))
        if not pm.experiments:
            table.add_row("(none installed)", "install vframework-experiments, or a plugin providing experiments", "")
        _out.print(table)
        return
    try:
        exp = pm.get_experiment(name)
    except KeyError as exc:
        _fail(str(exc.args[0]), 2)
    try:
        with _err.status(f"running experiment {name}..."):
            result = exp.run(pm, quick)
    except ScenarioError as exc:
        _fail(f"experiment {name!r} needs components that are not installed:\n{exc}", 2)
    except (PluginError, HostOutOfMemory, GuestOutOfMemory, NoProgress) as exc:
        _fail(f"{exc}; no results were written", 1)
    except Exception as exc:  # a bug in the experiment: one message naming its distribution
        _fail(
            f"experiment {name!r} of plugin {pm.provider(EXPERIMENT, name)!r} raised "
            f"{type(exc).__name__}: {exc}; no results were written",
            1,
        )
    base = Path("vframework-results")
    target = out or default_results_dir(f"experiment-{name}", 0, base)
    try:
        path = write_experiment(result, target)
    except (ResultsError, OSError) as exc:
        _fail(f"cannot write results: {exc}", 1)
    for table_name, rows in result.tables.items():
        if not rows or table_name.endswith("_detail"):
            continue
        table = _table(table_name)
        for col in rows[0]:
            table.add_column(col)
        for row in rows:
            table.add_row(*(escape(str(v)) for v in row.values()))
        _out.print(table)
    for key, (holds, text) in result.checks.items():
        _out.print(f"[{'green' if holds else 'red'}]{'holds' if holds else 'FAILS'}[/] {escape(key)}: {escape(text)}")
    _out.print(f"results: {path}")
