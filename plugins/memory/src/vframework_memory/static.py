"""``static``: each VM gets its configured memory."""

from __future__ import annotations

from vframework.api import MemoryContext, MemoryPolicy, Params

__all__ = ["StaticPolicy"]


class StaticPolicy(MemoryPolicy[Params]):
    """Every VM's target is its configured memory; the host may not be overcommitted."""

    name = "static"
    description = "each VM gets its configured memory; no overcommitment"
    can_overcommit = False

    def targets(self, memory: MemoryContext, now: int) -> dict[int, int]:
        return {vm.id: vm.memory_pages for vm in memory.vms}
