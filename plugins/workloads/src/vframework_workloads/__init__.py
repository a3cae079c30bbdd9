"""Standard guest workloads for vframework."""

from vframework import hookimpl

from .basic import CPUBound, Idle
from .io import IOBound
from .lmbench import Lmbench
from .memory import MemoryWorkload

__all__ = ["Idle", "CPUBound", "IOBound", "Lmbench", "MemoryWorkload"]


@hookimpl
def register_workloads() -> list[type]:
    return [Idle, CPUBound, IOBound, Lmbench, MemoryWorkload]
