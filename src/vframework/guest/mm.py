"""The guest kernel's memory manager: page tables, frame allocator, demand paging,
copy-on-write fork, process exit and swap to the guest's virtual disk.

Everything per page is numpy: a process's page table is an int32 array VPN -> PPN with a
uint8 flags array; the allocator keeps a stack of free PPNs, a reference count per PPN
(how many page-table entries map it: above one after a fork) and a reverse map (the
VPN that maps a private page; a page shared since a fork sits at the same VPN in every
sharer) used to pick swap victims. Page contents are the
machine frames' content handles, so a swapped-out page carries its content to the swap
area and back.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from vframework.errors import GuestOutOfMemory
from vframework.guest.ops import Operation
from vframework.machine.freestack import FreeStack

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = [
    "PTES_PER_TABLE",
    "PTE_ACCESSED",
    "PTE_COW",
    "PTE_DIRTY",
    "PTE_PRESENT",
    "PTE_SWAPPED",
    "PTE_USER",
    "PTE_WRITABLE",
    "ContentLayout",
    "GuestMemory",
    "GuestOutOfMemory",
    "GuestProcess",
    "name_seed",
    "write_content",
]

#: Entries in one page-table page: 4-byte PTEs in a 4 KiB page (32-bit x86 without PAE, as the
#: kernels of the papers reproduced here).
PTES_PER_TABLE = 1024
PTE_PRESENT, PTE_WRITABLE, PTE_USER, PTE_ACCESSED, PTE_DIRTY, PTE_COW, PTE_SWAPPED = 1, 2, 4, 8, 16, 32, 64
_MIX = np.uint64(0x9E37_79B9_7F4A_7C15)


def write_content(
    content: npt.NDArray[np.uint64],
    mpns: npt.NDArray[np.integer],
    vpns: npt.NDArray[np.int64],
    stamp: int,
    salt: int = 0,
) -> None:
    """A write to pages ``vpns`` (at frames ``mpns``) changes their content deterministically:
    the new handle depends only on the old one, the page, the write's stamp and the writer's
    ``salt`` (one per process: two VMs writing the same page at the same count still write
    different data), never on which frame holds it, so runs under different modes can be
    compared byte for byte."""
    old = content[mpns]
    token = ((vpns.astype(np.uint64) + np.uint64(1)) * _MIX + np.uint64(stamp & 0xFFFF_FFFF)) ^ np.uint64(salt)
    content[mpns] = (old ^ token) * _MIX + np.uint64(1)


def name_seed(name: str) -> int:
    """A stable 64-bit seed for a name (an image, a VM): the same in every run and process."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")


@dataclass(frozen=True)
class ContentLayout:
    """What a process's pages hold when first touched, by VPN region, in this order:

    ``image`` pages read from the VM's image (kernel, libraries, program text: identical in
    every VM booted from the same image), ``zero`` pages (allocated, never written), ``private``
    pages (data only this process has, written once) and the rest, *volatile*: zero until the
    workload writes them, and rewritten as it runs.
    """

    #: Pages of image content.
    image: int = 0
    #: Pages that stay zero.
    zero: int = 0
    #: Pages of private data, written once when first touched.
    private: int = 0

    def __post_init__(self) -> None:
        for name in ("image", "zero", "private"):
            if getattr(self, name) < 0:
                raise ValueError(f"a content layout cannot have {getattr(self, name)} {name} pages")

    @property
    def volatile_start(self) -> int:
        """The first volatile VPN."""
        return self.image + self.zero + self.private

    def fill(self, vpns: npt.NDArray[np.int64], image_seed: int, private_seed: int) -> npt.NDArray[np.uint64]:
        """The content tokens of freshly touched pages ``vpns``."""
        v = vpns.astype(np.uint64)
        image = (v ^ np.uint64(image_seed)) * _MIX + np.uint64(1)
        private = ((v + np.uint64(1)) * _MIX ^ np.uint64(private_seed)) * _MIX + np.uint64(1)
        zero_end, private_end = self.image + self.zero, self.volatile_start
        out = np.zeros(vpns.size, dtype=np.uint64)
        np.copyto(out, image, where=vpns < self.image)
        np.copyto(out, private, where=(vpns >= zero_end) & (vpns < private_end))
        return out


