"""Standard guest workloads for vframework."""

from vframework import hookimpl

from .basic import CPUBound, Idle
from .io import IOBound
from .memory import MemoryWorkload

__all__ = ["Idle", "CPUBound", "IOBound", "MemoryWorkload"]


@hookimpl
def register_workloads() -> list[type]:
    return [Idle, CPUBound, IOBound, MemoryWorkload]
