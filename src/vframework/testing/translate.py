"""State machine for block translation: a translated block does exactly what the interpreter does.

Two guest CPUs start equal; every step runs one random block, under random actions (so every
way an instruction can reach the hypervisor is exercised), on one CPU by interpretation and on
the other by its translation, each with its own recording handler. After every step the
results (direct instructions, cycles), the guest-visible state and the handlers' call logs
must be equal. The handler double emulates what it is asked to, raises interrupts from device
writes and charges cycles that depend on the registers, so any reordering, skipped call or
stale register shows. Runs are also translated as summaries (computed once per input, then
replayed): a rule replays one translation from repeated and changed registers, so a summary
replayed for inputs other than its own shows.
"""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from vframework.machine.cpu import Action, GuestCPU, emulate, execute
from vframework.machine.isa import NREGS, SENSITIVE_UNPRIVILEGED_X86, Block, Op
from vframework.machine.translate import MEMO_MIN, TranslationCache, translate

__all__ = ["RecordingHandler", "TranslationMachine"]

_OPS = sorted(int(op) for op in Op)
_ACTIONS = [int(a) for a in Action]
#: Direct-execution costs of privileged instructions (any distinct values will do).
_EXTRA = [(op * 7) % 13 for op in range(max(_OPS) + 1)]


