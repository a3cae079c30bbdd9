"""Hypervisor swap: paging guest frames out to the host's own swap device, behind the guest's back.

A ``memory_service`` (``host-swap``) picks the victims; these functions do the paging for every
service alike. Paging a page out saves its content, shoots down every cached translation and
frees the frame; the page is then unbacked, so the guest's next reference is a hidden fault that
backs it again, restores the content and makes the VM stall for the read. Only a VM's private
frames are paged (shared frames and pinned frames stay). A page the hypervisor paged out and the
guest then pages out itself is read back only to be written again: *double paging*, counted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from vframework.hv.sharing import pinned_frames
from vframework.machine.hardware import PRIVATE

if TYPE_CHECKING:
    import numpy.typing as npt

    from vframework.hv.hypervisor import Hypervisor
    from vframework.hv.vm import VM

__all__ = ["swap_in", "swap_out"]


def swap_out(hv: Hypervisor, vm: VM, ppns: npt.ArrayLike, read_ns: int) -> int:
    """Page the VM's pages ``ppns`` out to the host's swap; returns how many. Unbacked, shared
    and pinned pages are skipped, and so are the highest-numbered pages beyond what would take
    the VM below its ``mem_min``. ``read_ns``: what reading one page back will cost the VM."""
    if read_ns < 0:
        raise ValueError(f"swap_out: reading a page back cannot take {read_ns} ns")
    pages = np.unique(np.asarray(ppns, dtype=np.int64))
    if pages.size and (int(pages[0]) < 0 or int(pages[-1]) >= vm.memory_pages):
        raise ValueError(f"swap_out: a page is outside VM {vm.name!r}'s {vm.memory_pages} pages")
    hv.settle(vm)
    memory = hv.machine.memory
    mpns = vm.p2m[pages].astype(np.int64)
    ok = mpns >= 0
    ok[ok] = memory.state[mpns[ok]] == PRIVATE
    pinned = pinned_frames(vm)
    if pinned.size:
        ok &= ~np.isin(mpns, pinned)
    pages, mpns = pages[ok], mpns[ok]
    pages, mpns = pages[: vm.above_min], mpns[: vm.above_min]  # the VM's guarantee stays resident
    if pages.size == 0:
        return 0
    if vm.host_swapped is None or vm.host_swap_content is None:
        vm.host_swapped = np.zeros(vm.memory_pages, dtype=bool)
        vm.host_swap_content = np.zeros(vm.memory_pages, dtype=np.uint64)
    vm.host_swap_content[pages] = memory.content[mpns]
    vm.host_swapped[pages] = True
    vm.host_swap_read_ns = read_ns
    hv.release_pages(vm, pages)
    vm.counters["mem_swapped"] += int(pages.size)
    vm.counters["host_swap_outs"] += int(pages.size)
    return int(pages.size)


def swap_in(hv: Hypervisor, vm: VM, ppns: npt.NDArray[np.integer]) -> None:
    """Pages just backed again: those the hypervisor had paged out get their content back, and
    the VM owes a stall for reading them."""
    swapped, saved = vm.host_swapped, vm.host_swap_content
    assert swapped is not None
    assert saved is not None
    back = ppns[swapped[ppns]]
    if back.size == 0:
        return
    hv.machine.memory.content[vm.p2m[back]] = saved[back]
    swapped[back] = False
    vm.counters["mem_swapped"] -= int(back.size)
    vm.counters["host_swap_ins"] += int(back.size)
    vm.stall_ns += int(back.size) * vm.host_swap_read_ns
