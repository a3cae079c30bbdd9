"""Guest CPU state and the instruction interpreter every mode shares.

A mode does not re-implement instructions: it classifies each opcode, once, into an
:class:`Action` for kernel code and one for user code. The interpreter then runs a block:
``DIRECT`` instructions execute natively on the guest's state; ``DEPRIVILEGED`` ones execute
natively but at CPL > 0, with x86's silent semantics (POPF keeps IF, PUSHF/SGDT/SIDT/SMSW read
the host's real registers); ``TRAP``, ``EXIT`` and ``CALLOUT`` reach the hypervisor, which
emulates the instruction against the guest's virtual state; ``FAULT`` raises an exception
into the guest; ``HYPERCALL`` calls the hypervisor explicitly.

The guest-visible state (:meth:`GuestCPU.visible`) is what the equivalence property compares.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Protocol

from vframework.machine.isa import IF_FLAG, NREGS, Block, Op

__all__ = [
    "BOOT_GDTR",
    "BOOT_IDTR",
    "BOOT_MSW",
    "EOI_PORT",
    "HOST_GDTR",
    "HOST_IDTR",
    "HOST_MSW",
    "Action",
    "GuestCPU",
    "Handler",
    "deprivileged",
    "emulate",
    "execute",
]

#: What the hypervisor's own descriptor tables and machine status word hold: a guest that
#: reads them with SGDT / SIDT / SMSW while deprivileged sees these instead of its own.
HOST_GDTR, HOST_IDTR, HOST_MSW = 0xFFC0_0000, 0xFFC0_1000, 0x8005_003B
#: The guest's values at boot.
BOOT_GDTR, BOOT_IDTR, BOOT_MSW = 0x0000_1000, 0x0000_2000, 0x8000_0011
#: The interrupt controller's end-of-interrupt port.
EOI_PORT = 0x20
_MASK = 0xFFFF_FFFF


class Action(IntEnum):
    """How one instruction reaches (or avoids) the hypervisor."""

    DIRECT = 0
    DEPRIVILEGED = 1
    TRAP = 2
    EXIT = 3
    CALLOUT = 4
    FAULT = 5
    HYPERCALL = 6


class GuestCPU:
    """One vCPU's state as its guest sees it (its *virtual* privileged registers included)."""

    __slots__ = (
        "cr3",
        "flags",
        "gdtr",
        "halts",
        "hcr",
        "idtr",
        "log",
        "mem",
        "msw",
        "pending",
        "ports",
        "regs",
        "tpr",
    )

    def __init__(self) -> None:
        self.regs = [0] * NREGS
        # Boot state: interrupts disabled until the kernel enables them.
        self.flags = 0x2
        self.cr3 = 0
        self.gdtr, self.idtr, self.msw = BOOT_GDTR, BOOT_IDTR, BOOT_MSW
        #: Task priority (%cr8): interrupts at or below it wait. The model's interrupts have no
        #: priorities, so it only records what the guest set.
        self.tpr = 0
        self.mem: dict[int, int] = {}
        self.ports: dict[int, int] = {}
        #: External interrupt vectors waiting for IF.
        self.pending: list[int] = []
        #: Guest-visible events in order: ("irq", vector), ("fault", name).
        self.log: list[tuple[str, int | str]] = []
        self.halts = 0
        #: The last hypercall's result code (para-virtual guests only; not guest-visible
        #: state of an unmodified guest, so not part of :meth:`visible`).
        self.hcr = 0

    @property
    def interrupts_enabled(self) -> bool:
        return bool(self.flags & IF_FLAG)

    def visible(
        self,
    ) -> tuple[
        tuple[int, ...],
        int,
        int,
        int,
        int,
        int,
        tuple[tuple[int, int], ...],
        tuple[tuple[int, int], ...],
        tuple[int, ...],
        tuple[tuple[str, int | str], ...],
        int,
        int,
    ]:
        """Everything the guest can observe, for comparing runs."""
        return (
            tuple(self.regs),
            self.flags,
            self.cr3,
            self.gdtr,
            self.idtr,
            self.msw,
            tuple(sorted(self.mem.items())),
            tuple(sorted(self.ports.items())),
            tuple(self.pending),
            tuple(self.log),
            self.halts,
            self.tpr,
        )


class Handler(Protocol):
    """What the interpreter needs from a mode for instructions that leave direct execution."""

    def special(self, ctx: GuestCPU, action: int, op: int, a: int, b: int) -> int: ...

    def interrupt(self, ctx: GuestCPU) -> int: ...