class RecordingHandler:
    """A mode double: records every call, changes the guest's state deterministically."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def special(self, ctx: GuestCPU, action: int, op: int, a: int, b: int) -> int:
        self.calls.append(("special", int(action), op, a, b, tuple(ctx.regs), ctx.flags))
        # An ordinary instruction routed to the hypervisor has nothing to emulate.
        with contextlib.suppress(ValueError):
            emulate(ctx, op, a, b)
        if op == Op.OUT:
            ctx.pending.append(b)
        return 1 + (ctx.regs[a % NREGS] % 97) + int(action)

    def interrupt(self, ctx: GuestCPU) -> int:
        vector = ctx.pending.pop(0)
        self.calls.append(("interrupt", vector, tuple(ctx.regs), ctx.flags))
        ctx.log.append(("irq", vector))
        return 3 + vector % 5


def _instruction(op: int) -> st.SearchStrategy[tuple[int, int, int]]:
    reg = st.integers(0, NREGS - 1)
    if op == Op.MOVI:
        return st.tuples(st.just(op), reg, st.integers(0, 1 << 34))
    return st.tuples(st.just(op), reg, reg)


instructions = st.sampled_from(_OPS).flatmap(_instruction)
blocks = st.builds(
    lambda code, kernel: Block("random", tuple(code), kernel), st.lists(instructions, max_size=24), st.booleans()
)


#: What kernel code is mostly made of: runs of ordinary instructions over a few registers and
#: words, so that values are folded, overwritten before use and loaded back after a store.
_RUN_OPS = (Op.NOP, Op.MOVI, Op.ADD, Op.SUB, Op.XOR, Op.LOAD, Op.STORE, Op.CALL)
_few = st.integers(0, 2)
quiet_runs = st.lists(
    st.sampled_from(_RUN_OPS).flatmap(
        lambda op: st.tuples(st.just(int(op)), _few, st.integers(0, 1 << 33) if op == Op.MOVI else _few)
    ),
    min_size=1,
    max_size=40,
).map(lambda code: Block("run", tuple(code), True))


#: Every ordinary instruction of a run directly executed: the whole block is one run.
_ALL_DIRECT = [int(Action.DIRECT) if op in _RUN_OPS else int(Action.FAULT) for op in range(len(_EXTRA))]


def _allowed(op: int) -> list[int]:
    """The actions a mode may give ``op``: running directly needs semantics the CPU has (not
    SYSCALL or HYPERCALL), and only sensitive-but-unprivileged instructions run deprivileged."""
    allowed = [a for a in _ACTIONS if a not in (Action.DIRECT, Action.DEPRIVILEGED)]
    if op not in (Op.SYSCALL, Op.HYPERCALL):
        allowed.append(int(Action.DIRECT))
    if op in SENSITIVE_UNPRIVILEGED_X86:
        allowed.append(int(Action.DEPRIVILEGED))
    return sorted(allowed)


action_tables = st.tuples(
    *(st.sampled_from(_allowed(op)) if op in _OPS else st.just(int(Action.FAULT)) for op in range(len(_EXTRA)))
).map(list)


class TranslationMachine(RuleBasedStateMachine):
    """Translation equals interpretation, step after step, from any state."""

    def __init__(self) -> None:
        super().__init__()
        self.interpreted, self.translated = GuestCPU(), GuestCPU()
        self.by_interpreter, self.by_translation = RecordingHandler(), RecordingHandler()
        self.cache = TranslationCache(capacity=8)

    @rule(regs=st.lists(st.integers(0, (1 << 32) - 1), min_size=NREGS, max_size=NREGS), flags=st.integers(0, 0xFFFF))
    def set_state(self, regs: list[int], flags: int) -> None:
        for ctx in (self.interpreted, self.translated):
            ctx.regs[:] = regs
            ctx.flags = flags | 0x2

    @rule(vector=st.integers(0, 64))
    def raise_interrupt(self, vector: int) -> None:
        for ctx in (self.interpreted, self.translated):
            ctx.pending.append(vector)

    @rule(block=blocks, actions=action_tables, with_extra=st.booleans(), memo_min=st.sampled_from([1, MEMO_MIN]))
    def run_block(self, block: Block, actions: list[int], with_extra: bool, memo_min: int = MEMO_MIN) -> None:
        extra = _EXTRA if with_extra else None
        want = execute(self.interpreted, block, actions, self.by_interpreter, extra)
        got = translate(block, actions, memo_min)(self.translated, self.by_translation, extra)
        assert got == want, f"{block.code} under {actions}: translation gave {got}, interpretation {want}"

    @rule(block=quiet_runs, with_extra=st.booleans(), memo_min=st.sampled_from([1, MEMO_MIN]))
    def run_quiet_block(self, block: Block, with_extra: bool, memo_min: int) -> None:
        # Every instruction runs directly: the whole block is one run, the translator's
        # optimized case.
        self.run_block(block, _ALL_DIRECT, with_extra, memo_min)

    @rule(block=quiet_runs, starts=st.lists(st.integers(0, 1), min_size=2, max_size=4), with_extra=st.booleans())
    def replay_summary(self, block: Block, starts: list[int], with_extra: bool) -> None:
        # One translation, its run summarized, run again and again from one of two register
        # states: a summary is replayed when what the run reads is what it read before, and
        # computed afresh when it is not (registers differ, or words the run stored since).
        extra = _EXTRA if with_extra else None
        fn = translate(block, _ALL_DIRECT, memo_min=1)
        states = [list(self.interpreted.regs), [(r + 1) & 0xFFFF_FFFF for r in self.interpreted.regs]]
        for start in starts:
            for ctx in (self.interpreted, self.translated):
                ctx.regs[:] = states[start]
            want = execute(self.interpreted, block, _ALL_DIRECT, self.by_interpreter, extra)
            got = fn(self.translated, self.by_translation, extra)
            assert got == want, f"{block.code} replayed: translation gave {got}, interpretation {want}"
            a, b = self.interpreted.visible(), self.translated.visible()
            assert a == b, f"{block.code} replayed: guest state differs: interpreted {a}, translated {b}"

    @rule(block=blocks, actions=action_tables)
    def run_through_cache(self, block: Block, actions: list[int]) -> None:
        # The cache interprets a block's first run and translates the next ones.
        for _ in range(2):
            want = execute(self.interpreted, block, actions, self.by_interpreter, _EXTRA)
            fn = self.cache.lookup(block, actions)
            got = (
                execute(self.translated, block, actions, self.by_translation, _EXTRA)
                if fn is None
                else fn(self.translated, self.by_translation, _EXTRA)
            )
            assert got == want, f"{block.code}: cached translation gave {got}, interpretation {want}"

    @invariant()
    def same_state(self) -> None:
        a, b = self.interpreted.visible(), self.translated.visible()
        assert a == b, f"guest state differs: interpreted {a}, translated {b}"
        assert self.by_interpreter.calls == self.by_translation.calls, "the handler saw different calls"
