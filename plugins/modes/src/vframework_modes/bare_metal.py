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

    def deliver(self, vcpu: VCPU, kind: str, count: int) -> int:
        # The hardware vectors straight into the guest kernel: only the native cost.
        costs = self.hypervisor.machine.costs
        native = {"syscall": costs.syscall, "page_fault": costs.page_fault}.get(kind, costs.interrupt)
        return count * native

    def hidden_fault(self, vcpu: VCPU, count: int) -> int:
        # Unreachable while preallocate holds; costed as native faults if a policy ever unbacks pages.
        return count * self.hypervisor.machine.costs.page_fault

    def translate(self, vcpu: VCPU, vpns: np.ndarray, ppns: np.ndarray, write: bool) -> int:
        return int(vpns.size) * self.hypervisor.machine.costs.memory_access

    def io(self, vcpu: VCPU, device: str, nbytes: int, write: bool) -> int:
        # Programming the device's registers; the completion interrupt is delivered separately.
        return self.hypervisor.machine.costs.instruction * 100
