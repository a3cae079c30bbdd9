"""How the kit runs and reports: every distinct failure with its own steps, generated examples
counted (not shrink attempts), replay files, not-applicable rows, --strict, Ctrl-C; and the
sliding-window computation the cap and reservation property rests on."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from vf_helpers import flat

from vframework.hv.vm import VM
from vframework.machine.hardware import MachineMemory
from vframework.testing import kit
from vframework.testing.doubles import FifoScheduler
from vframework.testing.hypervisor import HypervisorMachine
from vframework.testing.memory import assert_owns_its_frames
from vframework.testing.replay import ReplayError, load_replay
from vframework.testing.runner import run_property
from vframework.testing.scheduling import window_extremes


class TwoBugs(RuleBasedStateMachine):
    """Fails in two unrelated ways: a rule that raises, and an invariant that stops holding."""

    def __init__(self) -> None:
        super().__init__()
        self.a = self.b = 0

    @rule(x=st.integers(0, 10))
    def grow_a(self, x: int) -> None:
        self.a += x

    @rule(x=st.integers(0, 10))
    def grow_b(self, x: int) -> None:
        self.b += x
        if self.b > 12:
            raise ValueError(f"b reached {self.b}")

    @invariant()
    def a_small(self) -> None:
        assert self.a < 15, f"a reached {self.a}"


QUICK = settings(max_examples=200, stateful_step_count=10, deadline=None, database=None)


def test_every_distinct_failure_has_its_own_minimal_steps() -> None:
    run = run_property(TwoBugs, hypothesis_settings=QUICK)
    assert len(run.failures) == 2, run.report
    errors = sorted(f.error for f in run.failures)
    assert errors[0].startswith("ValueError: b reached"), errors
    assert errors[1].startswith("a reached"), errors
    for failure in run.failures:
        assert failure.steps, failure
        assert all(s.startswith("state.grow_") for s in failure.steps), failure.steps  # invariants left out
        assert failure.blob
    assert run.report is not None
    assert "failure 1 of 2" in run.report
    assert "failure 2 of 2" in run.report
    assert "raised at" in run.report


def test_examples_count_generated_examples_not_shrink_attempts() -> None:
    # Shrinking the two failures runs many more test cases than were generated to find them.
    run = run_property(TwoBugs, hypothesis_settings=QUICK)
    assert 0 < run.examples <= 200
    passing = run_property(HypervisorMachine, "ci")
    assert passing.passed
    assert passing.examples == 30


def test_a_replayed_failure_fails_again_and_a_fixed_one_passes() -> None:
    run = run_property(TwoBugs, hypothesis_settings=QUICK)
    for failure in run.failures:
        again = run_property(TwoBugs, replay=failure.blob)
        assert [f.error for f in again.failures] == [failure.error]
        assert again.failures[0].steps == failure.steps

    class Fixed(TwoBugs):
        def grow_b(self, x: int) -> None:
            self.b += x

    fixed = run_property(Fixed, replay=next(f.blob for f in run.failures if "ValueError" in f.error))
    assert fixed.passed


class FailsAfter30Steps(RuleBasedStateMachine):
    """Fails only in a run longer than the ci profile's 25 steps."""

    def __init__(self) -> None:
        super().__init__()
        self.steps = 0

    @rule()
    def step(self) -> None:
        self.steps += 1
        assert self.steps <= 30, f"step {self.steps}"


def test_a_failure_replays_only_under_a_profile_as_long_as_the_one_that_found_it() -> None:
    """A replay under a profile of fewer steps cuts the example short and passes: why replay
    files record their profile, and `vframework check --replay` runs under it."""
    [failure] = run_property(FailsAfter30Steps, "thorough", shrink_seconds=5).failures
    assert failure.blob
    assert run_property(FailsAfter30Steps, "ci", replay=failure.blob).passed
    again = run_property(FailsAfter30Steps, "thorough", replay=failure.blob)
    assert [f.error for f in again.failures] == [failure.error]


class NeverRequeue(FifoScheduler):
    name = "kit-never-requeue"
    slice_ns = 1_000_000

    def charge(self, vcpu: Any, ran_ns: int, now: int, runnable: bool) -> None:
        pass


@pytest.fixture
def never_requeue(make_dist: Any) -> None:
    make_dist(
        "acme-never-requeue",
        """\
        from vframework import hookimpl
        from vframework.testing.doubles import FifoScheduler

        class NeverRequeue(FifoScheduler):
            name = "never-requeue"
            slice_ns = 1_000_000

            def charge(self, vcpu, ran_ns, now, runnable):
                pass

        @hookimpl
        def register_schedulers():
            return [NeverRequeue]
        """,
    )


