"""``bare-metal``: the baseline. Not a virtualization mode: it is what the guest would cost
on the hardware with no hypervisor underneath, the 1.0 that every mode is compared with."""

from __future__ import annotations

import numpy as np

from vframework import VCPU, Mode


class BareMetal(Mode):
    """The guest's operations cost exactly their native cost from the cost model."""

    name = "bare-metal"
    description = "baseline: native costs, no hypervisor in the path (compare modes against it)"
    # Real hardware has all its memory from power-on: no hidden faults, ever.
    preallocate = True

    def syscall(self, vcpu: VCPU) -> int:
        return self.hypervisor.machine.costs.syscall

    def page_fault(self, vcpu: VCPU, count: int) -> int:
        return count * self.hypervisor.machine.costs.page_fault

    def hidden_fault(self, vcpu: VCPU, count: int) -> int:
        # Unreachable while preallocate holds; costed as native faults if a policy ever unbacks pages.
        return count * self.hypervisor.machine.costs.page_fault

    def translate(self, vcpu: VCPU, vpns: np.ndarray, ppns: np.ndarray, write: bool) -> int:
        return int(vpns.size) * self.hypervisor.machine.costs.memory_access

    def io(self, vcpu: VCPU, device: str, nbytes: int, write: bool) -> int:
        costs = self.hypervisor.machine.costs
        return costs.syscall + costs.interrupt
