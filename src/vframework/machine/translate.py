"""Block translation: a guest block compiled, once, into a Python function that does exactly
what the interpreter (:func:`vframework.machine.cpu.execute`) does, without its per-instruction
dispatch.

This is what a binary translator's translation cache is to an interpreter: the block's
instructions and the mode's action for each opcode are fixed, so the choice of what to do
for each instruction is made once, at translation, and the translated code only does it.
Registers, immediates and ports are folded in as constants; instructions that leave direct
execution still call the mode's handler, in the same order, with the same arguments; the
check for a deliverable interrupt still follows every instruction. A run of ordinary
instructions, which nothing can interrupt or observe part-way, is compiled as a unit: values in
local variables, constants folded, values overwritten before use never computed (a kernel's
bookkeeping code runs about five times faster so). A long run is also *summarized*: what it
leaves is a function of the few registers and words it reads first (a kernel's 1,200-instruction
bookkeeping run reads three registers), so its result is computed once per distinct input and
replayed afterwards. The result, the guest state and every counter are the interpreter's,
which the conformance kit checks (:class:`vframework.testing.translate.TranslationMachine`,
summaries replayed included).
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
#: Runs at least this long are summarized (:meth:`_Run.memoized`): shorter ones cost less to
#: compute than to look up.
MEMO_MIN = 64
#: Summaries kept per run; the memo starts afresh when full (values read need not repeat).
MEMO_ENTRIES = 64

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


#: Two-register arithmetic in a run: its source, and its value when both operands are known.
_ARITHMETIC: dict[int, str] = {
    Op.ADD: f"({{x}} + {{y}}) & {_MASK}",
    Op.SUB: f"({{x}} - {{y}}) & {_MASK}",
    Op.XOR: "{x} ^ {y}",
}
_FOLD: dict[int, Callable[[int, int], int]] = {
    Op.ADD: lambda x, y: (x + y) & _MASK,
    Op.SUB: lambda x, y: (x - y) & _MASK,
    Op.XOR: lambda x, y: x ^ y,
}


class _Run:
    """A run of quiet instructions, analysed: what it reads first, the code that computes what
    it leaves, and what it leaves. Registers and memory words live in local variables; constants
    are folded, and a value the run overwrites before anyone reads it is never computed."""

    def __init__(self, run: list[tuple[int, int, int]]) -> None:
        #: Leaf calls in the run: each charges ``extra[CALL]`` where direct execution has a cost.
        self.calls = sum(1 for op, _, _ in run if op == Op.CALL)
        regs_written = {a for op, a, _ in run if op in (Op.MOVI, Op.ADD, Op.SUB, Op.XOR, Op.LOAD)}
        stored = list(dict.fromkeys(a for op, a, _ in run if op == Op.STORE))
        # Liveness, backwards: what is written back at the end is live there.
        live: set[tuple[str, int]] = {("r", r) for r in regs_written} | {("m", m) for m in stored}
        keep = [True] * len(run)
        for i in range(len(run) - 1, -1, -1):
            op, a, b = run[i]
            if op in (Op.NOP, Op.CALL):
                continue
            target = ("m", a) if op == Op.STORE else ("r", a)
            if target not in live:
                keep[i] = False
                continue
            live.discard(target)
            if op in (Op.ADD, Op.SUB, Op.XOR):
                live |= {("r", a), ("r", b)}
            elif op == Op.LOAD:
                live.add(("m", b))
            elif op == Op.STORE:
                live.add(("r", b))
        #: Registers the run reads before writing them, and (name, address) of such words. A
        #: word may be read at the run's start: nothing stores to memory before its end.
        self.regs_in = sorted(r for kind, r in live if kind == "r")
        self.words_in: list[tuple[str, int]] = []
        value: dict[tuple[str, int], int | str] = {("r", r): f"r{r}" for r in self.regs_in}
        names: dict[int, str] = {}
        self.body: list[str] = []

        def word(addr: int) -> str:
            return names.setdefault(addr, f"m{len(names)}")

        def read(key: tuple[str, int]) -> int | str:
            if key not in value:  # a word the run reads before writing it
                self.words_in.append((word(key[1]), key[1]))
                value[key] = word(key[1])
            return value[key]

        def assign(key: tuple[str, int], expr: int | str) -> None:
            if isinstance(expr, int):
                value[key] = expr
                return
            name = f"r{key[1]}" if key[0] == "r" else word(key[1])
            self.body.append(f"{name} = {expr}")
            value[key] = name

        for (op, a, b), kept in zip(run, keep, strict=True):
            if not kept or op in (Op.NOP, Op.CALL):
                continue
            if op == Op.MOVI:
                assign(("r", a), b & _MASK)
            elif op == Op.LOAD:
                assign(("r", a), read(("m", b)))
            elif op == Op.STORE:
                assign(("m", a), read(("r", b)))
            else:
                x, y = read(("r", a)), read(("r", b))
                if isinstance(x, int) and isinstance(y, int):
                    assign(("r", a), _FOLD[op](x, y))
                else:
                    assign(("r", a), _ARITHMETIC[op].format(x=x, y=y))
        #: What the run leaves: registers (in order) and words (in the order of their first
        #: store, so a new word enters ``mem`` where the interpreter would put it).
        self.regs_out = [(r, value[("r", r)]) for r in sorted(regs_written)]
        self.words_out = [(m, value[("m", m)]) for m in stored]

    def charge(self) -> list[str]:
        # Nothing observes ``cycles`` inside a run: its calls' costs are added at once.
        if not self.calls:
            return []
        return ["if extra is not None:", f"    cycles += {self.calls} * extra[{int(Op.CALL)}]"]

    def inline(self) -> list[str]:
        """The run's code in the translated block itself."""
        lines = [f"r{r} = regs[{r}]" for r in self.regs_in]
        lines += [f"{name} = mem.get({addr}, 0)" for name, addr in self.words_in]
        lines += self.body
        lines += [f"regs[{r}] = {expr}" for r, expr in self.regs_out]
        lines += [f"mem[{m}] = {expr}" for m, expr in self.words_out]
        return lines + self.charge()

    def memoized(self, k: int) -> tuple[list[str], list[str]]:
        """The run as a pure function ``run{k}`` of what it reads first, and the block's lines
        that look its result up in ``memo{k}`` (keyed by those values) or compute and keep it,
        then write it back: a summary computed once and replayed, as a binary
        translator caches translations. A long kernel run reads two or three registers."""
        params = [f"r{r}" for r in self.regs_in] + [name for name, _ in self.words_in]
        regs = "".join(f"{expr}, " for _, expr in self.regs_out)
        words = ", ".join(f"{m}: {expr}" for m, expr in self.words_out)
        function = [
            f"def run{k}({', '.join(params)}):",
            *(f"    {line}" for line in self.body),
            f"    return ({regs}), {{{words}}}",
        ]
        key = [f"regs[{r}], " for r in self.regs_in] + [f"mem.get({addr}, 0), " for _, addr in self.words_in]
        lines = [
            f"key = ({''.join(key)})",
            f"hit = memo{k}.get(key)",
            "if hit is None:",
            f"    if len(memo{k}) >= {MEMO_ENTRIES}:",
            f"        memo{k}.clear()",
            f"    hit = memo{k}[key] = run{k}(*key)",
        ]
        if self.regs_out:
            lines.append(f"{''.join(f'regs[{r}], ' for r, _ in self.regs_out)}= hit[0]")
        if self.words_out:
            lines.append("mem.update(hit[1])")
        return lines + self.charge(), function


