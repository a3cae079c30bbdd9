"""The contexts the hypervisor hands to memory policies, memory services and devices: what
each may see of the host and do to it, and nothing more."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt

    from vframework.hv.hypervisor import Hypervisor
    from vframework.hv.vm import VM
    from vframework.machine.costs import CostModel

__all__ = ["DeviceHost", "HostMemory"]


class HostMemory:
    """A :class:`~vframework.api.MemoryContext` over one hypervisor."""

    def __init__(self, hypervisor: Hypervisor) -> None:
        self._hv = hypervisor

    @property
    def free_frames(self) -> int:
        """Machine frames free now."""
        return self._hv.machine.memory.free_frames

    @property
    def vms(self) -> list[VM]:
        """The running VMs, in creation order."""
        return list(self._hv.vms.values())

    def _vm(self, vm_id: int) -> VM:
        try:
            return self._hv.vms[vm_id]
        except KeyError:
            raise KeyError(f"no running VM with id {vm_id}") from None

    def p2m(self, vm_id: int) -> npt.NDArray[np.int32]:
        """A read-only copy of the VM's P2M (PPN -> MPN, -1 where unbacked)."""
        view = self._vm(vm_id).p2m.copy()
        view.flags.writeable = False
        return view

    def grant(self, vm_id: int, ppns: npt.ArrayLike) -> int:
        """Back these guest-physical pages with machine frames; returns how many were backed."""
        return self._hv.back_pages(self._vm(vm_id), np.asarray(ppns, dtype=np.int64), hidden=False)

    def reclaim(self, vm_id: int, ppns: npt.ArrayLike) -> int:
        """Take the machine frames behind these pages back; returns how many."""
        return self._hv.release_pages(self._vm(vm_id), np.asarray(ppns, dtype=np.int64))

    def set_target(self, vm_id: int, pages: int) -> None:
        """Set the VM's memory target in pages."""
        self._vm(vm_id).counters["mem_target"] = int(pages)


class DeviceHost:
    """A :class:`~vframework.api.DeviceContext` for one VM's device."""

    def __init__(self, hypervisor: Hypervisor, vm: VM) -> None:
        self._hv = hypervisor
        self.vm = vm
        self.costs: CostModel = hypervisor.machine.costs

    def raise_irq(self, cycles: int) -> None:
        """A physical interrupt for this VM arrives now; servicing it takes ``cycles``."""
        self._hv.raise_irq(self.vm, cycles)
