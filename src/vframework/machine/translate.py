"""Block translation: a guest block compiled, once, into a Python function that does exactly
what the interpreter (:func:`vframework.machine.cpu.execute`) does, without its per-instruction
dispatch.

This is what a binary translator's translation cache is to an interpreter: the block's
instructions and the mode's action for each opcode are fixed, so the choice of what to do
for each instruction is made once, at translation, and the translated code only does it.
Registers, immediates and ports are folded in as constants; instructions that leave direct
execution still call the mode's handler, in the same order, with the same arguments; the
check for a deliverable interrupt still follows every instruction. The result, the guest
state and every counter are the interpreter's, which the conformance kit checks
(:class:`vframework.testing.translate.TranslationMachine`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from vframework.machine.cpu import Action, deprivileged, emulate, execute
from vframework.machine.isa import IF_FLAG, ORDINARY, Block, Op

if TYPE_CHECKING:
    from vframework.machine.cpu import GuestCPU, Handler

__all__ = ["Translated", "TranslationCache", "translate"]

_MASK = 0xFFFF_FFFF
#: Instructions that, run directly, can neither fault nor touch IF or the pending interrupts.
_QUIET = ORDINARY - {Op.DIV}

#: A translated block: ``fn(ctx, handler, extra) -> (direct, cycles)``, as ``execute`` returns.
Translated = Callable[["GuestCPU", "Handler", "list[int] | None"], tuple[int, int]]


def _direct(op: int, a: int, b: int) -> list[str]:
    """Source lines for one directly executed instruction (``direct`` is counted statically)."""
    if op == Op.NOP:
        return []
    if op == Op.MOVI:
        return [f"regs[{a}] = {b & _MASK}"]
    if op == Op.ADD:
        return [f"regs[{a}] = (regs[{a}] + regs[{b}]) & {_MASK}"]
    if op == Op.SUB:
        return [f"regs[{a}] = (regs[{a}] - regs[{b}]) & {_MASK}"]
    if op == Op.XOR:
        return [f"regs[{a}] ^= regs[{b}]"]
    if op == Op.DIV:
        return [
            f"if regs[{b}] == 0:",
            f"    cycles += special(ctx, FAULT, {op}, {a}, {b})",
            "    faults += 1",
            "else:",
            f"    regs[{a}] //= regs[{b}]",
        ]
    if op == Op.LOAD:
        return [f"regs[{a}] = mem.get({b}, 0)"]
    if op == Op.STORE:
        return [f"mem[{a}] = regs[{b}]"]
    if op == Op.CALL:
        return ["if extra is not None:", f"    cycles += extra[{op}]"]
    # A privileged instruction the hardware runs directly (bare metal, a VT guest's CLI...).
    return [f"emulate(ctx, {op}, {a}, {b})", "if extra is not None:", f"    cycles += extra[{op}]"]


def translate(block: Block, actions: list[int]) -> Translated:
    """Compile ``block`` under ``actions`` (the mode's action per opcode)."""
    body: list[str] = []
    direct = 0
    in_run = False
    for index, (op, a, b) in enumerate(block.code):
        action = actions[op]
        if action == Action.DIRECT and op in _QUIET:
            # A quiet instruction changes neither IF nor the pending interrupts, so the
            # interpreter's check after it gives what the check before it gives: one guard at
            # the start of a run of them stands for all. When it finds an interrupt to
            # deliver, the interpreter takes over from this instruction.
            if not in_run:
                body.append(f"if pending and ctx.flags & {IF_FLAG}:")
                body.append(f"    d, c = execute(ctx, block, actions, handler, extra, {index})")
                body.append(f"    return {direct} - faults + d, cycles + c")
                in_run = True
            direct += 1
            body.extend(_direct(op, a, b))
            continue
        in_run = False
        if action == Action.DIRECT:
            direct += 1
            body.extend(_direct(op, a, b))
        elif action == Action.DEPRIVILEGED:
            direct += 1
            body.append(f"deprivileged(ctx, {op}, {a}, {b})")
        else:
            body.append(f"cycles += special(ctx, {action}, {op}, {a}, {b})")
        body.append(f"if pending and ctx.flags & {IF_FLAG}:")
        body.append("    cycles += interrupt(ctx)")
    lines = [
        "def translated(ctx, handler, extra):",
        "    regs = ctx.regs",
        "    mem = ctx.mem",
        "    pending = ctx.pending",
        "    special = handler.special",
        "    interrupt = handler.interrupt",
        "    cycles = 0",
        "    faults = 0",
        *(f"    {line}" for line in body),
        f"    return {direct} - faults, cycles",
    ]
    namespace: dict[str, object] = {
        "emulate": emulate,
        "deprivileged": deprivileged,
        "execute": execute,
        "FAULT": Action.FAULT,
        "block": block,
        "actions": actions,
    }
    exec(compile("\n".join(lines), f"<translated {block.name}>", "exec"), namespace)
    return cast("Translated", namespace["translated"])


class TranslationCache:
    """Translations of the blocks a host runs, made on a block's second execution (a block run
    once is cheaper to interpret than to translate). One cache serves every VM: VMs under the
    same mode share their action tables (:meth:`intern`) and so their translations. Blocks
    are kept alive by the cache, so their ids stay theirs; the cache holds at most
    ``capacity`` blocks and starts afresh when full."""

    __slots__ = ("_seen", "_tables", "_translated", "capacity")

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._seen: dict[int, Block] = {}
        self._translated: dict[tuple[int, int], tuple[Block, Translated]] = {}
        self._tables: dict[tuple[int, ...], list[int]] = {}

    def intern(self, actions: list[int]) -> list[int]:
        """The one action table equal to ``actions`` that this cache keys translations by (do
        not change it afterwards)."""
        return self._tables.setdefault(tuple(actions), actions)

    def lookup(self, block: Block, actions: list[int]) -> Translated | None:
        """The translation of ``block`` under ``actions``, or None the first time it is seen."""
        key = (id(block), id(actions))
        hit = self._translated.get(key)
        if hit is not None and hit[0] is block:
            return hit[1]
        if self._seen.get(key[0]) is not block:
            if len(self._seen) >= self.capacity:
                self._seen.clear()
            self._seen[key[0]] = block
            return None
        if len(self._translated) >= self.capacity:
            self._translated.clear()
        fn = translate(block, actions)
        self._translated[key] = (block, fn)
        return fn
