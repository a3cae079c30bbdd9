"""``hardware-assisted``: VT-x / AMD-V. The unmodified guest kernel runs in non-root mode at full
privilege, with its own privileged state in hardware (the VMCS): sensitive instructions act on
the guest's own registers and need no help. Only the events the hypervisor configured cause a
VM exit, which it handles and resumes. No binary translation."""

from __future__ import annotations

import numpy as np

from vframework import VCPU, Mode
from vframework.cpu import Action
from vframework.isa import ORDINARY, Op


class HardwareAssisted(Mode):
    """Non-root execution; configured instructions exit (``vm_exits_<reason>``)."""

    name = "hardware-assisted"
    description = "unmodified guest in VT-x non-root mode; configured events cause VM exits"
    architectures = ("x86-vt",)

    def classify(self, op: int, kernel: bool) -> int:
        if op == Op.HYPERCALL:
            return Action.FAULT
        if not kernel:
            if op in ORDINARY or op in (Op.PUSHF, Op.SGDT, Op.SIDT, Op.SMSW):
                return Action.DIRECT  # the registers read are the guest's own (loaded from the VMCS)
            if op == Op.POPF:
                return Action.DEPRIVILEGED  # CPL 3 cannot change IF, as on bare metal
            return Action.FAULT
        if op in self.arch.exits:
            return Action.EXIT
        return Action.DIRECT

    def deliver(self, vcpu: VCPU, kind: str, count: int) -> int:
        costs = self.costs
        if kind == "syscall":
            return count * costs.syscall  # no exit: system calls run at native speed
        if kind == "page_fault":
            return count * costs.page_fault  # with nested paging guest faults do not exit
        if kind == "exception":
            return count * costs.interrupt
        # External interrupts exit to the hypervisor, which injects a virtual interrupt.
        counters = self.vm.counters
        counters["vm_exits"] += count
        counters["vm_exits_external_interrupt"] += count
        return count * (costs.vm_exit + costs.interrupt)

    def hidden_fault(self, vcpu: VCPU, count: int) -> int:
        counters = self.vm.counters
        counters["vm_exits"] += count
        counters["vm_exits_ept_violation"] += count
        return count * (self.costs.vm_exit + self.costs.page_zero)

    def translate(self, vcpu: VCPU, vpns: np.ndarray, ppns: np.ndarray, write: bool) -> int:
        return int(vpns.size) * self.costs.memory_access

    def io(self, vcpu: VCPU, device: str, nbytes: int, write: bool) -> int:
        return nbytes * self.costs.byte_copy  # emulated device