class GuestProcess:
    """A guest process: its page table and the workload generator that drives it."""

    __slots__ = (
        "epoch",
        "layout",
        "lookahead",
        "op_ns",
        "ops",
        "page_table",
        "pid",
        "plan_backoff",
        "plan_cap",
        "plan_wait",
        "pte_flags",
        "salt",
        "swap_slot",
        "writes",
    )

    def __init__(
        self,
        pid: int,
        pages: int,
        ops: Generator[Operation, None, None] | None,
        layout: ContentLayout | None = None,
    ) -> None:
        self.pid = pid
        #: What its pages hold when first touched (None: zero, as a fresh anonymous page).
        self.layout = layout
        #: VPN -> PPN (-1: not mapped).
        self.page_table = np.full(pages, -1, dtype=np.int32)
        self.pte_flags = np.zeros(pages, dtype=np.uint8)
        #: VPN -> swap slot while swapped out (allocated on first swap-out).
        self.swap_slot: npt.NDArray[np.int32] | None = None
        self.ops = ops
        #: Write batches so far (stamps content writes).
        self.writes = 0
        #: What makes this process's writes its own (see :func:`write_content`); set by the OS.
        self.salt = 0
        #: Operations taken from ``ops`` ahead of time and not run yet (run first, in order).
        self.lookahead: deque[Operation] = deque()
        #: How many times accessed bits were cleared (a planned run re-checks them after one).
        self.epoch = 0
        #: Mean ns of the operations last run ahead (how many to plan next time).
        self.op_ns = 0.0
        #: Steps to take before trying to plan again, and the back-off that set it.
        self.plan_wait = 0
        self.plan_backoff = 0
        #: At most this many operations in the next plan (grows while plans succeed).
        self.plan_cap = 16

    @property
    def table_pages(self) -> int:
        """Page-table pages of its address space: the top-level table and one leaf table per
        :data:`PTES_PER_TABLE` VPNs of its span."""
        return 1 + -(-self.page_table.size // PTES_PER_TABLE)

    def mapped(self) -> npt.NDArray[np.int64]:
        """VPNs currently present."""
        # ndarray.nonzero on the 1-D flags: no flattening wrapper, and no copy when intp is int64.
        return (self.pte_flags & PTE_PRESENT).nonzero()[0].astype(np.int64, copy=False)


class GuestMemory:
    """Guest-physical pages ``0..pages-1`` and a swap area of ``swap_pages``."""

    def __init__(self, pages: int, swap_pages: int = 0) -> None:
        self.pages = pages
        self._free = FreeStack(pages)
        #: Page-table entries mapping each PPN beyond the first (shared since a fork): 0 for a
        #: private page, and for a free one. A guest that never forks never writes it, so its
        #: host memory is never touched.
        self.sharers = np.zeros(pages, dtype=np.int32)
        #: The reverse map: the VPN at which each PPN is mapped (-1: free). A page shared since a
        #: fork sits at the same VPN in every sharer, so the processes that map a page are found
        #: by looking at that VPN in their page tables (as Linux's anon_vma leads to the VMAs).
        self.rmap_vpn = np.full(pages, -1, dtype=np.int32)
        self.swap_pages = swap_pages
        self.swap_content = np.zeros(swap_pages, dtype=np.uint64)
        self._swap_free = FreeStack(swap_pages)
        #: Processes whose page table points at each swap slot (a fork shares swapped pages).
        self.slot_refs = np.zeros(swap_pages, dtype=np.int32)
        self._clock = 0
        #: The PPNs the balloon driver holds (given to the hypervisor: never mapped, no frame).
        self.balloon: list[int] = []

    @property
    def free_pages(self) -> int:
        return len(self._free)

    @property
    def free_swap_slots(self) -> int:
        return len(self._swap_free)

    def take(self, count: int) -> npt.NDArray[np.int64]:
        """``count`` free PPNs (the caller checked there are enough)."""
        return self._free.take(count)

    def give_back(self, ppns: npt.NDArray[np.integer]) -> None:
        """Return PPNs whose last mapping went away."""
        self.rmap_vpn[ppns] = -1
        self._free.give(ppns)

    def victims(self, count: int, pinned: npt.NDArray[np.integer] | None = None) -> npt.NDArray[np.int64]:
        """Up to ``count`` mapped PPNs to swap out, chosen by a clock hand; never one of
        ``pinned`` (the pages the faulting reference itself needs). A page shared since a fork
        may go too: every process that maps it then points at the same swap slot."""
        eligible = self.rmap_vpn >= 0
        if pinned is not None and pinned.size:
            eligible[pinned] = False
        candidates = np.flatnonzero(eligible)
        if candidates.size == 0:
            return candidates
        start = np.searchsorted(candidates, self._clock)
        ordered = np.concatenate([candidates[start:], candidates[:start]])[:count]
        self._clock = int(ordered[-1]) + 1 if ordered.size else 0
        return ordered.astype(np.int64)

    def swap_slots(self, count: int) -> npt.NDArray[np.int64] | None:
        """``count`` free swap slots, or None if the swap area has fewer."""
        if count > len(self._swap_free):
            return None
        slots = self._swap_free.take(count)
        self.slot_refs[slots] = 1
        return slots

    def share_slots(self, slots: npt.NDArray[np.integer]) -> None:
        """A forked child maps these swapped pages too."""
        np.add.at(self.slot_refs, slots, self.slot_refs.dtype.type(1))

    def free_slots(self, slots: npt.NDArray[np.integer]) -> None:
        """One process no longer points at ``slots``; a slot no one points at is free again."""
        np.subtract.at(self.slot_refs, slots, self.slot_refs.dtype.type(1))
        freed = slots[self.slot_refs[slots] == 0]
        # Each freed slot once, in the order given (the order keeps reuse deterministic).
        self._swap_free.give(freed[np.sort(np.unique(freed, return_index=True)[1])])
