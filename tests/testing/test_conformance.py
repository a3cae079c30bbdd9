"""The conformance kit: ``vframework check`` on what is installed, and on components that are wrong
on purpose (it must catch them and show a minimal failing example); and the kit's own kernel
machines, which must not fail a correct kernel."""

from __future__ import annotations

import re
from collections.abc import Generator
from typing import Any

import numpy as np
import pytest
from hypothesis import Phase, settings
from vf_helpers import flat

# The properties module registers the properties the kit plans (expected_runs counts them).
import vframework.testing.properties  # noqa: F401
from vframework import PluginManager
from vframework.api.contract import Workload
from vframework.guest import ops
from vframework.guest.ops import IO, Compute, Fault, KernelCall, Operation, Sleep, Syscall, Touch
from vframework.testing import (
    EngineMachine,
    HypervisorMachine,
    WorkloadMachine,
    kit,
    run_property,
    runner,
    select_targets,
)
from vframework.testing.doubles import FifoScheduler
from vframework.testing.equivalence import EquivalenceMachine

COLUMNS = ("component", "kind", "property", "examples", "result")

#: Failures that `vframework check` currently reports for reasons other than a component breaking
#: its contract (kit bugs), or for known bugs of a standard plugin; each has a strict xfail
#: reproducer. Remove an entry when its reproducer passes.
KNOWN_CHECK_FAILURES: dict[tuple[str, str], str] = {}


def failures(output: str) -> dict[tuple[str, str], str]:
    """(component, property) -> the failure report printed after the table."""
    text = flat(output)
    header = re.compile(r"(\S+) / (.+?) failed (?=failure)")
    found = list(header.finditer(text))
    reports = {}
    for i, m in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else len(text)
        prop = re.sub(r"\s*\[[\w-]+\]$", "", m.group(2).strip())
        reports[(m.group(1), prop)] = text[m.end() : end]
    return reports


def expected_runs(plugins: PluginManager) -> int:
    """Checks that run (the others are rows saying why not)."""
    return sum(1 for c in kit.plan(select_targets(plugins, [])) if c.machine is not None and c.limitation is None)


