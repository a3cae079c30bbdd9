"""``hardware-assisted``: VT-x / AMD-V. The unmodified guest kernel runs in non-root mode at full
privilege, with its own privileged state in hardware (the VMCS): sensitive instructions act on
the guest's own registers and need no help. Only the events the hypervisor configured cause a
VM exit, which it handles and resumes. No binary translation."""

from __future__ import annotations

from pydantic import Field

from vframework.api import ORDINARY, Action, Mode, ModeContext, Op, Params, VCPUView

#: What nested paging lets the guest kernel do without an exit.
_NESTED_DIRECT = frozenset({Op.MOV_TO_CR3, Op.MOV_FROM_CR3, Op.INVLPG})


class HardwareParams(Params):
    nested_paging: bool = Field(
        True,
        description="EPT/NPT: guest edits its page tables freely; false: first-generation VT-x with "
        "shadow paging, where every guest PTE write and CR3 load exits",
    )


class HardwareAssisted(Mode[HardwareParams]):
    """Non-root execution; configured instructions exit (``vm_exits_<reason>``).

    With nested paging (the default) the guest's page-table writes and switches never exit,
    but every TLB miss walks two dimensions (24 references with 4-level tables). Without it,
    the hypervisor keeps shadow page tables and each guest PTE write costs a VM exit, as on
    the first-generation hardware Adams & Agesen measured.
    """

    name = "hardware-assisted"
    description = "unmodified guest in VT-x non-root mode; configured events exit; nested paging"
    architectures = ("x86-vt",)
    params_model = HardwareParams

    def __init__(self, params: HardwareParams, context: ModeContext) -> None:
        super().__init__(params, context)
        self.paging = "nested" if params.nested_paging else "shadow"

    def _exits(self, count: int, reason: str) -> None:
        """Count ``count`` VM exits for ``reason`` (one of the architecture's exit reasons)."""
        counters = self.context.counters
        counters["vm_exits"] += count
        counters[f"vm_exits_{reason}"] += count

    def pte_write_cycles(self, count: int) -> int:
        if self.paging == "nested":
            return 0
        self._exits(count, "exception")  # write-protection faults on guest page tables
        return count * (self.costs.vm_exit + self.costs.exit_emulate + self.costs.shadow_update)

    def shadow_fault_cycles(self, count: int, dirty: bool) -> int:
        # Without nested paging the shadow MMU's own faults are VM exits.
        self._exits(count, "exception")
        costs = self.costs
        return count * (costs.vm_exit + costs.exit_emulate + (costs.shadow_update if dirty else 0))

    def classify(self, op: int, kernel: bool) -> Action:
        if op == Op.HYPERCALL:
            return Action.FAULT
        if kernel and self.params.nested_paging and op in _NESTED_DIRECT:
            return Action.DIRECT  # the guest owns its page tables: CR3 and INVLPG need no exit
        if not kernel:
            if op in ORDINARY or op in (Op.PUSHF, Op.SGDT, Op.SIDT, Op.SMSW):
                return Action.DIRECT  # the registers read are the guest's own (loaded from the VMCS)
            if op == Op.POPF:
                return Action.DEPRIVILEGED  # CPL 3 cannot change IF, as on bare metal
            return Action.FAULT
        if op in self.arch.exits:
            return Action.EXIT
        return Action.DIRECT

    def deliver(self, vcpu: VCPUView, kind: str, count: int) -> int:
        costs = self.costs
        if kind == "syscall":
            return count * costs.syscall  # no exit: system calls run at native speed
        if kind == "page_fault":
            if self.paging == "nested":
                return count * costs.page_fault  # the guest's own fault: no exit
            # Shadow paging intercepts every #PF: the hypervisor walks the guest's tables to tell
            # a true fault from a hidden one, then injects it (Adams & Agesen's pgfault).
            self._exits(count, "exception")
            return count * (costs.vm_exit + costs.exit_emulate + costs.page_fault)
        if kind == "exception":
            return count * costs.interrupt
        # External interrupts exit to the hypervisor, which injects a virtual interrupt.
        self._exits(count, "external_interrupt")
        return count * (costs.vm_exit + costs.interrupt)

    def hidden_fault(self, vcpu: VCPUView, count: int) -> int:
        self._exits(count, "ept_violation" if self.paging == "nested" else "exception")
        return count * (self.costs.vm_exit + self.costs.page_zero)

    def notify_backend(self, vcpu: VCPUView) -> int:
        # A para-virtual driver in a hardware-assisted guest kicks its back end with an I/O
        # access (or VMCALL): one exit.
        self._exits(1, "io")
        return self.costs.vm_exit + self.costs.exit_emulate

    def io(self, vcpu: VCPUView, device: str, nbytes: int, write: bool) -> int:
        return nbytes * self.costs.byte_copy  # emulated device
