"""The kit catches each component of tests/mutants.py (one realistic bug each) with the property
the mutant names, on a fixed seed (the rates over fresh seeds are measured by tests/detection.py)."""

from __future__ import annotations

import pytest
from hypothesis import Phase, settings
from mutants import MUTANTS, Mutant

from vframework.testing.kit import Target, plan
from vframework.testing.runner import run_property


def _machine(m: Mutant) -> type:
    [check] = [c for c in plan([Target(m.cls.name, m.cls.kind, m.cls)]) if c.prop and c.prop.name == m.prop]
    assert check.machine is not None, f"{m.prop!r} does not apply to {m.cls.name}: {check.skip}"
    return check.machine


@pytest.mark.parametrize("m", MUTANTS, ids=[m.cls.name for m in MUTANTS])
def test_the_kit_catches_the_mutant(m: Mutant) -> None:
    found = settings(
        max_examples=100,
        stateful_step_count=25,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        derandomize=True,
    )
    run = run_property(_machine(m), hypothesis_settings=found)
    assert not run.passed, f"the kit let {m.cls.name} ({m.bug}) pass {m.prop!r}"
    for failure in run.failures:
        assert "Traceback" not in failure.error
