"""Running one property: Hypothesis drives the state machine, and what it finds is turned into
something a plugin author can read and rerun.

* every distinct failure is kept, each with its own minimal rule sequence (Hypothesis reports
  several as one exception group);
* shrinking stops after a time budget per property; what was found by then is shown;
* each failure carries a replay token (Hypothesis's ``@reproduce_failure`` blob) that
  :func:`run_property` takes back to rerun exactly that example;
* "examples" counts generated examples, not shrink attempts.
"""

from __future__ import annotations

import contextlib
import io
import re
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
from hypothesis import Phase, reporting, reproduce_failure, settings
from hypothesis.errors import DidNotReproduce
from hypothesis.internal.conjecture import engine as _engine
from hypothesis.stateful import INVARIANT_MARKER, RuleBasedStateMachine, get_state_machine_test
from hypothesis.statistics import collector

from vframework.testing.profiles import settings_for

__all__ = ["DEFAULT_SHRINK_SECONDS", "Failure", "PropertyRun", "run_property"]

#: Seconds Hypothesis may spend shrinking the failures of one property (its own cap is 300).
DEFAULT_SHRINK_SECONDS = 20.0

_BLOB = re.compile(r"@reproduce_failure\('([^']+)', b'([^']*)'\)")
_HYPOTHESIS_FILES = (str(Path(hypothesis.__file__).parent), "/pluggy/", "/contextlib.py")


@dataclass
class Failure:
    """One distinct failure: what went wrong, where, and the minimal steps that show it."""

    error: str
    #: The rule calls of the minimal example, in order (invariant checks left out).
    steps: list[str]
    #: Where the exception was raised: ``file:line in function`` (outside Hypothesis).
    where: str = ""
    #: Hypothesis's encoding of the example, for :func:`run_property`'s ``replay``.
    blob: str | None = None

    def text(self) -> str:
        lines = [*(f"  {s}" for s in self.steps)] or ["  (no step: the machine's start already fails)"]
        where = f"\n  raised at {self.where}" if self.where else ""
        return "\n".join(lines) + f"\n{self.error}{where}"


@dataclass
class PropertyRun:
    """What running one property gave."""

    #: Examples generated (shrink attempts not counted).
    examples: int
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    #: Shrinking hit its time budget: the examples shown are the smallest found by then.
    shrink_stopped: bool = False

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def report(self) -> str | None:
        """Every failure with its steps, or None when the property held."""
        if self.passed:
            return None
        parts = []
        for i, failure in enumerate(self.failures, 1):
            title = f"failure {i} of {len(self.failures)}" if len(self.failures) > 1 else "failure"
            parts.append(f"{title}; minimal steps:\n{failure.text()}")
        if self.shrink_stopped:
            parts.append("(shrinking stopped at its time budget: these are the smallest examples found by then)")
        return "\n\n".join(parts)


@contextlib.contextmanager
def _shrink_budget(seconds: float) -> Iterator[None]:
    # Hypothesis reads this module constant when shrinking starts; there is no setting for it.
    saved = _engine.MAX_SHRINKING_SECONDS
    _engine.MAX_SHRINKING_SECONDS = seconds  # type: ignore[assignment]
    try:
        yield
    finally:
        _engine.MAX_SHRINKING_SECONDS = saved


def _invariant_names(machine: type[RuleBasedStateMachine]) -> set[str]:
    return {n for n in dir(machine) if getattr(getattr(machine, n, None), INVARIANT_MARKER, None) is not None}


def _steps(lines: list[str], invariants: set[str]) -> list[str]:
    steps = []
    for raw in lines:
        line = raw.strip()
        if not line.startswith("state.") or line == "state.teardown()":
            continue
        name = line[len("state.") :].split("(", 1)[0]
        if name in invariants and line.endswith("()"):
            continue
        steps.append(line)
    return steps


def _where(exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(_HYPOTHESIS_FILES)]
    if not frames:
        return ""
    last = frames[-1]
    return f"{last.filename}:{last.lineno} in {last.name}"


def _failure(exc: BaseException, reported: list[str], invariants: set[str]) -> Failure:
    notes = [str(n) for n in getattr(exc, "__notes__", [])]
    blob = next((m.group(2) for n in notes if (m := _BLOB.search(n))), None)
    lines = [line for n in notes for line in n.splitlines()] or reported
    message = str(exc)
    error = message if isinstance(exc, AssertionError) and message else f"{type(exc).__name__}: {message}"
    return Failure(error, _steps(lines, invariants), _where(exc), blob)


def run_property(
    machine: type[RuleBasedStateMachine],
    profile: str = "default",
    *,
    shrink_seconds: float = DEFAULT_SHRINK_SECONDS,
    replay: str | None = None,
    hypothesis_settings: settings | None = None,
    examples: float = 1.0,
) -> PropertyRun:
    """Run one state machine under a profile, with ``examples`` times its examples; ``replay`` (a
    failure's ``blob``) reruns exactly that example instead of searching. ``hypothesis_settings``
    replaces the profile's."""
    count = [0]

    class Counted(machine):  # type: ignore[valid-type, misc]
        def __init__(self) -> None:
            count[0] += 1
            super().__init__()

    Counted.__name__ = machine.__name__
    Counted.__qualname__ = machine.__qualname__
    base = hypothesis_settings or settings_for(profile)
    if examples != 1.0:
        base = settings(base, max_examples=max(1, round(base.max_examples * examples)))
    phases = [p for p in base.phases if p is not Phase.explain]  # it points at lines of the kit, not the bug
    test = get_state_machine_test(
        Counted, settings=settings(base, phases=phases, print_blob=True, report_multiple_bugs=True)
    )
    if replay is not None:
        test = reproduce_failure(hypothesis.__version__, replay.encode())(test)
    statistics: list[dict[str, Any]] = []
    reported: list[str] = []
    buf = io.StringIO()
    failures: list[Failure] = []
    start = time.perf_counter()
    with (
        _shrink_budget(shrink_seconds),
        collector.with_value(statistics.append),  # type: ignore[arg-type]  # typed for its default, None
        reporting.with_reporter(lambda text: print(text, file=buf)),
    ):
        try:
            test()
        except (KeyboardInterrupt, SystemExit):
            raise
        except DidNotReproduce:
            pass  # a replayed example that no longer fails: the property holds for it
        except BaseException as exc:  # a failed property (or several, as a group)
            reported = buf.getvalue().splitlines()
            invariants = _invariant_names(machine)
            group = exc.exceptions if isinstance(exc, BaseExceptionGroup) else (exc,)
            failures = [_failure(e, reported, invariants) for e in group]
    stats = statistics[-1] if statistics else {}
    # Examples that ran to the end or failed; those Hypothesis rejected or cut short are not counted.
    generated = sum(
        case["status"] in ("valid", "interesting")
        for p in ("explicit", "reuse", "generate")
        for case in stats.get(f"{p}-phase", {}).get("test-cases", ())
    )
    return PropertyRun(
        examples=generated if stats else count[0],
        failures=failures,
        seconds=time.perf_counter() - start,
        shrink_stopped=stats.get("stopped-because") == "shrinking was very slow",
    )