@pytest.fixture(autouse=True)
def _in_a_scratch_folder(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing check writes replay files into the working folder: not into the checkout."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def without_shrinking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the kit's properties without Hypothesis's shrink phase: a failure still fails, but its
    report is not minimized (shrinking a failure of the expensive machines can take minutes; the
    minimal examples are tested below on components broken on purpose)."""
    original = runner.settings_for
    phases = [p for p in Phase if p is not Phase.shrink and p.name != "explain"]
    monkeypatch.setattr(runner, "settings_for", lambda profile: settings(original(profile), phases=phases))


@pytest.mark.invariants
def test_check_every_installed_component(cli, hypothesis_profile: str, without_shrinking: None, tmp_path) -> None:
    result = cli.invoke(["check", "--profile", hypothesis_profile, "--save", str(tmp_path)])
    output = result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in output
    assert f"conformance ({hypothesis_profile} profile)" in output
    for column in COLUMNS:
        assert column in output
    plugins = PluginManager()
    for kind, components in plugins.components.items():
        for name in components:
            assert name in output, f"{kind} {name!r} was not checked"
    assert "kernel" in output
    results = re.findall(r"│\s+(pass|FAIL)\s+│", output)
    assert len(results) == expected_runs(plugins), "one table row per (component, property) run"
    for check in kit.plan(select_targets(plugins, [])):
        if check.machine is None:
            assert check.skip, check
            assert check.target.name in output
    failed = failures(output)
    assert len(failed) == results.count("FAIL")
    for (component, prop), report in failed.items():
        known = KNOWN_CHECK_FAILURES.get((component, prop))
        assert known is not None, f"{component} failed {prop!r}:\n{report}"
        assert known in report, f"{component} failed {prop!r}:\n{report}"
    assert result.exit_code == (1 if failed else 0), output


def test_check_one_component(cli) -> None:
    output = cli(["check", "static", "--profile", "ci"])
    for column in COLUMNS:
        assert column in output
    assert "static" in output
    assert "memory_policy" in output
    assert "pass" in output
    assert "FAIL" not in output
    assert "fair" not in output
    assert "kernel" not in output


def test_check_unknown_component(cli) -> None:
    output = cli(["check", "nonexistent"], code=2)
    assert "nonexistent" in output
    assert "installed" in output
    for name in ("kernel", "fair", "static", "bare-metal", "cpu", "idle", "io", "memory"):
        assert name in output


def test_check_when_nothing_applies(cli) -> None:
    output = cli(["check", "hardware-assisted", "--arch", "classic"], code=2)
    assert "no conformance property applies" in output
    assert "classic" in output


def test_check_unknown_profile(cli) -> None:
    output = cli(["check", "static", "--profile", "forever"], code=2)
    assert "forever" in output


# -- components that are wrong on purpose -----------------------------------------------------


class NeverRequeue(FifoScheduler):
    """Forgets a vCPU when its slice ends, although it is still runnable: CPUs idle while it waits."""

    name = "never-requeue"

    def charge(self, vcpu: Any, ran_ns: int, now: int, runnable: bool) -> None:
        pass


def steps(report: str) -> list[str]:
    """The rule steps of a failure's report (invariant checks left out), flattened or not."""
    return re.findall(r"state\.(?:add_vm|run_for)\([^)]*\)", report)


def test_kit_catches_a_scheduler_that_breaks_work_conservation() -> None:
    run = run_property(HypervisorMachine.for_components(scheduler=NeverRequeue), "ci")
    report = run.report
    assert report is not None, "the kit let a non-work-conserving scheduler pass"
    assert run.examples > 0
    assert "idle while" in report
    assert "RUNNABLE" in report
    assert "minimal steps" in report
    # Small: one VM with one vCPU, then time (Hypothesis's shrinker occasionally stops at two
    # stretches of time instead of one, so the count of run_for steps is not pinned).
    names = [s.split("(")[0] for s in steps(report)]
    assert names[0] == "state.add_vm", report
    assert set(names[1:]) == {"state.run_for"}, report
    assert len(names) <= 3, report
    assert "vcpus=1" in report


def test_check_command_shows_a_failing_plugin_scheduler(make_dist, cli) -> None:
    """An installed third-party scheduler whose pick() returns the head of its queue without taking
    it off: the second CPU is handed a vCPU that is already running on the first."""
    make_dist(
        "acme-sched",
        """\
        from vframework import hookimpl
        from vframework.testing.doubles import FifoScheduler

        class DoublePick(FifoScheduler):
            name = "double-pick"

            def pick(self, cpu, now):
                return (self.queue[0], self.slice_ns) if self.queue else (None, 0)

        @hookimpl
        def register_schedulers():
            return [DoublePick]
        """,
    )
    output = cli(["check", "double-pick", "--profile", "ci"], code=1)
    assert re.search(r"│ double-pick\s+│ scheduler\s+│.*│\s+FAIL\s+│", output), output
    report = failures(output)[("double-pick", "dispatch")]
    assert "picked vm0/vcpu0, which is running on CPU 0" in report, report
    assert "minimal steps" in report
    # Minimal: one VM with one vCPU is enough; no time needs to pass.
    assert [s.split("(")[0] for s in steps(report)] == ["state.add_vm"], report
    assert "vcpus=1" in report


def test_kit_shows_trap_and_emulate_breaking_equivalence_on_x86() -> None:
    """Popek & Goldberg: plain trap-and-emulate is correct on a classically virtualizable
    architecture, and not on x86, where POPF run deprivileged neither traps nor changes IF."""
    mode = PluginManager().get("mode", "trap-and-emulate")
    assert run_property(EquivalenceMachine.for_component(mode, "classic"), "ci").passed
    report = run_property(EquivalenceMachine.for_component(mode, "x86"), "ci").report
    assert report is not None, "trap-and-emulate passed equivalence on x86"
    assert "guest-visible state differs from bare metal" in report
    assert "interrupt flag" in report
    assert "state.boot()" in report
    rules = [
        line.strip()
        for line in report.splitlines()
        if line.strip().startswith("state.") and not line.strip().startswith(("state.same_", "state.teardown"))
    ]
    assert len(rules) <= 3, f"not a minimal example: {rules}"


def test_check_table_names_the_architecture(cli, without_shrinking: None) -> None:
    output = cli(["check", "trap-and-emulate", "--arch", "x86", "--profile", "ci"], code=1)
    assert "[x86]" in output


class EveryOperation(Workload):
    """Yields one of each operation of vframework.guest.ops, forever, within an 8-page address space."""

    name = "every-operation"

    def address_space_pages(self) -> int:
        return 8

    def operations(self) -> list[Operation]:
        extra = [ops.ForkWait(2)] if hasattr(ops, "ForkWait") else []
        extra += [ops.ForkExec((2, 3), shell=True)] if hasattr(ops, "ForkExec") else []
        return [*BasicOperations.operations(self), Fault("divide_error"), KernelCall("syscall", 3), *extra]

    def run(self) -> Generator[Operation, Any, None]:
        while True:
            yield from self.operations()


class BasicOperations(EveryOperation):
    name = "basic-operations"

    def operations(self) -> list[Operation]:
        return [
            Compute(100),
            Touch(np.arange(4, dtype=np.int64), True),
            Sleep(1_000),
            Syscall(),
            IO(512, False, "disk"),
        ]


class OutOfBounds(EveryOperation):
    name = "out-of-bounds"

    def run(self) -> Generator[Operation, Any, None]:
        yield Compute(100)
        yield Touch(np.array([3, 8], dtype=np.int64), False)


def test_workload_kit_passes_basic_operations() -> None:
    assert run_property(WorkloadMachine.for_component(BasicOperations), "ci").passed


def test_workload_kit_catches_a_touch_outside_the_address_space() -> None:
    report = run_property(WorkloadMachine.for_component(OutOfBounds), "ci").report
    assert report is not None
    assert "outside the address space" in report


def test_workload_kit_accepts_every_operation() -> None:
    report = run_property(WorkloadMachine.for_component(EveryOperation), "ci").report
    assert report is None, report


# -- the kit's kernel machines ---------------------------------------------------------------


def test_kit_engine_machine_accepts_a_more_urgent_event_scheduled_after_one_fired() -> None:
    """The falsifying example Hypothesis finds, replayed step by step."""
    machine = EngineMachine()
    machine.schedule(delay=0, priority=1)
    machine.step()
    machine.schedule(delay=0, priority=0)
    machine.step()
    machine.fired_in_order()
    machine.teardown()
