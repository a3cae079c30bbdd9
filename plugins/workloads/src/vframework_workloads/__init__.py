"""Standard guest workloads for vframework."""

from vframework import hookimpl

from .basic import CPUBound, Idle
from .memory import MemoryWorkload

__all__ = ["Idle", "CPUBound", "MemoryWorkload"]


@hookimpl
def register_workloads() -> list[type]:
    return [Idle, CPUBound, MemoryWorkload]
