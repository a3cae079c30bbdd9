"""The operations a workload yields to its guest OS (one process per vCPU).

Operations are coarse on purpose: a ``Compute`` of a million cycles or a ``Touch`` of a
thousand pages is one step for the engine, so the event queue sees operations, not
instructions. Their effects happen when the operation starts; their time then elapses on
the vCPU, and may be preempted and resumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = [
    "FAULT_VECTORS",
    "IO",
    "KERNEL_ROUTINES",
    "SECTOR_BYTES",
    "Compute",
    "Fault",
    "ForkExec",
    "ForkWait",
    "IORequest",
    "KernelCall",
    "MapUnmap",
    "Operation",
    "Sleep",
    "Syscall",
    "Touch",
]

#: Routines a workload may ask the guest kernel to run with :class:`KernelCall`.
KERNEL_ROUTINES = (
    "syscall",
    "critical_section",
    "context_switch",
    "timer_interrupt",
    "device_register",
    "page_fault_handler",
    "exception_handler",
    # Nanobenchmarks (Adams & Agesen's): one virtualization-sensitive operation each, with an
    # empty handler, so that what is measured is the operation itself.
    "syscall_entry",
    "page_fault_entry",
    "exception_entry",
    "port_probe",
    "set_task_priority",
    "leaf_call",
    "pte_write",
)

#: A disk sector: requests address disks in these.
SECTOR_BYTES = 512

#: Exceptions a guest program can raise with :class:`Fault`.
FAULT_VECTORS = ("divide_error", "invalid_opcode", "general_protection", "breakpoint")


@dataclass(frozen=True, slots=True)
class Operation:
    """Base class of every operation."""


@dataclass(frozen=True, slots=True)
class Compute(Operation):
    """Run ``cycles`` of ordinary user-level instructions (no memory beyond the cache)."""

    cycles: int


@dataclass(frozen=True, slots=True, eq=False)
class Touch(Operation):
    """Reference the virtual pages ``vpns`` (an int64 array), for writing when ``write``."""

    vpns: npt.NDArray[np.int64]
    write: bool = False


@dataclass(frozen=True, slots=True)
class IO(Operation):
    """Submit ``count`` I/O requests of ``nbytes`` each to the VM's ``device`` and block until
    every one completes (a request depth of ``count``).

    ``sector`` is where the first request starts on a disk (the next ones follow it); -1 lets
    the device continue where the vCPU's previous request ended. ``sectors``, if given, holds
    each request's own start instead (scattered requests; its length is ``count``). ``barrier``: the requests are
    a reorder barrier (a journal commit): the device completes everything submitted before
    them first, and starts nothing submitted after them before they are done. Sectors and
    barriers mean something only to a device plugin attached to the VM; without one, the
    request is one fixed delay."""

    nbytes: int
    write: bool = False
    device: str = "disk"
    sector: int = -1
    barrier: bool = False
    count: int = 1
    sectors: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.nbytes <= 0 or self.count < 1:
            raise ValueError(f"an I/O operation needs nbytes > 0 and count >= 1, not {self.nbytes} and {self.count}")
        if self.sectors and len(self.sectors) != self.count:
            raise ValueError(f"an I/O operation of {self.count} requests lists {len(self.sectors)} sectors")


@dataclass(slots=True)
class IORequest:
    """One request as a device sees it: from the guest's driver, for one vCPU."""

    #: Unique per VM, in submission order.
    id: int
    #: The issuing vCPU's index in its VM.
    vcpu: int
    nbytes: int
    write: bool
    #: First 512-byte sector on the disk (0 for a NIC).
    sector: int
    barrier: bool = False
    #: Set by the device when it could not carry the request out (a refused grant...).
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Sleep(Operation):
    """Block for ``ns`` nanoseconds (a timer wait: the vCPU is not runnable meanwhile)."""

    ns: int


@dataclass(frozen=True, slots=True)
class Syscall(Operation):
    """Enter the guest kernel and return (a null system call, as lmbench's)."""


@dataclass(frozen=True, slots=True)
class Fault(Operation):
    """Raise a processor exception (``divide_error``...): the guest kernel's handler runs."""

    vector: str = "divide_error"

    def __post_init__(self) -> None:
        if self.vector not in FAULT_VECTORS:
            raise ValueError(f"unknown fault vector {self.vector!r}; known: {', '.join(FAULT_VECTORS)}")


@dataclass(frozen=True, slots=True)
class KernelCall(Operation):
    """Have the guest kernel run one of its routines ``count`` times back to back (the driver of
    lmbench-style microbenchmarks: null system calls, cli/sti storms, context switches...)."""

    routine: str
    count: int = 1

    def __post_init__(self) -> None:
        if self.routine not in KERNEL_ROUTINES:
            raise ValueError(f"unknown kernel routine {self.routine!r}; known: {', '.join(KERNEL_ROUTINES)}")
        if self.count < 1:
            raise ValueError(f"count must be >= 1, got {self.count}")


@dataclass(frozen=True, slots=True)
class ForkWait(Operation):
    """One forkwait iteration: fork a child that writes ``touch`` of its parent's pages (so
    copy-on-write faults) and exits, while the parent waits (Adams & Agesen's forkwait)."""

    touch: int = 16

    def __post_init__(self) -> None:
        if self.touch < 0:
            raise ValueError(f"touch must be >= 0, got {self.touch}")


@dataclass(frozen=True, slots=True)
class ForkExec(Operation):
    """lmbench's ``lat_proc exec`` and ``shell``: fork a child that execs each program of
    ``programs`` in turn and exits, while the parent waits.

    A program is the number of pages it touches before it exits (its text, data, stack and
    shared libraries). Each exec replaces the address space before it, as a shell's ``-c`` with
    one command execs that command in place. ``shell``: the first program is a shell, which
    does its start-up work before it execs the next."""

    programs: tuple[int, ...]
    shell: bool = False

    def __post_init__(self) -> None:
        if not self.programs or min(self.programs) < 1:
            raise ValueError(f"a fork-exec needs at least one program of at least one page, not {self.programs}")
        if self.shell and len(self.programs) < 2:  # noqa: PLR2004 (a shell and its command)
            raise ValueError("a shell fork-exec needs the shell and the command it runs (two programs)")


@dataclass(frozen=True, slots=True, eq=False)
class MapUnmap(Operation):
    """lmbench's ``lat_mmap``: map ``pages`` pages of a file the page cache holds at VPN
    ``start`` (mmap), write the pages ``offsets`` (an int64 array, relative to ``start``; each
    first write a page fault), then unmap them all (munmap, which flushes the TLB)."""

    start: int
    pages: int
    offsets: npt.NDArray[np.int64]

    def __post_init__(self) -> None:
        if self.start < 0 or self.pages < 1:
            raise ValueError(f"a mapping needs start >= 0 and pages >= 1, not {self.start} and {self.pages}")
        if self.offsets.size and (int(self.offsets.min()) < 0 or int(self.offsets.max()) >= self.pages):
            raise ValueError(
                f"offsets {self.offsets.min()}..{self.offsets.max()} fall outside a {self.pages}-page mapping"
            )
