"""``bare-metal``: the baseline. Not a virtualization mode: it is what the guest would cost
on the hardware with no hypervisor underneath, the 1.0 that every mode is compared with."""

from __future__ import annotations

from vframework.api import ORDINARY, Action, Mode, Op, Params, VCPUView


class BareMetal(Mode[Params]):
    """The guest kernel owns the CPU: every instruction executes natively at its true privilege."""

    name = "bare-metal"
    description = "baseline: native costs, no hypervisor in the path (compare modes against it)"
    # Real hardware has all its memory from power-on: no hidden faults, ever.
    preallocate = True
    baseline = True

    def classify(self, op: int, kernel: bool) -> Action:
        if op == Op.HYPERCALL:
            return Action.FAULT  # no hypervisor to call: an invalid opcode
        if kernel or op in ORDINARY:
            return Action.DIRECT
        if op in self.arch.privileged:
            return Action.FAULT  # privileged at user level: general protection fault
        if op == Op.POPF:
            return Action.DEPRIVILEGED  # at CPL 3 the IF bit is ignored; state is the guest's own
        return Action.DIRECT  # PUSHF, SGDT...: readable at user level, and the values are the guest's own

    def deliver(self, vcpu: VCPUView, kind: str, count: int) -> int:
        # The hardware vectors straight into the guest kernel: only the native cost.
        costs = self.costs
        native = {"syscall": costs.syscall, "page_fault": costs.page_fault}.get(kind, costs.interrupt)
        return count * native

    def hidden_fault(self, vcpu: VCPUView, count: int) -> int:
        # Unreachable while preallocate holds; costed as native faults if a policy ever unbacks pages.
        return count * self.costs.page_fault

    def notify_backend(self, vcpu: VCPUView) -> int:
        return self.costs.port_io  # a doorbell register write to the real device

    def io(self, vcpu: VCPUView, device: str, nbytes: int, write: bool) -> int:
        return 0  # the device DMAs straight into guest memory
