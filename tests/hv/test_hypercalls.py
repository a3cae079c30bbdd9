"""Paravirtual hypercalls keep resource control: the conformance kit's falsifying examples
(its resource-control machine, with a paravirtual guest as the attacker), replayed step by step."""

from __future__ import annotations

from typing import Any

from vframework import PluginManager
from vframework.guest.kernel import HC, pack
from vframework.hv.hypercalls import EBUSY
from vframework.testing.equivalence import ResourceControlMachine


def _pv_guest_mapping(ppn: int, writable: bool) -> Any:
    """A paravirtual attacker in the resource-control machine, booted, with PPN 0 made a page
    table whose entry 0 maps PPN ``ppn``'s frame."""
    plugins = PluginManager(autoload=True)
    machine = ResourceControlMachine.for_component(plugins.get("mode", "paravirtual"))()
    machine.boot()
    machine.frame_hypercall(reg=0, value=0, number=HC.CREATE_PAGE_TABLE)
    vm, ctx = machine.attacker.vm, machine.attacker.ctx
    ctx.mem[0x40], ctx.mem[0x41], ctx.mem[0x42] = 0, 0, (int(vm.p2m[ppn]) << 1) | int(writable)
    ctx.regs[0] = 0x40
    machine._hypercall(HC.UPDATE_PAGE_TABLE, pack(0, 1))
    assert ctx.hcr == 0
    return machine


def test_a_frame_mapped_by_a_page_table_cannot_be_ballooned_out() -> None:
    """The kit's falsifying example (paravirtual resource control), replayed: a guest maps its own
    frame read-only in one of its page tables, then balloons that frame out. Releasing it would
    leave the table mapping a frame the VM no longer owns; the hypercall must fail instead."""
    machine = _pv_guest_mapping(2, writable=False)
    machine.frame_hypercall(reg=0, value=2, number=HC.BALLOON_INFLATE)
    assert machine.attacker.ctx.hcr == EBUSY
    machine.frames_owned_and_typed()
    machine.teardown()


def test_a_frame_mapped_writable_cannot_become_a_page_table() -> None:
    """The kit's falsifying example (paravirtual resource control, thorough profile), replayed:
    the guest maps one of its frames writable in its page table, then asks for that frame to
    become a page table. Accepting would leave a page table the guest can write directly."""
    machine = _pv_guest_mapping(1, writable=True)
    machine.frame_hypercall(reg=0, value=1, number=HC.CREATE_PAGE_TABLE)
    assert machine.attacker.ctx.hcr == EBUSY
    machine.frames_owned_and_typed()
    machine.teardown()
