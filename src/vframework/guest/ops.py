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
    "Compute",
    "Fault",
    "ForkWait",
    "KernelCall",
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
)

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
    """Submit one I/O request of ``nbytes`` to the VM's ``device`` and block until it completes."""

    nbytes: int
    write: bool = False
    device: str = "disk"


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
