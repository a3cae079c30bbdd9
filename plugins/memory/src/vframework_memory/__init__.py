"""Standard memory policies for vframework."""

from __future__ import annotations

from typing import Any

from vframework import MemoryPolicy, hookimpl

__all__ = ["StaticPolicy"]


class StaticPolicy(MemoryPolicy):
    """Every VM's target is its configured memory; the host may not be overcommitted."""

    name = "static"
    description = "each VM gets its configured memory; no overcommitment"
    can_overcommit = False

    def targets(self, hypervisor: Any, now: int) -> dict[int, int]:
        return {vm.id: vm.memory_pages for vm in hypervisor.vms.values()}


@hookimpl
def register_memory_policies() -> list[type]:
    return [StaticPolicy]
