"""The hypercall table: what a para-virtual guest may ask, and the validation of every argument.

Every hypercall validates all of its arguments before it changes anything; an invalid one
returns a negative error code (Linux errno values, as Xen does) and leaves the guest, the VM
and the host exactly as they were. Page-table hypercalls follow Xen's page-type rules: a guest
may map only frames it owns; a frame in use as a page table is never mapped writable; a page-
table frame cannot be released while registered.

The event mask and the virtual registers live in the shared-info page (Xen's
``evtchn_upcall_mask`` and friends): reading and writing them costs a memory access, not a
hypervisor entry, except when unmasking finds events pending (then the guest makes a real
hypercall to have them delivered).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from vframework.errors import HostOutOfMemory
from vframework.guest.kernel import DISK_PORTS, HC, HYPERCALL_NAMES, unpack
from vframework.machine.isa import IF_FLAG, NREGS

if TYPE_CHECKING:
    from vframework.hv.hypervisor import Hypervisor
    from vframework.hv.vm import VM
    from vframework.machine.cpu import GuestCPU

__all__ = ["DEVICE_PORTS", "EBUSY", "EINVAL", "ENOMEM", "ENOSYS", "EPERM", "PT_ENTRIES", "hypercall"]

ENOSYS, EINVAL, EPERM, EBUSY, ENOMEM = -38, -22, -1, -16, -12
#: Ports a guest may reach through device_operation: its disk and its interrupt controller.
DEVICE_PORTS = frozenset({*DISK_PORTS, 0x20})
#: Entries in one para-virtual page table.
PT_ENTRIES = 512
#: Updates one update_page_table call may carry.
MAX_BATCH = 64

#: READ_VIRTUAL reads one of: flags, cr3, gdtr, idtr, msw.
_VIRTUAL_REGISTERS = 5


def _reg(r: int) -> bool:
    return 0 <= r < NREGS


def hypercall(hv: Hypervisor, vm: VM, ctx: GuestCPU, number: int, arg: int) -> tuple[int, int, bool]:
    """Perform hypercall ``number``; returns ``(result, cycles, entered)``: the result code (0 or
    a negative errno), its cycles, and whether it entered the hypervisor (vs a shared-page access)."""
    costs = hv.machine.costs
    call = costs.hypercall
    if number == HC.SET_EVENT_MASK:
        how, r = unpack(arg, 2)
        if how not in (0, 1, 2) or not _reg(r):
            return EINVAL, call, True
        if how == 0:
            ctx.flags |= IF_FLAG
        elif how == 1:
            ctx.flags &= ~IF_FLAG
        else:
            ctx.flags = (ctx.regs[r] & 0xFFFF_FFFF) | 0x2
        unmasked_with_work = bool(ctx.flags & IF_FLAG) and bool(ctx.pending)
        return 0, call if unmasked_with_work else costs.memory_access, unmasked_with_work
    if number == HC.READ_VIRTUAL:
        which, r = unpack(arg, 2)
        if which >= _VIRTUAL_REGISTERS or not _reg(r):
            return EINVAL, call, True
        ctx.regs[r] = (ctx.flags, ctx.cr3, ctx.gdtr, ctx.idtr, ctx.msw & 0xFFFF)[which]
        return 0, costs.memory_access, False
    if number == HC.SET_DESCRIPTOR_TABLE:
        which, r = unpack(arg, 2)
        if which > 1 or not _reg(r):
            return EINVAL, call, True
        if which == 0:
            ctx.gdtr = ctx.regs[r] & 0xFFFF_FFFF
        else:
            ctx.idtr = ctx.regs[r] & 0xFFFF_FFFF
        return 0, call, True
    if number == HC.DEVICE_OPERATION:
        write, r, port = unpack(arg, 3)
        if write > 1 or not _reg(r):
            return EINVAL, call, True
        if port not in DEVICE_PORTS:
            return EPERM, call, True
        if write:
            ctx.ports[port] = ctx.regs[r] & 0xFFFF_FFFF
        else:
            ctx.regs[r] = ctx.ports.get(port, 0)
        cycles = call + costs.emulate
        if hv.hosted:
            cycles += 2 * costs.world_switch
            vm.counters["world_switches"] += 2
        return 0, cycles, True
    if number in (HC.YIELD, HC.BLOCK):
        if arg != 0:
            return EINVAL, call, True
        if number == HC.BLOCK:
            ctx.halts += 1
        return 0, call, True
    if number == HC.INVLPG:
        if not _reg(arg):
            return EINVAL, call, True
        return 0, call + costs.tlb_flush, True
    if number == HC.CREATE_PAGE_TABLE:
        return _create_page_table(hv, vm, ctx, arg), call, True
    if number == HC.SWITCH_TO_PAGE_TABLE:
        if not _reg(arg):
            return EINVAL, call, True
        base = ctx.regs[arg]
        # An unregistered base is refused, except the boot table the kernel starts with.
        if vm.pv_tables and base not in vm.pv_tables:
            return EINVAL, call, True
        ctx.cr3 = base & 0xFFFF_FFFF
        return 0, call + costs.tlb_flush, True
    if number == HC.UPDATE_PAGE_TABLE:
        result, n = _update_page_table(vm, ctx, arg)
        return result, call + n * costs.emulate, True
    if number == HC.BALLOON_INFLATE:
        return _balloon(hv, vm, ctx, arg, inflate=True), call, True
    if number == HC.BALLOON_DEFLATE:
        return _balloon(hv, vm, ctx, arg, inflate=False), call, True
    return ENOSYS, call, True


def _create_page_table(hv: Hypervisor, vm: VM, ctx: GuestCPU, arg: int) -> int:
    """Register guest frame regs[arg] (a PPN) as a page table; it becomes read-only to the guest."""
    if not _reg(arg):
        return EINVAL
    ppn = ctx.regs[arg]
    if not 0 <= ppn < vm.memory_pages:
        return EINVAL
    if ppn in vm.pv_tables:
        return EBUSY
    if vm.p2m[ppn] < 0:
        return EINVAL  # not backed by a frame this VM owns
    writable = (int(vm.p2m[ppn]) << 1) | 1
    if any(np.any(t == writable) for t in vm.pv_tables.values()):
        # Xen's page types: a frame still mapped writable cannot take the page-table type
        # (else the guest could write its own page table behind the hypervisor's back).
        return EBUSY
    vm.pv_tables[ppn] = np.full(PT_ENTRIES, -1, dtype=np.int64)
    return 0


def _update_page_table(vm: VM, ctx: GuestCPU, arg: int) -> tuple[int, int]:
    """A batch of updates (Xen's mmu_update): ``arg`` packs (first register, count); each update
    is three consecutive guest memory words at ``mem[regs[first] + 3*i]``: table PPN, index,
    and the new entry (MPN << 1 | writable, or -1 to clear). All are checked, then all applied."""
    first, count = unpack(arg, 2)
    if not _reg(first) or not 1 <= count <= MAX_BATCH:
        return EINVAL, 0
    base = ctx.regs[first]
    updates = []
    owned = vm.p2m[vm.p2m >= 0]
    table_mpns = {int(vm.p2m[p]) for p in vm.pv_tables}
    for i in range(count):
        table = ctx.mem.get(base + 3 * i, -1)
        index = ctx.mem.get(base + 3 * i + 1, -1)
        entry = ctx.mem.get(base + 3 * i + 2, -1)
        if table not in vm.pv_tables or not 0 <= index < PT_ENTRIES:
            return EINVAL, 0
        if entry != -1:
            mpn, writable = entry >> 1, entry & 1
            if mpn < 0 or not np.any(owned == mpn):
                return EPERM, 0  # not this VM's frame
            if writable and mpn in table_mpns:
                return EPERM, 0  # a page table is never mapped writable
        updates.append((table, index, entry))
    for table, index, entry in updates:
        vm.pv_tables[table][index] = entry
    return 0, count


def _balloon(hv: Hypervisor, vm: VM, ctx: GuestCPU, arg: int, inflate: bool) -> int:
    """Give guest page regs[arg] to the hypervisor (inflate) or take it back (deflate)."""
    if not _reg(arg):
        return EINVAL
    ppn = ctx.regs[arg]
    if not 0 <= ppn < vm.memory_pages:
        return EINVAL
    if inflate:
        if vm.p2m[ppn] < 0:
            return EINVAL  # already without a frame
        if ppn in vm.pv_tables:
            return EBUSY  # a page-table frame cannot be released while in use
        mpn = int(vm.p2m[ppn])
        if any(np.any((t >= 0) & ((t >> 1) == mpn)) for t in vm.pv_tables.values()):
            # Still mapped by one of its page tables. Xen keeps such a page allocated until the
            # last mapping goes; the model refuses, so a released frame is never left mapped.
            return EBUSY
        hv.release_pages(vm, np.array([ppn], dtype=np.int64))
        vm.counters["mem_balloon"] += 1
        return 0
    if vm.p2m[ppn] >= 0 or vm.counters["mem_balloon"] == 0:
        return EINVAL

    try:
        hv.back_pages(vm, np.array([ppn], dtype=np.int64), hidden=False)
    except HostOutOfMemory:  # the host has no frame to give back right now
        return ENOMEM
    vm.counters["mem_balloon"] -= 1
    return 0


def describe(number: int) -> str:
    """The hypercall's name, or 'unknown(N)'."""
    return HYPERCALL_NAMES.get(number, f"unknown({number})")
