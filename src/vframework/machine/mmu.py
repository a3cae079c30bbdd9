"""The MMU hardware: TLBs, page-walk references and shadow page tables. The batch translation
that composes them for a VM is the monitor's (:mod:`vframework.hv.monitor`).

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

import functools
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["TLB", "ShadowTables", "TLBRun", "asid", "walk_references"]

_KEY_SHIFT = 36


def walk_references(levels: int, nested: bool) -> int:
    """Memory references of one page walk: ``levels``, or ``(levels+1)^2 - 1`` when nested."""
    return (levels + 1) ** 2 - 1 if nested else levels


def asid(vm_id: int, pid: int) -> int:
    """The address-space tag of one guest process."""
    return (vm_id << 12) | (pid & 0xFFF)


class TLB:
    """A direct-mapped TLB of ``entries`` entries (a power of two).

    Its batch methods run once per batch of references (256 by default), so they call array
    methods (``a.nonzero()``, ``a.argsort()``, ``np.concatenate``) rather than numpy's
    Python-level wrappers (``np.flatnonzero``, ``np.append``): on small batches the wrappers'
    overhead was a tenth of the batch path."""

    def __init__(self, entries: int = 1024, tagged: bool = False) -> None:
        if entries <= 0 or entries & (entries - 1):
            raise ValueError(f"TLB entries must be a positive power of two, got {entries}")
        self.entries = entries
        self.tagged = tagged
        self.keys = np.full(entries, -1, dtype=np.int64)
        self.mpns = np.full(entries, -1, dtype=np.int64)
        self.flushes = 0

    def key(self, tag: int, vpns: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Lookup keys for VPNs in the address space ``tag`` (ignored when untagged)."""
        if not self.tagged or tag == 0:
            return vpns  # the key is the VPN itself: no copy on the batch path
        return (np.int64(tag) << _KEY_SHIFT) | vpns

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

    def flush_keys(self, keys: npt.NDArray[np.int64]) -> None:
        """Invalidate the entries of these keys, if present (INVLPG of each page)."""
        slots = keys & (self.entries - 1)
        match = self.keys[slots] == keys
        self.keys[slots[match]] = -1

    def flush_mpns(self, mpns: npt.NDArray[np.integer]) -> None:
        """Invalidate entries that translate to any of ``mpns`` (a shootdown after the
        hypervisor takes frames away)."""
        stale = np.isin(self.mpns, mpns) & (self.keys >= 0)
        self.keys[stale] = -1

    def access(self, keys: npt.NDArray[np.int64], fill: npt.NDArray[np.integer]) -> tuple[int, npt.NDArray[np.integer]]:
        """Look up ``keys`` in order; misses are filled with ``fill`` (the walk's result).

        Returns ``(hits, mpns)``: how many accesses hit, and the MPN each access used. A hit
        on an entry left by an earlier batch uses the TLB's MPN, as do the accesses to the same
        page that follow it in its set, so a stale entry shows (and stays) until evicted.
        ``fill`` is reused as ``mpns`` (callers pass a fresh gather).
        """
        n = keys.size
        if n == 0:
            return 0, fill
        order, s_keys, s_sets, same = self._by_set(keys)
        hits_in_batch = int(np.count_nonzero(same))
        hits = hits_in_batch
        bounds = (s_sets[1:] != s_sets[:-1]).nonzero()[0]
        first = np.concatenate(([0], bounds + 1))
        last = np.concatenate((bounds, (n - 1,)))
        old_hit = self._old_hits(fill, order, s_keys, s_sets, same, first, hits_in_batch > 0)
        hits += int(np.count_nonzero(old_hit))
        # The last access to each set stays in the TLB.
        last_sets = s_sets[last]
        self.keys[last_sets] = s_keys[last]
        self.mpns[last_sets] = fill[order[last]]
        return hits, fill

    def _by_set(
        self, keys: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """Group accesses by set, keeping their order within a set (a stable radix sort of
        16-bit set numbers): ``(order, keys, sets, same)`` in that order, ``same[i]`` telling
        whether access ``i + 1`` has the key of access ``i``. In that order an access hits when
        the access before it had the same key: equal keys imply the same set, so a set's first
        access never matches its predecessor and is compared with the entry the set held."""
        sets = (keys & (self.entries - 1)).astype(np.uint16 if self.entries <= 1 << 16 else np.int64)
        order = sets.argsort(kind="stable")
        s_keys = keys[order]
        s_sets = s_keys & (self.entries - 1)  # cheaper than gathering sets[order]
        return order, s_keys, s_sets, s_keys[1:] == s_keys[:-1]

    def _old_hits(
        self,
        fill: npt.NDArray[np.integer],
        order: npt.NDArray[np.intp],
        s_keys: npt.NDArray[np.int64],
        s_sets: npt.NDArray[np.int64],
        same: npt.NDArray[np.bool_],
        first: npt.NDArray[np.intp],
        any_same: bool,
    ) -> npt.NDArray[np.bool_]:
        """Whether each set's first access hits the entry left by earlier batches; the run of
        equal keys each such hit starts uses the cached MPN (patched into ``fill``)."""
        old_hit: npt.NDArray[np.bool_] = self.keys[s_sets[first]] == s_keys[first]
        if old_hit.any():
            starts = first[old_hit]
            if not any_same:  # every run is one access long
                fill[order[starts]] = self.mpns[s_sets[starts]]
            else:
                self._stale_runs(fill, order, s_sets, same, starts)
        return old_hit

    def _stale_runs(
        self,
        fill: npt.NDArray[np.integer],
        order: npt.NDArray[np.intp],
        s_sets: npt.NDArray[np.int64],
        same: npt.NDArray[np.bool_],
        starts: npt.NDArray[np.intp],
    ) -> None:
        """Give each run of equal keys that begins with a pre-batch hit the cached MPN."""
        n = fill.size
        changes = (~same).nonzero()[0] + 1  # where a new run of keys begins
        ends = np.concatenate((changes, (n,)))[changes.searchsorted(starts, side="right")]
        mark = np.zeros(n + 1, dtype=np.int32)
        mark[starts] = 1
        mark[ends] -= 1  # runs are disjoint: an end is at most another run's start
        inside = np.cumsum(mark[:n]) > 0
        fill[order[inside]] = self.mpns[s_sets[inside]]

    def run(self, keys: npt.NDArray[np.int64], fill: npt.NDArray[np.integer]) -> TLBRun:
        """What :meth:`access` would do for ``keys``, without changing the TLB: which accesses
        hit, and the MPN each used (``fill`` is reused). :meth:`TLBRun.settle` later leaves the
        TLB as :meth:`access` of any prefix of the keys would have. Causal: whether access ``i``
        hits depends only on the accesses before it, so a prefix of a run is exact on its own."""
        n = keys.size
        order, s_keys, s_sets, same = self._by_set(keys)
        new_set = np.empty(n, dtype=bool)
        new_set[0] = True
        np.not_equal(s_sets[1:], s_sets[:-1], out=new_set[1:])
        first = new_set.nonzero()[0]
        old_hit = self._old_hits(fill, order, s_keys, s_sets, same, first, bool(same.any()))
        hit = np.empty(n, dtype=bool)
        hit[0] = False
        hit[1:] = same
        hit[first] = old_hit
        hits = np.empty(n, dtype=bool)
        hits[order] = hit
        return TLBRun(self, hits, fill, order, s_keys, s_sets, new_set)

    def valid(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(keys, mpns) of the valid entries."""
        ok = self.keys >= 0
        return self.keys[ok], self.mpns[ok]

    @staticmethod
    def split(keys: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(tags, vpns) of keys."""
        return keys >> _KEY_SHIFT, keys & ((1 << _KEY_SHIFT) - 1)


class TLBRun:
    """A batch of TLB accesses simulated by :meth:`TLB.run`, not yet applied to the TLB."""

    __slots__ = ("_first", "_order", "_s_keys", "_s_sets", "hits", "mpns", "tlb")

    def __init__(
        self,
        tlb: TLB,
        hits: npt.NDArray[np.bool_],
        mpns: npt.NDArray[np.integer],
        order: npt.NDArray[np.intp],
        s_keys: npt.NDArray[np.int64],
        s_sets: npt.NDArray[np.int64],
        first: npt.NDArray[np.bool_],
    ) -> None:
        self.tlb = tlb
        #: Whether each access hit, in access order.
        self.hits = hits
        #: The MPN each access used.
        self.mpns = mpns
        self._order, self._s_keys, self._s_sets, self._first = order, s_keys, s_sets, first

    def settle(self, count: int) -> None:
        """Leave the TLB as if only the first ``count`` accesses had run: in each set, the last
        of them stays (within a set the accesses are in order, so those before ``count`` are a
        prefix of the set's run)."""
        if count <= 0:
            return
        before = self._order < count
        n = before.size
        last = np.empty(n, dtype=bool)
        last[-1] = before[-1]
        # The last access of a set before the cut: the next one is in another set, or after it.
        np.logical_and(before[:-1], self._first[1:] | ~before[1:], out=last[:-1])
        where = last.nonzero()[0]
        sets = self._s_sets[where]
        self.tlb.keys[sets] = self._s_keys[where]
        self.tlb.mpns[sets] = self.mpns[self._order[where]]


#: Entries in one guest page-table page (4 KiB of 8-byte entries): the unit of tracing.
PT_ENTRIES = 512


@functools.lru_cache(maxsize=64)
def _table_starts(entries: int) -> npt.NDArray[np.intp]:
    """The first VPN of each page-table page of a table of ``entries`` (read-only, shared)."""
    starts = np.arange(0, entries, PT_ENTRIES)
    starts.flags.writeable = False
    return starts


class ShadowTables:
    """A VM's shadow page tables: one VPN -> MPN array per guest page table (process).

    Invariant (checked by the conformance kit): every valid shadow entry equals guest page
    table o P2M for its VPN.
    """

    def __init__(self) -> None:
        self.tables: dict[int, npt.NDArray[np.int32]] = {}

    def table(self, pid: int, pages: int) -> npt.NDArray[np.int32]:
        shadow = self.tables.get(pid)
        if shadow is None or shadow.size < pages:
            grown = np.full(pages, -1, dtype=np.int32)  # MPNs, as the P2M
            if shadow is not None:
                grown[: shadow.size] = shadow
            shadow = self.tables[pid] = grown
        return shadow

    def traced(self, pid: int, vpns: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """Whether each of ``vpns`` lies in a guest page-table page some valid shadow entry is
        built from (:data:`PT_ENTRIES` entries a page): the hypervisor write-protects those."""
        shadow = self.tables.get(pid)
        if shadow is None:
            return np.zeros(vpns.size, dtype=bool)
        # One "any valid entry" per page-table page; the last page may be partial.
        shadowed = np.logical_or.reduceat(shadow >= 0, _table_starts(shadow.size))
        traced: npt.NDArray[np.bool_] = shadowed[vpns // PT_ENTRIES]
        return traced

    def invalidate(self, pid: int, vpns: npt.NDArray[np.int64]) -> None:
        shadow = self.tables.get(pid)
        if shadow is not None:
            shadow[vpns[vpns < shadow.size]] = -1

    def drop(self, pid: int) -> None:
        self.tables.pop(pid, None)

    def invalidate_mpns(self, mpns: npt.NDArray[np.integer]) -> int:
        """Invalidate entries pointing at frames the hypervisor took back; returns how many."""
        count = 0
        for shadow in self.tables.values():
            stale = np.isin(shadow, mpns)
            count += int(np.count_nonzero(stale))
            shadow[stale] = -1
        return count
