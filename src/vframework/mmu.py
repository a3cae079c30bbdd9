"""The MMU: TLBs, page-walk costs, shadow page tables, and the batch translation path.

Translation has two levels. The guest's page table maps VPN -> PPN; the VM's P2M maps
PPN -> MPN. What the hardware walks on a TLB miss depends on the mode:

* bare metal and para-virtual (direct paging): one table, ``levels`` references;
* full virtualization: the hypervisor's *shadow* page table (VPN -> MPN), ``levels``
  references; a missing shadow entry is a hidden fault the hypervisor fills from guest
  page table o P2M;
* nested paging (EPT / NPT): every guest level is a guest-physical address that itself needs
  a nested walk: ``(levels + 1) ** 2 - 1`` references (24 with 4-level tables).

A TLB is direct-mapped (set = key mod entries) and simulated exactly for a whole batch of
accesses with numpy: an access hits when the previous access to its set (in the batch, or the
entry left by earlier batches) had the same key. Keys carry an address-space tag (VM and
process, like VPID/ASID) when the TLB is tagged; untagged TLBs are flushed on every switch.
"""

from __future__ import annotations

import numpy as np

__all__ = ["TLB", "walk_references", "asid", "ShadowTables"]

_KEY_SHIFT = 36


def walk_references(levels: int, nested: bool) -> int:
    """Memory references of one page walk: ``levels``, or ``(levels+1)^2 - 1`` when nested."""
    return (levels + 1) ** 2 - 1 if nested else levels


def asid(vm_id: int, pid: int) -> int:
    """The address-space tag of one guest process."""
    return (vm_id << 12) | (pid & 0xFFF)


class TLB:
    """A direct-mapped TLB of ``entries`` entries (a power of two)."""

    def __init__(self, entries: int = 1024, tagged: bool = False) -> None:
        if entries <= 0 or entries & (entries - 1):
            raise ValueError(f"TLB entries must be a positive power of two, got {entries}")
        self.entries = entries
        self.tagged = tagged
        self.keys = np.full(entries, -1, dtype=np.int64)
        self.mpns = np.full(entries, -1, dtype=np.int64)
        self.flushes = 0

    def key(self, tag: int, vpns: np.ndarray) -> np.ndarray:
        """Lookup keys for VPNs in the address space ``tag`` (ignored when untagged)."""
        return (np.int64(tag if self.tagged else 0) << _KEY_SHIFT) | vpns

    def flush(self) -> None:
        """Invalidate every entry (a page-table switch on an untagged TLB)."""
        self.keys[:] = -1
        self.flushes += 1

    def flush_tag(self, tag: int) -> None:
        """Invalidate the entries of one address space."""
        if not self.tagged:
            self.flush()
            return
        mine = (self.keys >> _KEY_SHIFT) == tag
        self.keys[mine] = -1

    def flush_page(self, tag: int, vpn: int) -> None:
        """Invalidate one page's entry (INVLPG)."""
        k = int(self.key(tag, np.array([vpn], dtype=np.int64))[0])
        slot = k & (self.entries - 1)
        if self.keys[slot] == k:
            self.keys[slot] = -1

    def flush_keys(self, keys: np.ndarray) -> None:
        """Invalidate the entries of these keys, if present (INVLPG of each page)."""
        slots = keys & (self.entries - 1)
        match = self.keys[slots] == keys
        self.keys[slots[match]] = -1

    def flush_mpns(self, mpns: np.ndarray) -> None:
        """Invalidate entries that translate to any of ``mpns`` (a shootdown after the
        hypervisor takes frames away)."""
        stale = np.isin(self.mpns, mpns) & (self.keys >= 0)
        self.keys[stale] = -1

    def access(self, keys: np.ndarray, fill: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Look up ``keys`` in order; misses are filled with ``fill`` (the walk's result).

        Returns ``(hit, mpns)``: which accesses hit, and the MPN each access used (a hit's
        MPN comes from the TLB, so a stale entry would show).
        """
        n = keys.size
        mpns = fill.copy()
        if n == 0:
            return np.zeros(0, dtype=bool), mpns
        mask = self.entries - 1
        sets = (keys & mask).astype(np.uint16 if self.entries <= 65536 else np.int64)
        order = np.argsort(sets, kind="stable")
        s_sets, s_keys = sets[order], keys[order]
        first = np.empty(n, dtype=bool)
        first[0] = True
        first[1:] = s_sets[1:] != s_sets[:-1]
        hit_sorted = np.empty(n, dtype=bool)
        hit_sorted[1:] = s_keys[1:] == s_keys[:-1]
        # The first access to each set compares with what the set held before the batch.
        old = self.keys[s_sets[first]]
        hit_sorted[first] = old == s_keys[first]
        hit = np.empty(n, dtype=bool)
        hit[order] = hit_sorted
        # Pre-batch hits use the cached translation.
        first_hits = order[first][hit_sorted[first]]
        mpns[first_hits] = self.mpns[sets[first_hits]]
        # The last access to each set stays in the TLB.
        last = np.empty(n, dtype=bool)
        last[-1] = True
        last[:-1] = s_sets[1:] != s_sets[:-1]
        idx = order[last]
        self.keys[sets[idx]] = keys[idx]
        self.mpns[sets[idx]] = mpns[idx]
        return hit, mpns

    def valid(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, mpns) of the valid entries."""
        ok = self.keys >= 0
        return self.keys[ok], self.mpns[ok]

    @staticmethod
    def split(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(tags, vpns) of keys."""
        return keys >> _KEY_SHIFT, keys & ((1 << _KEY_SHIFT) - 1)


class ShadowTables:
    """A VM's shadow page tables: one VPN -> MPN array per guest page table (process).

    Invariant (checked by the conformance kit): every valid shadow entry equals guest page
    table o P2M for its VPN.
    """

    def __init__(self) -> None:
        self.tables: dict[int, np.ndarray] = {}

    def table(self, pid: int, pages: int) -> np.ndarray:
        shadow = self.tables.get(pid)
        if shadow is None or shadow.size < pages:
            grown = np.full(pages, -1, dtype=np.int64)
            if shadow is not None:
                grown[: shadow.size] = shadow
            shadow = self.tables[pid] = grown
        return shadow

    def invalidate(self, pid: int, vpns: np.ndarray) -> None:
        shadow = self.tables.get(pid)
        if shadow is not None:
            shadow[vpns[vpns < shadow.size]] = -1

    def drop(self, pid: int) -> None:
        self.tables.pop(pid, None)

    def invalidate_mpns(self, mpns: np.ndarray) -> int:
        """Invalidate entries pointing at frames the hypervisor took back; returns how many."""
        count = 0
        for shadow in self.tables.values():
            stale = np.isin(shadow, mpns)
            count += int(np.count_nonzero(stale))
            shadow[stale] = -1
        return count
