"""``paravirtual``: Xen-style. The guest kernel is ported: its sensitive instructions became
hypercalls or shared-page accesses (see :mod:`vframework.guest.kernel`), so it runs deprivileged
without binary translation. The hypervisor validates every hypercall argument."""

from __future__ import annotations

from typing import ClassVar

from vframework.api import ORDINARY, Action, GuestCPU, Mode, Op, Params, VCPUView


class Paravirtual(Mode[Params]):
    """A para-virtualized guest making explicit hypercalls (Xen)."""

    name = "paravirtual"
    known_limitations: ClassVar[dict[str, str]] = {
        "costs": "a port access (1,300 cycles: DEVICE_OPERATION hypercall + emulation) and the doorbell (1,000: "
        "one hypercall) cost less than on bare metal (3,201; 3,200)"
    }
    description = "modified guest: explicit hypercalls, validated (Xen); zero-copy I/O"
    paravirtual = True
    # Xen gives a domain all its memory when it is created.
    preallocate = True

    def classify(self, op: int, kernel: bool) -> Action:
        if op in ORDINARY:
            return Action.DIRECT
        if op == Op.HYPERCALL:
            return Action.HYPERCALL if kernel else Action.FAULT
        if not kernel:
            return Action.DEPRIVILEGED if op in self.arch.sensitive_unprivileged else Action.FAULT
        if op in self.arch.privileged:
            return Action.TRAP  # unported code: the hypervisor still emulates it (slowly)
        return Action.DEPRIVILEGED  # unported sensitive code misbehaves, as it would under Xen

    def pte_write_cycles(self, count: int) -> int:
        # Direct paging: the guest batches its updates into mmu_update hypercalls (up to 64
        # each), and the hypervisor validates every entry.
        batches = -(-count // 64)
        self.context.counters["hypercalls"] += batches
        return batches * self.costs.hypercall + count * self.costs.pte_validate

    def address_space_cycles(self, table_pages: int) -> int:
        # Xen pins a new address space's tables (an MMUEXT_PIN hypercall, every entry of every
        # table page validated) and unpins them when it goes (MMUEXT_UNPIN, references dropped).
        if not self.costs.pt_pin:
            return 0
        self.context.counters["hypercalls"] += 2
        return 2 * self.costs.hypercall + 2 * table_pages * self.costs.pt_pin

    def hypercall(self, vcpu: VCPUView, ctx: GuestCPU, number: int, arg: int) -> int:
        return self.context.hypercall(vcpu, ctx, number, arg)

    def deliver(self, vcpu: VCPUView, kind: str, count: int) -> int:
        costs = self.costs
        if kind == "syscall":
            # Xen's fast system-call path: the guest registers its handler directly.
            return count * costs.syscall
        if kind == "page_fault":
            # Faults go through Xen (it must read the faulting address) and are bounced back.
            return count * (costs.page_fault + costs.trap)
        if kind == "exception":
            return count * costs.interrupt
        # Events arrive as an upcall on the event channel.
        return count * (costs.interrupt + costs.emulate)

    def hidden_fault(self, vcpu: VCPUView, count: int) -> int:
        return count * (self.costs.trap + self.costs.page_zero)

    def io(self, vcpu: VCPUView, device: str, nbytes: int, write: bool) -> int:
        # Zero copy: the backend DMAs into the guest's granted pages; one event-channel notify.
        self.context.counters["hypercalls"] += 1
        return self.costs.hypercall
