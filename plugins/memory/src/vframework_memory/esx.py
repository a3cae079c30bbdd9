"""``esx-sharing``: VMware ESX Server's content-based page sharing (Waldspurger, OSDI 2002, §4).

Each period the scanner picks random pages of every VM, at a rate that scans a VM's memory
once per ``scan_time`` and never more than ``max_rate`` pages per second over all VMs. A page's
content hash is looked up in one global table:

- a *shared frame* with that hash: after a full comparison, the page is mapped onto it
  copy-on-write and its own frame is freed;
- a *hint frame* (a page seen once, recorded with its VM, PPN and content): the hinted page is
  rehashed; if its content changed the hint is dropped, else after a full comparison both
  pages share the hinted frame, which becomes a shared frame;
- nothing: the page becomes a hint.

A hash match is only a hint: with a narrow ``hash_bits`` different contents collide, and the
full comparison keeps them apart. Zero pages are shared like any other content.

Both tables are numpy hash tables (:class:`~vframework_memory.table.KeyTable`), and a period's
pages of one VM are decided together, with the same outcome as taking them one at a time in
the order they were drawn: no Python object and no Python step per page. A stale entry (a hint
whose page was rewritten or moved, a shared frame freed since) fails the first page that
matches it, which drops it, as it would one page at a time.
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt
from pydantic import Field

from vframework.api import Duration, MemoryContext, MemoryService, Params
from vframework_memory.content import PRIVATE, SHARED, content_hash, share_checked
from vframework_memory.table import KeyTable

__all__ = ["EsxSharing", "EsxSharingParams"]

#: Above this, (page, draw) pairs do not fit one int64.
_SORT_LIMIT = 2**62


class EsxSharingParams(Params):
    period: Duration = Field(10**9, description="how often the scanner runs")
    scan_time: Duration = Field(
        3600 * 10**9, description="time to scan each VM's memory once (ESX's Mem.ShareScanTime: 60 min)"
    )
    max_rate: int = Field(
        3072, gt=0, description="pages scanned per second over all VMs (ESX's Mem.ShareScanGHz: 4 MB/s per GHz)"
    )
    hash_bits: int = Field(64, ge=1, le=64, description="bits of the content hash (fewer: collisions, for tests)")
    scan_cycles: int = Field(1_500, ge=0, description="hypervisor cycles to hash one scanned page")


class EsxSharing(MemoryService[EsxSharingParams]):
    """Random scanning, one hash table of shared and hint frames, COW sharing."""

    name = "esx-sharing"
    description = "VMware ESX content-based page sharing: random scan, hash table, hint frames"
    params_model = EsxSharingParams

    def __init__(self, params: EsxSharingParams) -> None:
        super().__init__(params)
        self.period_ns = params.period
        # A key is the hash of the row's token: recomputed, not stored (8 bytes a row).
        key_of = ("token", functools.partial(content_hash, bits=params.hash_bits))
        #: Hash -> the shared frame's MPN and content token.
        self.shared = KeyTable({"mpn": np.int32, "token": np.uint64}, key_of=key_of)
        #: Hash -> a page seen once: its VM, PPN, MPN and content token then.
        # Narrow columns, as the kernel's own: MPNs and PPNs are int32, VM ids int16.
        self.hints = KeyTable({"vm": np.int16, "ppn": np.int32, "mpn": np.int32, "token": np.uint64}, key_of=key_of)
        # Fractions of a page owed to each VM's scan (so a slow rate still scans, exactly).
        self._owed: dict[int, float] = {}
        # The VMs there were at the last period (hints of others are dropped).
        self._present: frozenset[int] | None = None

    @classmethod
    def kit_params(cls) -> EsxSharingParams:
        # Every call scans each VM's memory once (the defaults take an hour).
        return EsxSharingParams(scan_time=10**9, max_rate=10**9)

    def _budgets(self, memory: MemoryContext) -> list[tuple[int, int, int]]:
        """(vm id, pages, candidates this period) for every VM."""
        p = self.params
        out = []
        for vm in memory.vms:
            if not vm.share_pages:
                continue  # nosharepages: never a candidate
            owed = self._owed.get(vm.id, 0.0) + vm.memory_pages * p.period / p.scan_time
            out.append((vm.id, vm.memory_pages, int(owed)))
            self._owed[vm.id] = owed - int(owed)
        cap = p.max_rate * p.period // 10**9
        total = sum(n for _, _, n in out)
        if total > cap:
            out = [(vm_id, pages, n * cap // total) for vm_id, pages, n in out]
        return out

    def run(self, memory: MemoryContext, now: int) -> int:
        rng = memory.rng(self.name)
        present = frozenset(vm.id for vm in memory.vms)
        if present != self._present:
            # Hints of VMs that went away go too (a look at the whole table: only when the
            # VMs changed, never per period).
            slots, _ = self.hints.items()
            gone = ~np.isin(self.hints.get(slots, "vm"), list(present))
            if gone.any():
                self.hints.delete(slots[gone])
            self._present = present
        scanned = 0
        for vm_id, pages, count in self._budgets(memory):
            if count == 0:
                continue
            drawn = rng.integers(0, pages, size=count, dtype=np.int64)
            scanned += self._scan(memory, vm_id, _first_draws(drawn, pages))
        counters = memory.counters
        counters["pages_scanned"] += scanned
        counters["hint_frames"] = len(self.hints)
        return scanned * self.params.scan_cycles

    def _scan(self, memory: MemoryContext, vm_id: int, ppns: npt.NDArray[np.int64]) -> int:
        """Look the VM's pages ``ppns`` up as if one at a time, in order (see :func:`_in_order`),
        then share what matched in one call and update both tables."""
        mpns = memory.backing(vm_id, ppns)
        backed = mpns >= 0
        ppns, mpns = ppns[backed], mpns[backed]
        private = memory.frame_state(mpns) != SHARED
        ppns, mpns = ppns[private], mpns[private]
        if ppns.size == 0:
            return 0
        tokens = memory.content(mpns)
        keys = content_hash(tokens, self.params.hash_bits)
        n = ppns.size
        # A key in the shared table: a page of equal content shares that frame.
        share = np.zeros(n, dtype=bool)
        target = np.full(n, -1, dtype=np.int64)
        frame = self.shared.find(keys)
        on_frame = frame >= 0
        at = np.flatnonzero(on_frame)
        share[at] = self.shared.get(frame[at], "token") == tokens[at]
        target[at] = self.shared.get(frame[at], "mpn")
        # Taken in order, the first page to match a key's entry finds out whether it holds. It
        # fails, and drops the entry, if the entry is stale (its frame freed, or holding other
        # content now) or is the page's own frame (a shared frame left with one mapping turns
        # private): the key's later pages go on to the hint table. If it holds, every later
        # match shares it, except the page whose own frame it is: by its turn that page is on a
        # shared frame, so it is not scanned.
        matching = at[share[at]]
        own = matching[target[matching] == mpns[matching]]
        failing = _first_of_keys(keys, matching)
        failing = failing[_stale(memory, target[failing], tokens[failing]) | (target[failing] == mpns[failing])]
        if failing.size:
            later = _after_first(keys, failing, at)
            on_frame[later], share[later], target[later] = False, False, -1
        unscanned = own[~np.isin(own, failing)]
        share[unscanned] = False
        # Otherwise the key's hint decides, as it stands when the page's turn comes.
        rest = np.flatnonzero(~on_frame)
        hint = _in_order(self.hints, vm_id, ppns[rest], mpns[rest], tokens[rest], keys[rest], memory)
        share[rest] = hint.matched
        target[rest] = np.where(hint.matched, hint.ref_mpn, -1)
        # The hints after the batch: each key's last page that became its hint.
        now_hint = rest[hint.final]
        vm = np.full(now_hint.size, vm_id)
        self.hints.put(keys[now_hint], vm=vm, ppn=ppns[now_hint], mpn=mpns[now_hint], token=tokens[now_hint])
        if not share.any():
            return n - int(unscanned.size)
        done = self._share(memory, vm_id, ppns, mpns, tokens, keys, share, target, rest, hint)
        # A page whose own hint an earlier page of the batch shared onto was no longer private
        # when its turn came: it was not scanned, and is no hint.
        skipped = _shared_before(rest, hint, keys, done)
        if skipped.size:
            self.hints.delete(self.hints.find(keys[skipped]))
        return n - int(skipped.size) - int(unscanned.size)

    def _share(
        self,
        memory: MemoryContext,
        vm_id: int,
        ppns: npt.NDArray[np.int64],
        mpns: npt.NDArray[np.int64],
        tokens: npt.NDArray[np.uint64],
        keys: npt.NDArray[np.uint64],
        share: npt.NDArray[np.bool_],
        target: npt.NDArray[np.int64],
        rest: npt.NDArray[np.int64],
        hint: _Lookup,
    ) -> npt.NDArray[np.bool_]:
        """Share what matched; returns which pages of the batch were shared."""
        hinted = hint.matched  # (over ``rest``) pages that matched a hint
        moved = hinted & hint.moved
        chosen = np.flatnonzero(share)
        targets = target[chosen]
        # Only the pages that met a moved hint are refused: another page's target may be the
        # moved hint's old frame, reused since (a shared frame, or a page of this batch).
        blocked = np.zeros(share.size, dtype=bool)
        blocked[rest[moved]] = True
        keep = ~blocked[chosen]
        ok = np.zeros(chosen.size, dtype=bool)
        picked = chosen[keep]
        ok[keep] = share_checked(memory, vm_id, ppns[picked], mpns[picked], targets[keep], tokens[picked])
        done = np.zeros(share.size, dtype=bool)
        done[chosen[ok]] = True
        # A page that failed on its key's shared entry dropped that entry (by key: the same
        # frame may be another key's entry now, reused since), before any new entry is put.
        from_table = np.ones(share.size, dtype=bool)
        from_table[rest] = False
        failed = chosen[~ok & from_table[chosen]]
        if failed.size:
            slots = self.shared.find(keys[failed])
            self.shared.delete(np.unique(slots[slots >= 0]))
        # A hint that shared is no hint any more (if it is still the key's hint); its frame,
        # if a page shared onto it, is the key's shared frame (the last such hint wins).
        pairs = np.flatnonzero(hinted)
        gone = pairs[hint.is_final[pairs]]
        self.hints.delete(self.hints.find(keys[rest[gone]]))
        won = pairs[done[rest[pairs]]]
        if won.size:
            last = won[::-1][np.unique(keys[rest[won]][::-1], return_index=True)[1]]
            self.shared.put(keys[rest[last]], mpn=hint.ref_mpn[last], token=tokens[rest[last]])
        return done


def _shared_before(
    rest: npt.NDArray[np.int64], hint: _Lookup, keys: npt.NDArray[np.uint64], done: npt.NDArray[np.bool_]
) -> npt.NDArray[np.int64]:
    """The pages (batch positions) that were their key's hint from before the batch and that an
    earlier page of the batch shared onto."""
    own = rest[hint.own_hint]
    if own.size == 0:
        return own
    sharers = rest[hint.matched & (hint.ref < 0)]
    sharers = sharers[done[sharers]]
    if sharers.size == 0:
        return sharers
    # The first sharer of each key (``rest`` is in batch order), against each page's position.
    first_keys, at = np.unique(keys[sharers], return_index=True)
    where = np.searchsorted(first_keys, keys[own]).clip(max=first_keys.size - 1)
    hit = (first_keys[where] == keys[own]) & (sharers[at[where]] < own)
    skipped: npt.NDArray[np.int64] = own[hit]
    return skipped


def _stale(memory: MemoryContext, mpns: npt.NDArray[np.int64], tokens: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
    """Which table entries no longer hold for any page: the frame is no VM's now, or holds
    other content (the full comparison of :func:`~vframework_memory.content.share_checked`
    fails; it also fails a page whose own frame is the target, which the caller checks)."""
    state = memory.frame_state(mpns)
    bad: npt.NDArray[np.bool_] = ((state != PRIVATE) & (state != SHARED)) | (memory.content(mpns) != tokens)
    return bad


def _first_of_keys(keys: npt.NDArray[np.uint64], among: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Each key's first position of ``among`` (ascending)."""
    first: npt.NDArray[np.int64] = among[np.unique(keys[among], return_index=True)[1]]
    return first


