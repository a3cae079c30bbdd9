"""Standard guest workloads for vframework."""

from vframework.api import hookimpl

from .basic import CPUBound, Idle
from .fork import ForkWorkload
from .io import IOBound
from .lmbench import Lmbench
from .memory import MemoryWorkload

__all__ = ["CPUBound", "ForkWorkload", "IOBound", "Idle", "Lmbench", "MemoryWorkload"]


@hookimpl
def register_workloads() -> list[type]:
    return [Idle, CPUBound, ForkWorkload, IOBound, Lmbench, MemoryWorkload]
