"""Content-based page sharing, the hypervisor's side: mapping guest pages onto one machine frame
copy-on-write, and breaking that sharing when a guest writes.

A sharing service (a ``memory_service`` plugin: ESX's scanner, Linux KSM...) decides *which*
pages to share; these functions do it safely, for every service alike. Sharing a page checks
that the contents are equal (a hash match is only a hint; a service that shares unequal pages
gets an error, not a corrupted guest), skips pinned pages (a para-virtual guest's page tables),
shoots down every cached translation to a frame that goes away, and keeps the counters: the
VM's ``mem_shared`` and the host's ``pages_sharing``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from vframework.errors import HostOutOfMemory, OutOfMemory
from vframework.machine.hardware import PRIVATE, SHARED

if TYPE_CHECKING:
    import numpy.typing as npt

    from vframework.hv.hypervisor import Hypervisor
    from vframework.hv.vm import VM

__all__ = ["break_sharing", "consumed_pages", "pinned_frames", "share_pages"]


def pinned_frames(vm: VM) -> npt.NDArray[np.int64]:
    """The VM's frames that must stay where they are: its para-virtual page tables, which the
    hypervisor validated at their machine address, and the frames their entries name (a
    para-virtual guest's page tables hold machine addresses); and the frames of pages under
    I/O (a device is reading or writing them)."""
    io = vm.io_pinned
    if not vm.pv_tables and not io.size:
        return np.empty(0, dtype=np.int64)
    parts = [vm.p2m[io].astype(np.int64)]
    if vm.pv_tables:
        tables = np.fromiter(vm.pv_tables, dtype=np.int64, count=len(vm.pv_tables))
        entries = np.concatenate([t[t >= 0] >> 1 for t in vm.pv_tables.values()])
        parts += [vm.p2m[tables].astype(np.int64), entries.astype(np.int64)]
    mpns = np.concatenate(parts)
    return mpns[mpns >= 0]


def share_pages(hv: Hypervisor, vm: VM, ppns: npt.ArrayLike, mpns: npt.ArrayLike) -> int:
    """Map each of the VM's pages ``ppns`` onto frame ``mpns[i]``, copy-on-write; returns how
    many were shared. The page's own frame is released; a private target frame becomes shared.

    Pages already on their target, unbacked pages and pinned pages or frames are skipped, and so
    are the pages and private frames of a VM whose ``share_pages`` is off (libvirt's nosharepages).
    Raises ValueError for pages outside the VM, frames that are free or the hypervisor's, or
    contents that differ (the full comparison every service must have made).
    """
    return _share(hv, vm, np.asarray(ppns, dtype=np.int64).reshape(-1), np.asarray(mpns, dtype=np.int64).reshape(-1))


def _share(hv: Hypervisor, vm: VM, ppns: npt.NDArray[np.int64], mpns: npt.NDArray[np.int64]) -> int:
    memory = hv.machine.memory
    if ppns.size != mpns.size:
        raise ValueError(f"share: {ppns.size} pages but {mpns.size} frames")
    if ppns.size == 0:
        return 0
    if int(ppns.min()) < 0 or int(ppns.max()) >= vm.memory_pages:
        raise ValueError(f"share: a page is outside VM {vm.name!r}'s {vm.memory_pages} pages")
    if int(mpns.min()) < 0 or int(mpns.max()) >= memory.frames:
        raise ValueError(f"share: a frame is outside the host's {memory.frames} frames")
    if np.unique(ppns).size != ppns.size:
        raise ValueError("share: the same page was given twice")
    state = memory.state[mpns]
    wrong = (state != PRIVATE) & (state != SHARED)
    if wrong.any():
        mpn = int(mpns[np.argmax(wrong)])
        raise ValueError(f"share: frame {mpn} is not a VM's frame; only VM memory is shared")
    if not vm.share_pages:
        return 0  # libvirt's nosharepages: whatever a service asks, its pages stay its own
    # Everyone whose memory changes stops running ahead first: this VM and the owners of the
    # private frames that become shared (their pages turn read-only).
    owners = {int(o) for o in memory.owner[mpns[state == PRIVATE]]}
    closed = sorted(o for o in owners if not hv.vms[o].share_pages)
    owners -= set(closed)
    for vm_id in sorted(owners | {vm.id}):
        hv.settle(hv.vms[vm_id])
    old = vm.p2m[ppns].astype(np.int64)
    keep = (old >= 0) & (old != mpns)
    if closed:  # nor does a private frame of such a VM become a shared one
        keep &= ~((state == PRIVATE) & np.isin(memory.owner[mpns], closed))
    pinned = pinned_frames(vm)
    for vm_id in owners:
        pinned = np.concatenate([pinned, pinned_frames(hv.vms[vm_id])])
    if pinned.size:
        keep &= ~np.isin(old, pinned) & ~np.isin(mpns, pinned)
    ppns, mpns, old = ppns[keep], mpns[keep], old[keep]
    if ppns.size == 0:
        return 0
    if np.isin(mpns, old).any():
        raise ValueError("share: a target frame is also the frame of a page being shared")
    differ = memory.content[old] != memory.content[mpns]
    if differ.any():
        i = int(np.argmax(differ))
        raise ValueError(
            f"share: page {int(ppns[i])} of VM {vm.name!r} and frame {int(mpns[i])} hold different "
            f"contents ({int(memory.content[old[i]]):#x} vs {int(memory.content[mpns[i]]):#x}); "
            "a hash match is only a hint: compare the full contents first"
        )
    # The owners of private targets see those pages become shared.
    first = np.unique(mpns[memory.state[mpns] == PRIVATE])
    for vm_id, count in zip(*np.unique(memory.owner[first], return_counts=True), strict=True):
        hv.vms[int(vm_id)].counters["mem_shared"] += int(count)
    was_private = int(np.count_nonzero(memory.state[old] == PRIVATE))
    hv.shoot_down(vm, old)
    memory.release(old)
    memory.share(mpns)
    vm.p2m[ppns] = mpns
    vm.counters["mem_shared"] += was_private
    return int(ppns.size)


def break_sharing(hv: Hypervisor, vm: VM, ppns: npt.NDArray[np.integer]) -> int:
    """The guest writes pages ``ppns`` that sit on shared frames: each gets a private copy (or
    keeps the frame, now private, if its mapping is the frame's last). Returns how many frames
    were copied."""
    memory = hv.machine.memory
    hv.settle(vm)
    ppns = np.unique(np.asarray(ppns, dtype=np.int64))
    old = vm.p2m[ppns].astype(np.int64)
    on_shared = memory.state[old] == SHARED
    ppns, old = ppns[on_shared], old[on_shared]
    if ppns.size == 0:
        return 0
    # A frame whose every mapping is in this write keeps one of them (its first), privately.
    frames, first, per = np.unique(old, return_index=True, return_counts=True)
    sole = memory.refcount[frames] == per
    keeper = np.zeros(ppns.size, dtype=bool)
    keeper[first[sole]] = True
    copy_ppns, copy_old = ppns[~keeper], old[~keeper]
    if copy_ppns.size:
        try:
            new = memory.allocate(int(copy_ppns.size), vm.id)
        except OutOfMemory as exc:
            raise HostOutOfMemory(
                f"VM {vm.name!r} wrote {copy_ppns.size} shared pages and the host has no frames "
                f"for their private copies ({exc}); reclaim memory or share less"
            ) from None
        memory.content[new] = memory.content[copy_old]
        hv.shoot_down(vm, copy_old)
        memory.release(copy_old)
        vm.p2m[copy_ppns] = new
    if keeper.any():
        memory.unshare(old[keeper], vm.id)
    vm.counters["mem_shared"] -= int(ppns.size)
    vm.counters["share_breaks"] += int(ppns.size)
    return int(copy_ppns.size)


def consumed_pages(hv: Hypervisor, vm: VM) -> int:
    """Machine memory the VM consumes: its private frames, plus 1/n of each frame it shares
    with n mappings (rounded down to whole pages)."""
    granted = vm.counters["mem_granted"]
    if not vm.counters["mem_shared"]:
        return granted
    memory = hv.machine.memory
    backed = vm.p2m[vm.p2m >= 0]
    shared = backed[memory.state[backed] == SHARED]
    share = float(np.sum(1.0 / memory.refcount[shared]))
    return granted - int(shared.size) + int(share)
