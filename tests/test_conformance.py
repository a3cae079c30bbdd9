"""The conformance kit: ``vframework check`` on what is installed, and on components that are wrong
on purpose (it must catch them and show a minimal failing example)."""

from __future__ import annotations

import re
from collections.abc import Generator
from typing import Any

import numpy as np
import pytest

from vframework import PluginManager
from vframework.api.contract import Workload
from vframework.guest import ops
from vframework.guest.ops import IO, Compute, Fault, KernelCall, Operation, Sleep, Syscall, Touch
from vframework.testing import (
    PROPERTIES,
    HypervisorMachine,
    ShareMachine,
    WorkloadMachine,
    run_property,
    select_targets,
)
from vframework.testing.doubles import FifoScheduler

COLUMNS = ("component", "kind", "property", "examples", "result")

#: Failures that `vframework check` currently reports for reasons other than a component breaking
#: its contract (kit bugs), or for known bugs of a standard plugin; each has a strict xfail
#: reproducer. Remove an entry when its reproducer passes.
KNOWN_CHECK_FAILURES: dict[tuple[str, str], str] = {}


def flat(output: str) -> str:
    """The output with rich's line wrapping undone (words joined by single spaces)."""
    return " ".join(output.split())


def failures(output: str) -> dict[tuple[str, str], str]:
    """(component, property) -> the failure report printed after the table."""
    text = flat(output)
    header = re.compile(r"(\S+) / (.+?) failed; minimal failing example:")
    found = list(header.finditer(text))
    reports = {}
    for i, m in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else len(text)
        prop = re.sub(r"\s*\[[\w-]+\]$", "", m.group(2).strip())
        reports[(m.group(1), prop)] = text[m.end() : end]
    return reports


def expected_outcomes(plugins: PluginManager) -> int:
    from vframework.testing import properties  # noqa: F401  (registers the properties)

    return sum(1 for t in select_targets(plugins, []) for p in PROPERTIES if p.kind == t.kind and p.applies(t.cls))


@pytest.fixture
def without_shrinking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the kit's properties without Hypothesis's shrink phase: a failure still fails, but its
    report is not minimized (shrinking a failure of the expensive machines can take minutes; the
    minimal examples are tested below on components broken on purpose)."""
    from hypothesis import Phase, settings

    from vframework.testing import kit

    original = kit.settings_for
    phases = [p for p in Phase if p is not Phase.shrink and p.name != "explain"]
    monkeypatch.setattr(kit, "settings_for", lambda profile: settings(original(profile), phases=phases))


@pytest.mark.invariants
def test_check_every_installed_component(cli, hypothesis_profile: str, without_shrinking: None) -> None:
    result = cli.invoke(["check", "--profile", hypothesis_profile])
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
    assert len(results) == expected_outcomes(plugins), "one table row per (component, property)"
    failed = failures(output)
    assert len(failed) == results.count("FAIL")
    for (component, prop), report in failed.items():
        known = KNOWN_CHECK_FAILURES.get((component, prop))
        assert known is not None and known in report, f"{component} failed {prop!r}:\n{report}"
    assert result.exit_code == (1 if failed else 0), output


@pytest.mark.invariants
class TestHypervisorMachine(HypervisorMachine.TestCase):  # type: ignore[name-defined, misc]
    """The kit's hypervisor machine with its own doubles (FIFO scheduler, flat mode, fixed policy):
    VMs of 1 to 3 vCPUs, each vCPU's process touching its pages, must all fit and run."""


def test_check_one_component(cli) -> None:
    output = cli(["check", "static", "--profile", "ci"])
    for column in COLUMNS:
        assert column in output
    assert "static" in output and "memory_policy" in output and "pass" in output
    assert "FAIL" not in output and "fair" not in output and "kernel" not in output


def test_check_unknown_component(cli) -> None:
    output = cli(["check", "nonexistent"], code=2)
    assert "nonexistent" in output and "installed" in output
    for name in ("kernel", "fair", "static", "bare-metal", "cpu", "idle", "io", "memory"):
        assert name in output


def test_check_when_nothing_applies(cli) -> None:
    output = cli(["check", "hardware-assisted", "--arch", "classic"], code=2)
    assert "no conformance property applies" in output and "classic" in output


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
    """The rule steps of a falsifying example (invariant checks left out)."""
    rules = ("state.add_vm(", "state.run_for(")
    return [line.strip() for line in report.splitlines() if line.strip().startswith(rules)]