def test_check_saves_a_replay_file_that_reruns_the_failure(
    never_requeue: None, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    output = cli(["check", "never-requeue", "--profile", "ci", "--shrink-seconds", "5"], code=1)
    text = flat(output)
    assert "never-requeue / work conservation failed" in text
    assert "not applicable" in text  # fairness, caps, accounting: the double declares none of them
    files = sorted((tmp_path / ".vframework-check").glob("*.json"))
    assert files, output
    wc = next(f for f in files if "work-conservation" in f.name)
    data = json.loads(wc.read_text())
    assert (data["component"], data["property"], data["profile"]) == ("never-requeue", "work conservation", "ci")
    assert f"vframework check never-requeue --replay {wc.relative_to(tmp_path)}" in text
    replayed = flat(cli(["check", "--replay", str(wc)], code=1))
    assert "conformance (replay, ci profile)" in replayed  # under the profile that found it
    assert "work conservation" in replayed
    assert data["error"].split(" (")[0] in replayed
    assert "liveness" not in replayed  # only the replayed property runs


def test_a_bad_replay_file_is_refused(cli: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "not a replay file" in cli(["check", "--replay", str(bad)], code=2)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "vframework-check-replay/1", "component": "fair"}))
    assert "malformed replay file" in cli(["check", "--replay", str(other)], code=2)
    old = tmp_path / "old.json"
    fields = dict.fromkeys(("component", "kind", "property", "arch", "example", "error"), "x")
    old.write_text(json.dumps({"format": "vframework-check-replay/1", **fields, "hypothesis": "0.1", "steps": []}))
    with pytest.raises(ReplayError, match=r"Hypothesis 0\.1"):
        load_replay(old)


def test_not_applicable_is_never_a_pass_and_strict_fails_a_component_with_no_property(cli: Any) -> None:
    output = cli(["check", "hardware-assisted", "fair", "--arch", "classic", "--profile", "ci", "--strict"], 1)
    cells = re.sub(r"[│\s]+", " ", output)  # a table cell's words, wherever rich wrapped them
    assert "not applicable:" in cells, output
    assert "runs only on" in cells
    assert "no property applies to hardware-assisted" in output
    assert "FAIL" not in output, output  # whole output: the failing property and its replay command


def test_ctrl_c_stops_a_check_with_exit_130(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: object, **kwargs: object) -> object:
        raise KeyboardInterrupt

    monkeypatch.setattr(kit, "run_check", interrupted)
    result = cli.invoke(["check", "fair"])
    assert result.exit_code == 130
    assert "interrupted: 0 of" in result.output
    assert "Traceback" not in result.output


def test_a_declared_limitation_is_reported_as_such() -> None:
    class Declared(NeverRequeue):
        name = "kit-declared"
        known_limitations: ClassVar[dict[str, str]] = {"work conservation": "forgets preempted vCPUs (on purpose)"}

    target = kit.Target(Declared.name, "scheduler", Declared)
    [check] = [c for c in kit.plan([target]) if c.label == "work conservation"]
    outcome = kit.run_check(check, "ci", shrink_seconds=1)
    assert outcome.status == kit.Status.KNOWN
    assert outcome.reason == "forgets preempted vCPUs (on purpose)"
    assert outcome.passed


_SPANS = st.lists(st.tuples(st.integers(0, 40), st.integers(0, 10)), max_size=8)


@given(_SPANS, _SPANS, st.integers(41, 90), st.data())
def test_window_extremes_match_a_brute_force_scan(a: list[Any], b: list[Any], hi: int, data: Any) -> None:
    # Two vCPUs' runs (each vCPU's own runs do not overlap; the two may).
    def runs(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
        out, t = [], 0
        for gap, length in spans:
            start = min(t + gap, hi)
            out.append((start, min(start + length, hi)))
            t = start + length
        return out

    intervals = runs(a) + runs(b) or [(0, 0)]
    window = data.draw(st.integers(1, hi))

    def covered(t: int) -> int:
        return sum(max(0, min(e, t + window) - max(s, t)) for s, e in intervals)

    values = [covered(t) for t in range(hi - window + 1)]
    most, most_at, least, least_at = window_extremes(intervals, 0, hi, window)
    assert (most, least) == (max(values), min(values))
    assert covered(most_at) == most
    assert covered(least_at) == least


def test_the_isolation_invariant_reports_a_garbage_frame_number_instead_of_crashing() -> None:
    vm = VM(0, "vm0", 1, 4)
    vm.p2m[:] = -1
    vm.p2m[2] = 99  # what a broken mode might write
    with pytest.raises(AssertionError, match=r"PPN 2 to 99, which is no machine frame \(the host has 8"):
        assert_owns_its_frames(MachineMemory(8), vm, "vm0")


def test_a_replayed_known_limitation_is_said_to_still_happen(
    never_requeue: None, make_dist: Any, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure replayed against a component that declares it is not reported as fixed."""
    make_dist(
        "acme-never-requeue-declared",
        """\
        from vframework import hookimpl
        from vframework.testing.doubles import FifoScheduler

        class Declared(FifoScheduler):
            name = "never-requeue-declared"
            slice_ns = 1_000_000
            known_limitations = {"work conservation": "never requeues a vCPU"}

            def charge(self, vcpu, ran_ns, now, runnable):
                pass

        @hookimpl
        def register_schedulers():
            return [Declared]
        """,
    )
    monkeypatch.chdir(tmp_path)
    cli(["check", "never-requeue", "--profile", "ci", "--shrink-seconds", "5"], code=1)
    wc = next(f for f in sorted((tmp_path / ".vframework-check").glob("*.json")) if "work-conservation" in f.name)
    data = json.loads(wc.read_text())
    data["component"] = "never-requeue-declared"
    wc.write_text(json.dumps(data))
    replayed = flat(cli(["check", "--replay", str(wc)]))
    assert "known limitation: never requeues a vCPU" in replayed
    assert "the recorded failure still happens: never-requeue-declared declares it a known limitation" in replayed
    assert "no longer happens" not in replayed
