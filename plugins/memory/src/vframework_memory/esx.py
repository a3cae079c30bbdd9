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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import Field

from vframework.api import Duration, MemoryContext, MemoryService, Params
from vframework_memory.content import SHARED, content_hash, share_checked

__all__ = ["EsxSharing", "EsxSharingParams"]


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


@dataclass
class _Hint:
    vm_id: int
    ppn: int
    mpn: int
    token: int


class EsxSharing(MemoryService[EsxSharingParams]):
    """Random scanning, one hash table of shared and hint frames, COW sharing."""

    name = "esx-sharing"
    description = "VMware ESX content-based page sharing: random scan, hash table, hint frames"
    params_model = EsxSharingParams

    def __init__(self, params: EsxSharingParams) -> None:
        super().__init__(params)
        self.period_ns = params.period
        #: Hash -> (shared MPN, its content token).
        self.shared: dict[int, tuple[int, int]] = {}
        self.hints: dict[int, _Hint] = {}
        # Fractions of a page owed to each VM's scan (so a slow rate still scans, exactly).
        self._owed: dict[int, float] = {}

    @classmethod
    def kit_params(cls) -> EsxSharingParams:
        # Every call scans each VM's memory once (the defaults take an hour).
        return EsxSharingParams(scan_time=10**9, max_rate=10**9)

    def _budgets(self, memory: MemoryContext) -> list[tuple[int, int, int]]:
        """(vm id, pages, candidates this period) for every VM."""
        p = self.params
        out = []
        for vm in memory.vms:
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
        running = {vm.id for vm in memory.vms}
        if any(h.vm_id not in running for h in self.hints.values()):
            self.hints = {k: h for k, h in self.hints.items() if h.vm_id in running}
        scanned = 0
        for vm_id, pages, count in self._budgets(memory):
            if count == 0:
                continue
            drawn = rng.integers(0, pages, size=count, dtype=np.int64)
            _, first = np.unique(drawn, return_index=True)
            scanned += self._scan(memory, vm_id, drawn[np.sort(first)])
        counters = memory.counters
        counters["pages_scanned"] += scanned
        counters["hint_frames"] = len(self.hints)
        return scanned * self.params.scan_cycles

    def _scan(self, memory: MemoryContext, vm_id: int, ppns: np.ndarray) -> int:
        mpns = memory.backing(vm_id, ppns)
        backed = mpns >= 0
        ppns, mpns = ppns[backed], mpns[backed]
        private = memory.frame_state(mpns) != SHARED
        ppns, mpns = ppns[private], mpns[private]
        if ppns.size == 0:
            return 0
        tokens = memory.content(mpns)
        keys = content_hash(tokens, self.params.hash_bits)
        share_ppns: list[int] = []
        sources: list[int] = []
        targets: list[int] = []
        expect: list[int] = []
        hinted: list[tuple[int, _Hint]] = []
        for ppn, mpn, token, key in zip(ppns.tolist(), mpns.tolist(), tokens.tolist(), keys.tolist(), strict=True):
            entry = self.shared.get(key)
            if entry is not None:
                if entry[1] == token:  # the full comparison
                    share_ppns.append(ppn)
                    sources.append(mpn)
                    targets.append(entry[0])
                    expect.append(token)
                continue
            hint = self.hints.get(key)
            if hint is None or (hint.vm_id == vm_id and hint.ppn == ppn):
                self.hints[key] = _Hint(vm_id, ppn, mpn, token)
            elif hint.token == token:  # the full comparison (the hinted page is rehashed below)
                share_ppns.append(ppn)
                sources.append(mpn)
                targets.append(hint.mpn)
                expect.append(token)
                hinted.append((key, hint))
        if not share_ppns:
            return int(ppns.size)
        # A hinted page may have been written or moved since it was seen: rehash it.
        moved = {hint.mpn for _, hint in hinted if int(memory.backing(hint.vm_id, [hint.ppn])[0]) != hint.mpn}
        keep = np.array([t not in moved for t in targets], dtype=bool)
        picked = [i for i, k in enumerate(keep) if k]
        ok = np.zeros(len(targets), dtype=bool)
        ok[keep] = share_checked(
            memory,
            vm_id,
            [share_ppns[i] for i in picked],
            [sources[i] for i in picked],
            [targets[i] for i in picked],
            [expect[i] for i in picked],
        )
        target = np.array(targets, dtype=np.int64)
        for key, hint in hinted:
            if self.hints.get(key) is hint:
                del self.hints[key]
            if ok[target == hint.mpn].any():
                self.shared[key] = (hint.mpn, hint.token)
        stale = set(np.unique(target[~ok]).tolist())
        if stale:
            self.shared = {k: v for k, v in self.shared.items() if v[0] not in stale}
        return int(ppns.size)
