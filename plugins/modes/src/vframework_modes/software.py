"""Software virtualization of an unmodified guest: ``full`` (trap-and-emulate plus binary
translation, as VMware ESX before hardware assist) and ``trap-and-emulate`` alone.

The guest kernel runs deprivileged. Its privileged instructions trap and the hypervisor
emulates them against the VM's virtual CPU state. On x86 that is not enough: POPF, PUSHF,
SGDT, SIDT and SMSW do not trap at CPL > 0, they silently act on the real state, so plain
trap-and-emulate breaks the guest (the equivalence check shows how). The binary translator
scans each guest kernel block on first execution and replaces every sensitive instruction
with a callout into the hypervisor, caching the translation; user code runs directly.
"""

from __future__ import annotations

from typing import ClassVar

from vframework.api import ORDINARY, Action, Block, Mode, ModeContext, Op, Params, VCPUView


class _Deprivileged(Mode[Params]):
    """What the two software modes share: the costs of running a guest kernel deprivileged,
    and shadow page tables (the hypervisor keeps VPN -> MPN; guest page tables are
    write-protected so that every guest PTE write reaches it)."""

    paging = "shadow"

    def _user(self, op: int) -> Action:
        if op in ORDINARY:
            return Action.DIRECT
        if op in self.arch.sensitive_unprivileged:
            # User code runs natively: PUSHF/SGDT/SIDT/SMSW read the real registers (how
            # "red pill" detects a VMM from user level), POPF cannot change IF.
            return Action.DEPRIVILEGED
        return Action.FAULT

    def deliver(self, vcpu: VCPUView, kind: str, count: int) -> int:
        # Every discontinuity enters the hypervisor first (a trap), which then reflects it
        # into the guest kernel: Adams & Agesen measured ~2,000 extra cycles per system call.
        costs = self.costs
        native = {"syscall": costs.syscall, "page_fault": costs.page_fault}.get(kind, costs.interrupt)
        self.context.counters["traps"] += count
        return count * (native + costs.trap)

    def hidden_fault(self, vcpu: VCPUView, count: int) -> int:
        return count * (self.costs.trap + self.costs.page_zero)

    def notify_backend(self, vcpu: VCPUView) -> int:
        # The driver's doorbell access is privileged in the deprivileged kernel: it traps.
        self.context.counters["traps"] += 1
        return self.costs.trap + self.costs.emulate

    def io(self, vcpu: VCPUView, device: str, nbytes: int, write: bool) -> int:
        return nbytes * self.costs.byte_copy  # an emulated device copies the data through the VMM


class TrapAndEmulate(_Deprivileged):
    """Deprivileged guest kernel; privileged instructions trap and are emulated. Correct only
    on a classically virtualizable architecture."""

    name = "trap-and-emulate"
    known_limitations: ClassVar[dict[str, str]] = {
        "costs": "an emulated port access and the back-end doorbell (2,300 cycles: trap + emulation) cost less "
        "than on bare metal (3,201; 3,200): the device model answers without the device access bare metal pays"
    }
    description = "unmodified guest deprivileged; traps emulated; no binary translation (breaks on x86)"
    # Checked on ``classic`` by default, where it is correct; ``vframework check
    # trap-and-emulate --arch x86`` shows it failing.
    architectures = ("classic", "x86", "x86-vt")

    def classify(self, op: int, kernel: bool) -> Action:
        if not kernel:
            return self._user(op)
        if op in ORDINARY:
            return Action.DIRECT
        if op in self.arch.privileged:
            return Action.TRAP
        if op in self.arch.sensitive_unprivileged:
            return Action.DEPRIVILEGED  # no trap: the instruction silently misbehaves
        return Action.FAULT  # HYPERCALL: not an instruction an unmodified guest has

    def pte_write_cycles(self, count: int) -> int:
        # Each write to a write-protected guest page table traps; the hypervisor emulates it
        # and updates the shadow entry.
        return count * (self.costs.trap + self.costs.emulate + self.costs.shadow_update)


class Full(_Deprivileged):
    """Trap-and-emulate plus binary translation of guest kernel code (VMware ESX)."""

    name = "full"
    known_limitations: ClassVar[dict[str, str]] = {
        "costs": "a translated port access and the doorbell (340 cycles: callout + emulation) and a CR3 load "
        "(40, no TLB flush) cost less than on bare metal (3,201; 3,200; 101)"
    }
    description = "unmodified guest: binary translation of kernel code + trap-and-emulate (VMware ESX)"

    def __init__(self, params: Params, context: ModeContext) -> None:
        super().__init__(params, context)
        # Translation cache: id(block) -> block (kept alive so ids stay unique).
        self._translated: dict[int, Block] = {}

    def classify(self, op: int, kernel: bool) -> Action:
        if not kernel:
            return self._user(op)
        if op == Op.CALL:
            return Action.CALLOUT  # the translated return needs its target looked up (an indirect branch)
        if op in ORDINARY:
            return Action.DIRECT
        if op in self.arch.sensitive:
            # The translator rewrites privileged and sensitive instructions alike into
            # callouts: cheaper than a trap, and correct for POPF & co.
            return Action.CALLOUT
        return Action.FAULT

    def pte_write_cycles(self, count: int) -> int:
        # Adaptive binary translation turns the guest's PTE stores into callouts that update
        # the shadow without a trap (Adams & Agesen's ptemod: 391 cycles).
        self.context.counters["bt_callouts"] += count
        return count * self.costs.shadow_update

    def notify_backend(self, vcpu: VCPUView) -> int:
        # The translator turns the doorbell access into a callout to the device model.
        self.context.counters["bt_callouts"] += 1
        return self.costs.bt_call + self.costs.emulate

    def before_block(self, vcpu: VCPUView, block: Block) -> int:
        if not block.kernel:
            return 0  # user code runs directly, untranslated
        counters = self.context.counters
        if id(block) in self._translated:
            counters["bt_cache_hits"] += 1
            return 0
        self._translated[id(block)] = block
        counters["bt_translations"] += 1
        return self.costs.bt_translate