def translate(block: Block, actions: list[int], memo_min: int = MEMO_MIN) -> Translated:
    """Compile ``block`` under ``actions`` (the mode's action per opcode); runs of at least
    ``memo_min`` quiet instructions are summarized and replayed (:meth:`_Run.memoized`)."""
    body: list[str] = []
    functions: list[str] = []
    direct = 0
    run: list[tuple[int, int, int]] = []

    def end_run() -> None:
        if not run:
            return
        summary = _Run(run)
        if len(run) < memo_min:
            body.extend(summary.inline())
        else:
            lines, function = summary.memoized(len(functions))
            body.extend(lines)
            functions.append("\n".join(function))
        run.clear()

    for index, (op, a, b) in enumerate(block.code):
        action = actions[op]
        if action == Action.DIRECT and op in _QUIET:
            # A quiet instruction changes neither IF nor the pending interrupts, so the
            # interpreter's check after it gives what the check before it gives: one guard at
            # the start of a run of them stands for all. When it finds an interrupt to
            # deliver, the interpreter takes over from this instruction.
            if not run:
                body.append(f"if pending and ctx.flags & {IF_FLAG}:")
                body.append(f"    d, c = execute(ctx, block, actions, handler, extra, {index})")
                body.append(f"    return {direct} - faults + d, cycles + c")
            direct += 1
            run.append((op, a, b))
            continue
        end_run()
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
    end_run()
    lines = [
        *functions,
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
    namespace |= {f"memo{k}": {} for k in range(len(functions))}
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
