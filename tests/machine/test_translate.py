"""Block translation does exactly what the interpreter does, and the monitor uses it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import Phase, settings
from hypothesis.stateful import run_state_machine_as_test

import vframework.machine.translate as translate_module
from vframework.api.manager import PluginManager
from vframework.machine.cpu import GuestCPU, execute
from vframework.machine.isa import Block, Op
from vframework.machine.translate import TranslationCache, translate
from vframework.run.scenario import load_default_scenario
from vframework.run.simulation import Simulation
from vframework.testing import TranslationMachine
from vframework.testing.translate import RecordingHandler


class TestTranslationMachine(TranslationMachine.TestCase):  # type: ignore[name-defined, misc]
    pass


def test_the_property_catches_a_mistranslated_instruction(monkeypatch: pytest.MonkeyPatch) -> None:
    # SUB's operands the wrong way round.
    monkeypatch.setitem(translate_module._ARITHMETIC, Op.SUB, "({y} - {x}) & 4294967295")
    quick = settings(max_examples=300, deadline=None, phases=[Phase.generate], database=None, derandomize=True)
    with pytest.raises(AssertionError):
        run_state_machine_as_test(TranslationMachine, settings=quick)


def test_a_block_is_interpreted_first_and_translated_from_its_second_run() -> None:
    cache = TranslationCache()
    block = Block("b", ((Op.MOVI, 1, 5), (Op.ADD, 2, 1)))
    actions = cache.intern([0] * (max(Op) + 1))
    assert cache.lookup(block, actions) is None
    translated = cache.lookup(block, actions)
    assert translated is not None
    assert cache.lookup(block, actions) is translated
    # An equal table from elsewhere is the same table: VMs under one mode share translations.
    assert cache.intern([0] * (max(Op) + 1)) is actions


def test_translation_returns_what_the_interpreter_returns() -> None:
    block = Block("b", ((Op.MOVI, 1, 7), (Op.MOVI, 2, 0), (Op.DIV, 1, 2), (Op.CLI, 0, 0), (Op.STORE, 9, 1)))
    actions = [0] * (max(Op) + 1)
    actions[Op.CLI] = 2  # TRAP
    a, b = GuestCPU(), GuestCPU()
    ha, hb = RecordingHandler(), RecordingHandler()
    assert execute(a, block, actions, ha, None) == translate(block, actions)(b, hb, None)
    assert a.visible() == b.visible()
    assert ha.calls == hb.calls


def _run(monkeypatch: pytest.MonkeyPatch, translated: bool) -> dict[str, Any]:
    if not translated:
        monkeypatch.setattr(TranslationCache, "lookup", lambda self, block, actions: None)
    plugins = PluginManager()
    scenario = load_default_scenario(plugins, ["duration=50ms", "vm[1].mode=full", "vm[2].mode=paravirtual"])
    summary = Simulation(scenario, plugins).run()
    monkeypatch.undo()
    return summary


def test_a_run_gives_the_same_results_with_and_without_translation(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _run(monkeypatch, True) == _run(monkeypatch, False)


def test_an_interrupt_pending_before_a_run_of_quiet_instructions_arrives_after_the_first() -> None:
    # The interpreter checks after each instruction: the interrupt lands after MOVI 1, before
    # MOVI 2 (the handler records the registers it sees). The translation must hand over to
    # the interpreter at that point, not run the whole quiet run first.
    block = Block("b", ((Op.MOVI, 1, 11), (Op.MOVI, 2, 22), (Op.ADD, 1, 2)))
    actions = [0] * (max(Op) + 1)
    a, b = GuestCPU(), GuestCPU()
    for ctx in (a, b):
        ctx.flags |= 0x200  # IF
        ctx.pending.append(4)
    ha, hb = RecordingHandler(), RecordingHandler()
    assert execute(a, block, actions, ha, None) == translate(block, actions)(b, hb, None)
    assert ha.calls == hb.calls
    assert ha.calls[0][2][1:3] == (11, 0)


@pytest.mark.parametrize(
    "mutation",
    [
        ("_FOLD", Op.ADD, lambda x, y: (x + y + 1) & 0xFFFF_FFFF),  # a constant folded wrong
        ("_ARITHMETIC", Op.XOR, "{x} | {y}"),  # an operation computed wrong on a variable
    ],
)
def test_the_property_catches_a_wrong_run_optimization(monkeypatch: pytest.MonkeyPatch, mutation: Any) -> None:
    table, op, wrong = mutation
    monkeypatch.setitem(getattr(translate_module, table), op, wrong)
    quick = settings(max_examples=300, deadline=None, phases=[Phase.generate], database=None, derandomize=True)
    with pytest.raises(AssertionError):
        run_state_machine_as_test(TranslationMachine, settings=quick)


def test_a_run_keeps_what_is_read_and_drops_what_is_overwritten() -> None:
    """The run optimizer: a store overwritten before any load is never made, a value known at
    translation is folded, and what the run reads first is loaded once."""
    from vframework.machine.translate import _Run  # noqa: PLC0415

    run = [(Op.MOVI, 1, 5), (Op.ADD, 2, 1), (Op.STORE, 9, 2), (Op.MOVI, 3, 1), (Op.STORE, 9, 3), (Op.LOAD, 4, 9)]
    lines = _Run(run).inline()
    assert lines.count("r2 = regs[2]") == 1
    assert "r2 = (r2 + 5) & 4294967295" in lines
    assert not any(line.startswith("m0 = r2") for line in lines), "the first store to 9 is dead"
    assert lines[-1] == "mem[9] = 1"
    cpu_a, cpu_b = GuestCPU(), GuestCPU()
    cpu_a.regs[2] = cpu_b.regs[2] = 40
    block = Block("run", tuple(run))
    actions = [0] * (max(Op) + 1)
    assert execute(cpu_a, block, actions, RecordingHandler(), None) == translate(block, actions)(
        cpu_b, RecordingHandler(), None
    )
    assert cpu_a.visible() == cpu_b.visible()


@pytest.mark.parametrize("kept", ["registers", "nothing"])
def test_the_property_catches_a_summary_replayed_for_other_inputs(monkeypatch: pytest.MonkeyPatch, kept: str) -> None:
    """A summary looked up by part of what the run reads (its registers but not the words it
    loads, or by nothing) is replayed where the run would compute something else."""
    original = translate_module._Run.memoized

    def memoized(self: Any, k: int) -> tuple[list[str], list[str]]:
        lines, function = original(self, k)
        short = len(self.regs_in) if kept == "registers" else 0
        lines.insert(1, f"short = key[:{short}]")
        lines = [line.replace(f"memo{k}.get(key)", f"memo{k}.get(short)") for line in lines]
        return [line.replace(f"memo{k}[key]", f"memo{k}[short]") for line in lines], function

    monkeypatch.setattr(translate_module._Run, "memoized", memoized)
    quick = settings(max_examples=300, deadline=None, phases=[Phase.generate], database=None, derandomize=True)
    with pytest.raises(AssertionError):
        run_state_machine_as_test(TranslationMachine, settings=quick)


def test_a_long_run_is_summarized_once_and_replayed() -> None:
    """The context switch's runs read three registers: from the same registers the second
    execution replays the first one's summary, and the guest ends where the interpreter does."""
    from vframework.guest.kernel import GuestKernel  # noqa: PLC0415

    block = GuestKernel.build().context_switch
    actions = [0] * (max(Op) + 1)
    fn = translate(block, actions)
    memos = {k: v for k, v in fn.__globals__.items() if k.startswith("memo")}
    assert len(memos) == 2, "both 1,200-instruction runs are summarized"
    a, b = GuestCPU(), GuestCPU()
    for _ in range(3):
        a.regs[:] = b.regs[:] = [3, 1, 4, 1, 5, 9, 2, 6][: len(a.regs)] + a.regs[8:]
        assert execute(a, block, actions, RecordingHandler(), None) == fn(b, RecordingHandler(), None)
        assert a.visible() == b.visible()
    assert all(len(memo) == 1 for memo in memos.values()), "one summary per run, replayed twice"
