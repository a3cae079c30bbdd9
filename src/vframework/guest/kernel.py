"""The reference guest kernel's code: its routines as instruction blocks, and its para-virtual port.

The routines are what an unmodified guest kernel executes on the vCPU: system-call entry and
exit, a critical section (``pushf; cli; ...; popf``, as spin_lock_irqsave), the context switch
(a page-table switch), the timer and device interrupt handlers, the page-fault handler, a disk
driver programming device registers, and boot. Their sensitive instructions are where each
virtualization mode differs.

The para-virtual port (:func:`paravirtualize`) rewrites only the sensitive instructions into
hypercalls or shared-memory accesses, as the Xen ports of Linux and Windows XP did; the rest of
the code is unchanged. :func:`port_share` reports how much of the kernel changed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from vframework.machine.cpu import EOI_PORT
from vframework.machine.isa import Block, Instruction, Op

__all__ = [
    "DISK_PORTS",
    "DRIVER_ROUTINES",
    "HC",
    "HYPERCALL_NAMES",
    "JIFFIES",
    "NANO_ROUTINES",
    "POST_PORT",
    "SHARED_INFO",
    "GuestKernel",
    "nano_routine",
    "pack",
    "paravirtualize",
    "port_share",
    "unpack",
]

#: Disk controller registers: command, status, data.
DISK_PORTS = (0x1F7, 0x1F6, 0x1F0)
#: The BIOS POST port: reading it touches a chipset register and nothing else.
POST_PORT = 0x80
#: Where the kernel keeps its tick count, and where the para-virtual shared-info page lives.
JIFFIES, SHARED_INFO = 0x100, 0x7000


class HC:
    """The hypercall table (numbers), after Xen's."""

    CREATE_PAGE_TABLE = 0
    SWITCH_TO_PAGE_TABLE = 1
    UPDATE_PAGE_TABLE = 2
    DEVICE_OPERATION = 3
    SET_EVENT_MASK = 4
    READ_VIRTUAL = 5
    SET_DESCRIPTOR_TABLE = 6
    YIELD = 7
    BLOCK = 8
    BALLOON_INFLATE = 9
    BALLOON_DEFLATE = 10
    INVLPG = 11


HYPERCALL_NAMES = {v: k.lower() for k, v in vars(HC).items() if not k.startswith("_")}


def pack(*fields: int) -> int:
    """Pack small fields (8 bits each, the last one up to 16) into one hypercall argument."""
    value = 0
    for f in reversed(fields):
        value = (value << 8) | (f & 0xFF) if value else f
    return value


def unpack(arg: int, n: int) -> list[int]:
    """Inverse of :func:`pack` for ``n`` fields."""
    out = []
    for _ in range(n - 1):
        out.append(arg & 0xFF)
        arg >>= 8
    out.append(arg)
    return out


def _work(n: int, seed: int) -> list[Instruction]:
    """``n`` ordinary instructions (bookkeeping: loads, arithmetic, stores to kernel data)."""
    code: list[Instruction] = []
    for i in range(n):
        k = (seed * 31 + i * 7) % 5
        r = 1 + (i % 5)
        match k:
            case 0:
                code.append((Op.MOVI, r, (seed + i) & 0xFF))
            case 1:
                code.append((Op.ADD, r, 1 + ((i + 1) % 5)))
            case 2:
                code.append((Op.LOAD, r, 0x800 + seed * 64 + (i % 32)))
            case 3:
                code.append((Op.STORE, 0x800 + seed * 64 + (i % 32), r))
            case _:
                code.append((Op.XOR, r, 1 + ((i + 2) % 5)))
    return code


def _irq_save(body: list[Instruction]) -> list[Instruction]:
    # spin_lock_irqsave / restore: POPF restores the saved interrupt flag.
    return [(Op.PUSHF, 7, 0), (Op.CLI, 0, 0), *body, (Op.POPF, 7, 0)]