def _after_first(
    keys: npt.NDArray[np.uint64], first: npt.NDArray[np.int64], among: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """The positions of ``among`` (ascending) after the first of ``first`` with the same key."""
    cut_keys, at = np.unique(keys[first], return_index=True)
    where = np.searchsorted(cut_keys, keys[among]).clip(max=cut_keys.size - 1)
    after = (cut_keys[where] == keys[among]) & (among > first[at[where]])
    later: npt.NDArray[np.int64] = among[after]
    return later


def _first_draws(drawn: npt.NDArray[np.int64], pages: int) -> npt.NDArray[np.int64]:
    """The distinct pages drawn, each where it was first drawn, in draw order (a page drawn
    twice in one period is scanned once)."""
    n = drawn.size
    if n == 0 or pages * n >= _SORT_LIMIT:
        _, first = np.unique(drawn, return_index=True)
        return drawn[np.sort(first)]
    # One sort of (page, draw) pairs packed in an int64 beats numpy's stable unique.
    packed = np.sort(drawn * n + np.arange(n, dtype=np.int64))
    page = packed // n
    first = packed[np.r_[True, page[1:] != page[:-1]]] % n
    return drawn[np.sort(first)]


class _Lookup:
    """What :func:`_in_order` found for each page of a batch (arrays over the batch)."""

    def __init__(self, n: int) -> None:
        #: The page's content equals its hint's: it shares the hint's frame.
        self.matched = np.zeros(n, dtype=bool)
        #: The hint it met: the position of a page of this batch, or -1 for the key's hint from
        #: before the batch; its frame; and (-1 if none) that old hint's VM and PPN.
        self.ref = np.full(n, -1, dtype=np.int64)
        self.ref_mpn = np.full(n, -1, dtype=np.int64)
        self.old_vm = np.full(n, -1, dtype=np.int64)
        self.old_ppn = np.full(n, -1, dtype=np.int64)
        #: The hint it met is the key's hint after the batch.
        self.is_final = np.zeros(n, dtype=bool)
        #: The page is its key's hint after the batch.
        self.final = np.zeros(n, dtype=bool)
        #: The page was its key's hint from before the batch.
        self.own_hint = np.zeros(n, dtype=bool)
        #: The hint from before the batch that it met has moved to another frame since.
        self.moved = np.zeros(n, dtype=bool)


def _in_order(
    hints: KeyTable,
    vm_id: int,
    ppns: npt.NDArray[np.int64],
    mpns: npt.NDArray[np.int64],
    tokens: npt.NDArray[np.uint64],
    keys: npt.NDArray[np.uint64],
    memory: MemoryContext,
) -> _Lookup:
    """The hint table's answers to a batch of pages taken one at a time, in order, at once.

    Taken in order, a page whose key has no hint yet, or whose hint is the page itself, becomes
    the key's hint; any other page meets the hint its key has at that moment and matches it if
    their contents are equal. So within one key's pages, each page meets the latest page before
    it that became the hint, or the key's hint from before the batch.

    A hint from before the batch may be stale: its page moved to another frame, or its frame
    holds other content now. The first page that matches it fails and drops it, so the key's
    pages after that one start afresh, as if the key had no hint."""
    n = keys.size
    out = _Lookup(n)
    if n == 0:
        return out
    order = np.argsort(keys, kind="stable")  # each key's pages together, in batch order
    k = keys[order]
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    lengths = np.diff(np.r_[starts, n])
    run_start = np.repeat(starts, lengths)
    run_end = np.repeat(np.r_[starts[1:], n], lengths)
    h0 = hints.find(k)
    slot = np.maximum(h0, 0)
    h0_vm = np.where(h0 >= 0, hints.get(slot, "vm"), -1).astype(np.int64)
    h0_ppn = np.where(h0 >= 0, hints.get(slot, "ppn"), -1)
    h0_token = hints.get(slot, "token")
    h0_mpn = hints.get(slot, "mpn")
    pos = np.arange(n)
    first_pass = _Meeting(order, pos, run_start, run_end, h0 >= 0, (h0_vm == vm_id) & (h0_ppn == ppns[order]))
    first_pass.meet(tokens, mpns, h0_token, h0_mpn)
    met = first_pass  # unless a stale hint cuts a run (below)
    old = np.flatnonzero(first_pass.matched & (first_pass.ref < 0))
    moved = np.zeros(n, dtype=bool)
    if old.size:
        for other in np.unique(h0_vm[old]).tolist():
            mine = old[h0_vm[old] == other]
            moved[mine] = memory.backing(other, h0_ppn[mine]) != h0_mpn[mine]
        stale = moved[old] | _stale(memory, h0_mpn[old].astype(np.int64), h0_token[old])
        if stale.any():
            # Each run's first page to fail on its stale hint (n: none fails); the key has no
            # hint after that page, so the run starts afresh after it: no old hint, and no page
            # that was the old hint's own.
            fails_at = np.full(n, n)
            fails_at[old[stale]] = old[stale]
            cut_at = np.repeat(np.minimum.reduceat(fails_at, starts), lengths)
            after = pos > cut_at
            met = _Meeting(
                order,
                pos,
                np.where(after, cut_at + 1, run_start),
                run_end,
                (h0 >= 0) & ~after,
                first_pass.own & ~after,
            )
            met.meet(tokens, mpns, h0_token, h0_mpn)
    ref = met.ref
    out.matched[order] = met.matched
    out.ref[order] = np.where(ref >= 0, met.ref_page, -1)
    out.ref_mpn[order] = met.ref_mpn
    out.old_vm[order] = np.where(ref < 0, h0_vm, -1)
    out.old_ppn[order] = np.where(ref < 0, h0_ppn, -1)
    out.is_final[order] = ref == met.last_new
    out.final[order] = met.becomes & (pos == met.last_new)
    out.own_hint[order] = met.own
    # Only a moved hint refuses its page: one whose frame holds other content fails the full
    # comparison by itself.
    out.moved[order] = moved & (ref < 0)
    return out


class _Meeting:
    """One pass of :func:`_in_order` over the batch in key order, for given runs of each key's
    pages: which hint each page meets (:meth:`meet`: and whether their contents match)."""

    def __init__(
        self,
        order: npt.NDArray[np.int64],
        pos: npt.NDArray[np.int64],
        run_start: npt.NDArray[np.int64],
        run_end: npt.NDArray[np.int64],
        has_h0: npt.NDArray[np.bool_],
        own: npt.NDArray[np.bool_],
    ) -> None:
        self.order, self.pos, self.has_h0, self.own = order, pos, has_h0, own
        self.becomes = (~has_h0 & (pos == run_start)) | own
        latest = np.maximum.accumulate(np.where(self.becomes, pos, -1))
        self.ref = np.where(latest >= run_start, latest, -1)
        # The last page of each key's run that became the hint (-1: the old hint stays).
        last = run_end - 1
        self.last_new = np.where(latest[last] >= run_start[last], latest[last], -1)
        #: The batch position of the page each page meets (0 where it meets none of the batch).
        self.ref_page = order[np.maximum(self.ref, 0)]

    def meet(
        self,
        tokens: npt.NDArray[np.uint64],
        mpns: npt.NDArray[np.int64],
        h0_token: npt.NDArray[np.uint64],
        h0_mpn: npt.NDArray[np.int64],
    ) -> None:
        inside = self.ref >= 0
        ref_token = np.where(inside, tokens[self.ref_page], h0_token)
        self.ref_mpn = np.where(inside, mpns[self.ref_page], h0_mpn)
        meets = ~self.becomes & (inside | self.has_h0)
        self.matched = meets & (ref_token == tokens[self.order])
