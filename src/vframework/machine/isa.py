"""A small instruction set described as data, and the architectures built from it.

Each instruction is a tuple ``(opcode, a, b)``. What makes virtualization hard is not the
instructions but their classification (Popek & Goldberg 1974):

* *privileged*: traps when executed at user level (CPL > 0);
* *sensitive*: reads or changes privileged state (the interrupt flag, control registers,
  descriptor-table registers, I/O devices);
* *sensitive but unprivileged*: sensitive, yet executes at user level without trapping and
  behaves differently there. x86 has seventeen of these (Robin & Irvine, USENIX Security
  2000); the model has POPF (at CPL > 0 it silently leaves IF unchanged), PUSHF (reveals the
  real IF), SGDT, SIDT and SMSW (reveal the real descriptor-table and machine-status registers).

An architecture is classically virtualizable when its sensitive instructions are a subset of
its privileged ones; ``classic`` is, ``x86`` is not, and ``x86-vt`` adds root / non-root
operation whose configured events cause VM exits instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_EXITS",
    "EXIT_REASONS",
    "IF_FLAG",
    "NREGS",
    "ORDINARY",
    "PRIVILEGED_X86",
    "SENSITIVE_UNPRIVILEGED_X86",
    "Architecture",
    "Block",
    "Instruction",
    "Op",
]

#: General-purpose registers per CPU.
NREGS = 8
#: The interrupt-enable bit of the flags register (bit 9, as on x86).
IF_FLAG = 0x200


class Op(IntEnum):
    """Opcodes. Operands ``a`` and ``b`` are register numbers, immediates or ports."""

    NOP = 0
    MOVI = 1  # r[a] = b
    ADD = 2  # r[a] += r[b]
    SUB = 3  # r[a] -= r[b]
    XOR = 4  # r[a] ^= r[b]
    DIV = 5  # r[a] //= r[b]; divide error when r[b] == 0
    LOAD = 6  # r[a] = mem[b]
    STORE = 7  # mem[a] = r[b]
    CLI = 10  # IF = 0
    STI = 11  # IF = 1
    HLT = 12  # wait for an interrupt
    MOV_TO_CR3 = 13  # cr3 = r[a]: switch page table
    MOV_FROM_CR3 = 14  # r[a] = cr3
    LGDT = 15  # gdtr = r[a]
    LIDT = 16  # idtr = r[a]
    IN = 17  # r[a] = port[b]
    OUT = 18  # port[a] = r[b]
    INVLPG = 19  # flush the TLB entry of page r[a]
    POPF = 20  # flags = r[a]
    PUSHF = 21  # r[a] = flags
    SGDT = 22  # r[a] = gdtr
    SIDT = 23  # r[a] = idtr
    SMSW = 24  # r[a] = msw
    MOV_TO_CR8 = 25  # tpr = r[a]: the task priority below which interrupts wait (x86-64 %cr8)
    CALL = 26  # call a leaf subroutine that returns at once: a call/return pair, no state change
    SYSCALL = 30  # enter the kernel with call number a
    HYPERCALL = 31  # para-virtual call a with argument register b (undefined elsewhere)


#: One instruction: (opcode, a, b).
Instruction = tuple[int, int, int]

ORDINARY = frozenset({Op.NOP, Op.MOVI, Op.ADD, Op.SUB, Op.XOR, Op.DIV, Op.LOAD, Op.STORE, Op.CALL})
PRIVILEGED_X86 = frozenset(
    {
        Op.CLI,
        Op.STI,
        Op.HLT,
        Op.MOV_TO_CR3,
        Op.MOV_FROM_CR3,
        Op.MOV_TO_CR8,
        Op.LGDT,
        Op.LIDT,
        Op.IN,
        Op.OUT,
        Op.INVLPG,
    }
)
SENSITIVE_UNPRIVILEGED_X86 = frozenset({Op.POPF, Op.PUSHF, Op.SGDT, Op.SIDT, Op.SMSW})

#: Why a VM exit happened (the counters are ``vm_exits_<reason>``).
EXIT_REASONS = ("cr_access", "io", "hlt", "invlpg", "external_interrupt", "exception", "ept_violation")
#: The exits a first-generation VT-x hypervisor enables by default, by opcode. CLI/STI and
#: POPF/PUSHF do not exit: in non-root mode they act on the guest's own IF. A %cr8 write does
#: not exit either: the TPR shadow takes it, and only a write that unmasks a pending virtual
#: interrupt would exit (Adams & Agesen's cr8wr never does).
DEFAULT_EXITS: dict[int, str] = {
    Op.MOV_TO_CR3: "cr_access",
    Op.MOV_FROM_CR3: "cr_access",
    Op.IN: "io",
    Op.OUT: "io",
    Op.HLT: "hlt",
    Op.INVLPG: "invlpg",
}


@dataclass(frozen=True)
class Block:
    """A basic block of guest code: straight-line instructions with a stable identity.

    ``kernel`` says whether it belongs to the guest kernel (runs at virtual CPL 0) or to a
    user program (CPL 3).
    """

    name: str
    code: tuple[Instruction, ...]
    kernel: bool = True

    def __len__(self) -> int:
        return len(self.code)

    def count(self, ops: frozenset[int]) -> int:
        """Instructions of the block whose opcode is in ``ops``."""
        return sum(1 for op, _, _ in self.code if op in ops)


@dataclass(frozen=True)
class Architecture:
    """Which instructions trap at user level, which are sensitive, and whether VT-style
    root / non-root operation exists (with the exits it is configured to take)."""

    name: str
    privileged: frozenset[int]
    sensitive: frozenset[int]
    root_mode: bool = False
    exits: dict[int, str] = field(default_factory=dict)
    description: str = ""

    @property
    def sensitive_unprivileged(self) -> frozenset[int]:
        """Sensitive instructions that do not trap: the obstacle to trap-and-emulate."""
        return self.sensitive - self.privileged

    @property
    def classically_virtualizable(self) -> bool:
        """Popek & Goldberg's theorem 1: sensitive is a subset of privileged."""
        return not self.sensitive_unprivileged


ARCHITECTURES: dict[str, Architecture] = {
    "x86": Architecture(
        "x86",
        PRIVILEGED_X86,
        PRIVILEGED_X86 | SENSITIVE_UNPRIVILEGED_X86,
        description="pre-VT x86: POPF, PUSHF, SGDT, SIDT, SMSW are sensitive but do not trap",
    ),
    "classic": Architecture(
        "classic",
        PRIVILEGED_X86 | SENSITIVE_UNPRIVILEGED_X86,
        PRIVILEGED_X86 | SENSITIVE_UNPRIVILEGED_X86,
        description="Popek-Goldberg clean: every sensitive instruction traps at user level",
    ),
    "x86-vt": Architecture(
        "x86-vt",
        PRIVILEGED_X86,
        PRIVILEGED_X86 | SENSITIVE_UNPRIVILEGED_X86,
        root_mode=True,
        exits=dict(DEFAULT_EXITS),
        description="x86 with VT-x/AMD-V: the guest runs in non-root mode; configured events exit",
    ),
}