def emulate(ctx: GuestCPU, op: int, a: int, b: int) -> None:
    """The architected semantics of a sensitive or privileged instruction at CPL 0, applied to the
    guest's (virtual) state: what bare metal does, and what every correct emulation must do."""
    regs = ctx.regs
    if op == Op.CLI:
        ctx.flags &= ~IF_FLAG
    elif op == Op.STI:
        ctx.flags |= IF_FLAG
    elif op == Op.POPF:
        ctx.flags = (regs[a] & _MASK) | 0x2
    elif op == Op.PUSHF:
        regs[a] = ctx.flags
    elif op == Op.MOV_TO_CR3:
        ctx.cr3 = regs[a] & _MASK
    elif op == Op.MOV_FROM_CR3:
        regs[a] = ctx.cr3
    elif op == Op.LGDT:
        ctx.gdtr = regs[a] & _MASK
    elif op == Op.LIDT:
        ctx.idtr = regs[a] & _MASK
    elif op == Op.SGDT:
        regs[a] = ctx.gdtr
    elif op == Op.SIDT:
        regs[a] = ctx.idtr
    elif op == Op.SMSW:
        regs[a] = ctx.msw & 0xFFFF
    elif op == Op.IN:
        regs[a] = ctx.ports.get(b, 0)
    elif op == Op.OUT:
        ctx.ports[a] = regs[b] & _MASK
    elif op == Op.HLT:
        ctx.halts += 1
    elif op == Op.INVLPG:
        pass  # no guest-visible effect; the mode's TLB model (memory issue) counts it
    elif op == Op.MOV_TO_CR8:
        ctx.tpr = regs[a] & 0xF
    elif op == Op.CALL:
        pass  # a leaf subroutine: returns at once; a binary translator still has to map the return
    else:
        raise ValueError(f"{Op(op).name} is not a sensitive instruction")


def deprivileged(ctx: GuestCPU, op: int, a: int, b: int) -> None:
    """x86's behaviour for a sensitive-but-unprivileged instruction run at CPL > 0: no trap,
    and the result reflects the *real* (host) state, not the guest's."""
    regs = ctx.regs
    if op == Op.POPF:
        # IOPL < CPL: the IF bit of the popped value is silently ignored.
        ctx.flags = (regs[a] & _MASK & ~IF_FLAG) | (ctx.flags & IF_FLAG) | 0x2
    elif op == Op.PUSHF:
        regs[a] = (ctx.flags & ~IF_FLAG) | IF_FLAG  # the host keeps interrupts on
    elif op == Op.SGDT:
        regs[a] = HOST_GDTR
    elif op == Op.SIDT:
        regs[a] = HOST_IDTR
    elif op == Op.SMSW:
        regs[a] = HOST_MSW & 0xFFFF
    else:
        raise ValueError(f"{Op(op).name} is not sensitive-but-unprivileged")


def execute(
    ctx: GuestCPU, block: Block, actions: list[int], handler: Handler, extra: list[int] | None = None, start: int = 0
) -> tuple[int, int]:
    """Run ``block`` on ``ctx`` (from instruction ``start``: a translated block hands the rest
    of itself over to the interpreter when an interrupt becomes deliverable). Returns
    ``(direct, cycles)``: instructions executed directly,
    and the cycles beyond one per direct instruction: what direct privileged instructions and
    call/return pairs cost the hardware (``extra[op]``: a real device-port access, a TLB flush), traps, exits,
    callouts, faults, hypercalls and interrupts."""
    regs = ctx.regs
    direct = 0
    cycles = 0
    for op, a, b in block.code[start:] if start else block.code:
        action = actions[op]
        if action == 0:  # DIRECT
            direct += 1
            if op == 1:
                regs[a] = b & _MASK
            elif op == 2:
                regs[a] = (regs[a] + regs[b]) & _MASK
            elif op == 3:
                regs[a] = (regs[a] - regs[b]) & _MASK
            elif op == 4:
                regs[a] ^= regs[b]
            elif op == 5:
                if regs[b] == 0:
                    cycles += handler.special(ctx, Action.FAULT, op, a, b)
                    direct -= 1
                else:
                    regs[a] //= regs[b]
            elif op == 6:
                regs[a] = ctx.mem.get(b, 0)
            elif op == 7:
                ctx.mem[a] = regs[b]
            elif op != 0:
                emulate(ctx, op, a, b)
                if extra is not None:
                    cycles += extra[op]
        elif action == 1:  # DEPRIVILEGED
            direct += 1
            deprivileged(ctx, op, a, b)
        else:
            cycles += handler.special(ctx, action, op, a, b)
        if ctx.pending and ctx.flags & IF_FLAG:
            cycles += handler.interrupt(ctx)
    return direct, cycles