@dataclass(frozen=True)
class GuestKernel:
    """The routines of one guest kernel build.

    Sizes are rough instruction counts of the corresponding Linux paths (a null system call
    ~150, a page fault ~400, a context switch ~2,400, a block-I/O request ~1,500, fork
    ~4,000, exit ~2,000 and exec ~2,000 besides their page-table work), so the share of sensitive
    instructions, and so the para-virtual port's changed share, is of a realistic order.
    """

    boot: Block
    syscall: Block
    critical_section: Block
    context_switch: Block
    timer_handler: Block
    device_handler: Block
    exception_handler: Block
    page_fault_handler: Block
    disk_request: Block
    device_register: Block
    fork: Block
    exit: Block
    execve: Block
    idle: Block
    paravirtual: bool = False

    @classmethod
    def build(cls) -> GuestKernel:
        """The unmodified kernel (immutable, so every guest shares one build)."""
        return _build(cls)  # type: ignore[arg-type]

    @classmethod
    def _assemble(cls) -> GuestKernel:
        return cls(
            boot=Block(
                "boot",
                (
                    (Op.MOVI, 1, 0x1000),
                    (Op.LGDT, 1, 0),
                    (Op.MOVI, 1, 0x2000),
                    (Op.LIDT, 1, 0),
                    *_work(20, 1),
                    (Op.STI, 0, 0),
                ),
            ),
            syscall=Block("syscall", (*_work(100, 2), *_irq_save(_work(12, 3)), *_work(40, 4))),
            critical_section=Block("critical_section", tuple(_irq_save(_work(6, 5)))),
            context_switch=Block(
                "context_switch",
                (
                    *_work(1200, 6),
                    (Op.PUSHF, 7, 0),
                    (Op.CLI, 0, 0),
                    (Op.MOVI, 6, 0x3000),
                    (Op.MOV_TO_CR3, 6, 0),
                    *_work(1200, 7),
                    (Op.POPF, 7, 0),
                ),
            ),
            timer_handler=Block(
                "timer_handler",
                (
                    (Op.LOAD, 1, JIFFIES),
                    (Op.MOVI, 2, 1),
                    (Op.ADD, 1, 2),
                    (Op.STORE, JIFFIES, 1),
                    *_work(200, 8),
                    (Op.OUT, EOI_PORT, 2),
                ),
            ),
            device_handler=Block(
                "device_handler",
                (
                    (Op.IN, 1, DISK_PORTS[1]),
                    *_work(300, 9),
                    (Op.OUT, EOI_PORT, 1),
                ),
            ),
            exception_handler=Block("exception_handler", tuple(_work(200, 10))),
            page_fault_handler=Block("page_fault_handler", (*_work(400, 11), (Op.INVLPG, 1, 0))),
            disk_request=Block(
                "disk_request",
                (
                    *_work(1000, 12),
                    *_irq_save([(Op.MOVI, 3, 0x20), (Op.OUT, DISK_PORTS[0], 3), (Op.IN, 4, DISK_PORTS[1])]),
                    *_work(500, 13),
                ),
            ),
            device_register=Block(
                "device_register", ((Op.MOVI, 3, 0x1), (Op.OUT, DISK_PORTS[2], 3), (Op.IN, 4, DISK_PORTS[1]))
            ),
            fork=Block("fork", (*_work(4000, 14), *_irq_save(_work(20, 15)))),
            exit=Block("exit", (*_work(2000, 16), *_irq_save(_work(20, 17)))),
            # exec_mmap: drop the old mm, then activate the new one (a page-table base load).
            execve=Block("execve", (*_work(2000, 19), (Op.MOVI, 6, 0x3000), (Op.MOV_TO_CR3, 6, 0))),
            idle=Block("idle", ((Op.STI, 0, 0), (Op.HLT, 0, 0))),
        )

    def routines(self) -> dict[str, Block]:
        """Name -> block, for every routine."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "paravirtual"}

    def ported(self) -> GuestKernel:
        """The para-virtual port of this kernel."""
        return _ported(self)


def _driver_routines() -> dict[str, Block]:
    return {
        # A split driver's front end (blkfront, netfront): the same block-layer work as
        # disk_request, then a request written into a shared ring slot and its grant entries
        # filled in: plain stores, no device register (the kick is the mode's business).
        "ring_request": Block("ring_request", (*_work(1000, 12), *_work(40, 18), *_work(500, 13))),
    }


#: Routines of the para-virtual split drivers, apart from :class:`GuestKernel`'s own (they hold
#: no sensitive instruction, so the para-virtual port leaves them unchanged).
DRIVER_ROUTINES: dict[str, Block] = _driver_routines()


#: One-instruction routines for nanobenchmarks (Adams & Agesen's in, cr8wr and call/ret): each
#: is the single sensitive operation, run in the guest kernel.
NANO_ROUTINES: dict[str, Block] = {
    "port_probe": Block("port_probe", ((Op.IN, 1, POST_PORT),)),
    "set_task_priority": Block("set_task_priority", ((Op.MOV_TO_CR8, 1, 0),)),
    "leaf_call": Block("leaf_call", ((Op.CALL, 0, 0),)),
}


@functools.cache
def nano_routine(name: str, paravirtual: bool) -> Block:
    """The nanobenchmark routine ``name``, ported for a para-virtual kernel (one block per
    kernel kind, so translations are cached)."""
    block = NANO_ROUTINES[name]
    return paravirtualize(block) if paravirtual else block


@functools.cache
def _build(cls: type[GuestKernel]) -> GuestKernel:
    # Assembling the kernel's blocks is most of a guest's boot time in the conformance kit;
    # the result is a frozen value, so it is built once per process.
    return cls._assemble()


@functools.cache
def _ported(kernel: GuestKernel) -> GuestKernel:
    return GuestKernel(**{name: paravirtualize(block) for name, block in kernel.routines().items()}, paravirtual=True)


#: How the port rewrites each sensitive instruction: (hypercall number, argument builder).
def _port(op: int, a: int, b: int) -> Instruction:
    if op == Op.CLI:
        return (Op.HYPERCALL, HC.SET_EVENT_MASK, pack(1, 0))
    if op == Op.STI:
        return (Op.HYPERCALL, HC.SET_EVENT_MASK, pack(0, 0))
    if op == Op.POPF:
        return (Op.HYPERCALL, HC.SET_EVENT_MASK, pack(2, a))
    if op == Op.PUSHF:
        return (Op.HYPERCALL, HC.READ_VIRTUAL, pack(0, a))
    if op == Op.MOV_FROM_CR3:
        return (Op.HYPERCALL, HC.READ_VIRTUAL, pack(1, a))
    if op == Op.SGDT:
        return (Op.HYPERCALL, HC.READ_VIRTUAL, pack(2, a))
    if op == Op.SIDT:
        return (Op.HYPERCALL, HC.READ_VIRTUAL, pack(3, a))
    if op == Op.SMSW:
        return (Op.HYPERCALL, HC.READ_VIRTUAL, pack(4, a))
    if op == Op.MOV_TO_CR3:
        return (Op.HYPERCALL, HC.SWITCH_TO_PAGE_TABLE, a)
    if op == Op.LGDT:
        return (Op.HYPERCALL, HC.SET_DESCRIPTOR_TABLE, pack(0, a))
    if op == Op.LIDT:
        return (Op.HYPERCALL, HC.SET_DESCRIPTOR_TABLE, pack(1, a))
    if op == Op.IN:
        return (Op.HYPERCALL, HC.DEVICE_OPERATION, pack(0, a, b))
    if op == Op.OUT:
        return (Op.HYPERCALL, HC.DEVICE_OPERATION, pack(1, b, a))
    if op == Op.HLT:
        return (Op.HYPERCALL, HC.BLOCK, 0)
    if op == Op.INVLPG:
        return (Op.HYPERCALL, HC.INVLPG, a)
    return (op, a, b)


def paravirtualize(block: Block) -> Block:
    """The block with every sensitive instruction replaced by its para-virtual equivalent."""
    if not block.kernel:
        return block  # applications are unchanged
    return Block(block.name, tuple(_port(*ins) for ins in block.code), block.kernel)


def port_share(kernel: GuestKernel) -> tuple[int, int]:
    """(instructions the port changed, instructions in the kernel)."""
    ported = kernel.ported()
    changed = total = 0
    for name, block in kernel.routines().items():
        other = ported.routines()[name]
        total += len(block)
        changed += sum(1 for x, y in zip(block.code, other.code, strict=True) if x != y)
    return changed, total