def test_kit_catches_a_scheduler_that_breaks_work_conservation() -> None:
    examples, report = run_property(HypervisorMachine.for_components(scheduler=NeverRequeue), "ci")
    assert report is not None, "the kit let a non-work-conserving scheduler pass"
    assert examples > 0
    assert "idle while" in report and "RUNNABLE" in report
    assert "Falsifying example" in report or "Failing test case" in report  # wording of Hypothesis < / >= 6.14x
    # Small: one VM with one vCPU, then time (Hypothesis's shrinker occasionally stops at two
    # stretches of time instead of one, so the count of run_for steps is not pinned).
    names = [s.split("(")[0] for s in steps(report)]
    assert names[0] == "state.add_vm" and set(names[1:]) == {"state.run_for"} and len(names) <= 3, report
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
    [(key, report)] = [(k, r) for k, r in failures(output).items() if k[0] == "double-pick"]
    assert "picked vm0/vcpu0, which is running on CPU 0" in report, report
    assert "Falsifying example" in report or "Failing test case" in report  # wording of Hypothesis < / >= 6.14x
    # Minimal: one VM with one vCPU is enough; no time needs to pass.
    assert [s.split("(")[0] for s in steps(output)] == ["state.add_vm"], report
    assert "vcpus=1" in report


def test_kit_shows_trap_and_emulate_breaking_equivalence_on_x86() -> None:
    """Popek & Goldberg: plain trap-and-emulate is correct on a classically virtualizable
    architecture, and not on x86, where POPF run deprivileged neither traps nor changes IF."""
    from vframework.testing.equivalence import EquivalenceMachine

    mode = PluginManager().get("mode", "trap-and-emulate")
    assert run_property(EquivalenceMachine.for_component(mode, "classic"), "ci")[1] is None
    _, report = run_property(EquivalenceMachine.for_component(mode, "x86"), "ci")
    assert report is not None, "trap-and-emulate passed equivalence on x86"
    assert "guest-visible state differs from bare metal" in report and "interrupt flag" in report
    assert "state = EquivalenceMachine[trap-and-emulate@x86]()" in report and "state.boot()" in report
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
    assert run_property(WorkloadMachine.for_component(BasicOperations), "ci")[1] is None


def test_workload_kit_catches_a_touch_outside_the_address_space() -> None:
    _, report = run_property(WorkloadMachine.for_component(OutOfBounds), "ci")
    assert report is not None and "outside the address space" in report


def test_workload_kit_accepts_every_operation() -> None:
    _, report = run_property(WorkloadMachine.for_component(EveryOperation), "ci")
    assert report is None, report


def test_fair_scheduler_keeps_its_proportional_share_bound() -> None:
    """The falsifying example of the kit's proportional-share property, replayed step by step."""
    machine = ShareMachine.for_component(PluginManager().get("scheduler", "fair"))()
    machine.setup(cpus=3)
    machine.add_vm(vcpus=2, share=1)
    machine.add_vm(vcpus=1, share=1)
    machine.run_for(span=106_000_000)
    machine.within_bound()
    machine.add_vm(vcpus=1, share=1)
    machine.add_vm(vcpus=1, share=1)
    machine.run_for(span=78_000_000)
    machine.within_bound()
    machine.teardown()


def _pv_guest_mapping(ppn: int, writable: bool) -> Any:
    """A paravirtual attacker in the resource-control machine, booted, with PPN 0 made a page
    table whose entry 0 maps PPN ``ppn``'s frame."""
    from vframework.guest.kernel import HC, pack
    from vframework.testing.equivalence import ResourceControlMachine

    plugins = PluginManager(autoload=True)
    machine = ResourceControlMachine.for_component(plugins.get("mode", "paravirtual"))()
    machine.boot()
    machine.frame_hypercall(reg=0, value=0, number=HC.CREATE_PAGE_TABLE)
    vm, ctx = machine.attacker.vm, machine.attacker.ctx
    ctx.mem[0x40], ctx.mem[0x41], ctx.mem[0x42] = 0, 0, (int(vm.p2m[ppn]) << 1) | int(writable)
    ctx.regs[0] = 0x40
    machine._hypercall(HC.UPDATE_PAGE_TABLE, pack(0, 1))
    assert ctx.hcr == 0
    return machine


def test_a_frame_mapped_by_a_page_table_cannot_be_ballooned_out() -> None:
    """The kit's falsifying example (paravirtual resource control), replayed: a guest maps its own
    frame read-only in one of its page tables, then balloons that frame out. Releasing it would
    leave the table mapping a frame the VM no longer owns; the hypercall must fail instead."""
    from vframework.guest.kernel import HC
    from vframework.hv.hypercalls import EBUSY

    machine = _pv_guest_mapping(2, writable=False)
    machine.frame_hypercall(reg=0, value=2, number=HC.BALLOON_INFLATE)
    assert machine.attacker.ctx.hcr == EBUSY
    machine.frames_owned_and_typed()
    machine.teardown()


def test_a_frame_mapped_writable_cannot_become_a_page_table() -> None:
    """The kit's falsifying example (paravirtual resource control, thorough profile), replayed:
    the guest maps one of its frames writable in its page table, then asks for that frame to
    become a page table. Accepting would leave a page table the guest can write directly."""
    from vframework.guest.kernel import HC
    from vframework.hv.hypercalls import EBUSY

    machine = _pv_guest_mapping(1, writable=True)
    machine.frame_hypercall(reg=0, value=1, number=HC.CREATE_PAGE_TABLE)
    assert machine.attacker.ctx.hcr == EBUSY
    machine.frames_owned_and_typed()
    machine.teardown()
