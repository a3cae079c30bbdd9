"""``ksm``: Linux's Kernel Samepage Merging (Documentation/admin-guide/mm/ksm.rst).

Every ``sleep_millisecs`` the scanner visits the next ``pages_to_scan`` backed pages, walking
each VM's memory in order and then the next VM's; a pass over all of them is a *full scan*.
For each page it takes a checksum of the content; a page whose checksum changed since its last
visit is *volatile* and is left alone this time. A page that held still is looked up by
content:

- in the *stable tree* (merged frames): it is merged onto that frame copy-on-write;
- in the *unstable tree* (pages seen unchanged once in this scan): both are merged into one
  frame, which moves to the stable tree;
- else it is inserted in the unstable tree, which is emptied at the end of every full scan
  (its pages may have changed since they were inserted: they are not write-protected).

The trees are sorted by content (sortedcontainers), as KSM's red-black trees are ordered by
memcmp. The counters are sysfs's: ``pages_shared``, ``pages_sharing`` (kept by the
hypervisor), ``pages_unshared``, ``pages_volatile`` and ``full_scans``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from pydantic import Field
from sortedcontainers import SortedDict

from vframework.api import MemoryContext, MemoryService, Params
from vframework_memory.content import SHARED, content_hash, share_checked

__all__ = ["Ksm", "KsmParams"]


class KsmParams(Params):
    pages_to_scan: int = Field(100, gt=0, description="pages scanned per wake-up (sysfs pages_to_scan)")
    sleep_millisecs: int = Field(20, gt=0, description="ms between wake-ups (sysfs sleep_millisecs)")
    scan_cycles: int = Field(1_500, ge=0, description="hypervisor cycles to checksum and look up one page")


class _VMScan:
    """KSM's per-page memory of one VM (its rmap items): the last checksum seen, and whether
    the page was found volatile on its last visit."""

    def __init__(self, pages: int) -> None:
        self.checksum = np.zeros(pages, dtype=np.uint64)
        self.seen = np.zeros(pages, dtype=bool)
        self.volatile = np.zeros(pages, dtype=bool)


class Ksm(MemoryService[KsmParams]):
    """Linear scan, stable and unstable trees keyed by content, merge after a quiet scan."""

    name = "ksm"
    description = "Linux KSM: linear scan, stable and unstable content trees, volatile pages skipped"
    params_model = KsmParams

    def __init__(self, params: KsmParams) -> None:
        super().__init__(params)
        self.period_ns = params.sleep_millisecs * 1_000_000
        #: Content -> merged MPN.
        self.stable: SortedDict = SortedDict()
        #: Content -> (VM id, PPN, MPN) of a page seen unchanged once in this scan.
        self.unstable: SortedDict = SortedDict()
        self._vms: dict[int, _VMScan] = {}
        # Where the scan is: the VM (by position in id order) and the next PPN in it.
        self._vm_id = -1
        self._ppn = 0

    @classmethod
    def kit_params(cls) -> KsmParams:
        # A scan that spans several wake-ups, so the trees outlive guest writes between them
        # (with the default, each kit call scans all its VMs' memory at once).
        return KsmParams(pages_to_scan=12)

    def run(self, memory: MemoryContext, now: int) -> int:
        # A VM with share_pages off is not MADV_MERGEABLE: KSM never scans it.
        vms = sorted((vm.id, vm.memory_pages) for vm in memory.vms if vm.share_pages)
        for gone in set(self._vms) - {vm_id for vm_id, _ in vms}:
            del self._vms[gone]
        if not vms:
            return 0
        ids = [vm_id for vm_id, _ in vms]
        pages_of = dict(vms)
        left = self.params.pages_to_scan
        scanned = 0
        # Each turn scans or moves the cursor on: at most about one pass per wake-up.
        for _ in range(2 * len(vms) + 2):
            if left == 0:
                break
            at = next((vm_id for vm_id in ids if vm_id >= self._vm_id), None)
            if at is None:
                self._end_scan(memory)
                self._vm_id, self._ppn = ids[0], 0
                continue
            if at != self._vm_id:
                self._vm_id, self._ppn = at, 0
            if self._ppn >= pages_of[at]:
                self._vm_id, self._ppn = at + 1, 0
                continue
            got, self._ppn = self._visit(memory, at, pages_of[at], left)
            scanned += got
            left -= got
        counters = memory.counters
        counters["pages_scanned"] += scanned
        counters["pages_unshared"] = len(self.unstable)
        counters["pages_volatile"] = sum(int(np.count_nonzero(s.volatile)) for s in self._vms.values())
        return scanned * self.params.scan_cycles

    def _end_scan(self, memory: MemoryContext) -> None:
        self.unstable.clear()
        memory.counters["full_scans"] += 1

    def _visit(self, memory: MemoryContext, vm_id: int, pages: int, want: int) -> tuple[int, int]:
        """Scan up to ``want`` backed pages of the VM from the cursor; returns (pages scanned,
        the PPN to continue from)."""
        state = self._vms.get(vm_id)
        if state is None:
            state = self._vms[vm_id] = _VMScan(pages)
        start = self._ppn
        window = np.arange(start, min(pages, start + max(4 * want, 1024)), dtype=np.int64)
        mpns = memory.backing(vm_id, window)
        backed = np.flatnonzero(mpns >= 0)[:want]
        end = int(window[backed[-1]]) + 1 if backed.size == want else int(window[-1]) + 1 if window.size else pages
        ppns, mpns = window[backed], mpns[backed]
        if ppns.size == 0:
            return 0, end
        merged = memory.frame_state(mpns) == SHARED
        tokens = memory.content(mpns)
        checksum = content_hash(tokens)
        changed = state.seen[ppns] & (state.checksum[ppns] != checksum)
        quiet = state.seen[ppns] & ~changed & ~merged
        state.volatile[ppns] = changed & ~merged
        state.checksum[ppns] = checksum
        state.seen[ppns] = True
        self._merge(memory, vm_id, ppns[quiet], mpns[quiet], tokens[quiet])
        return int(ppns.size), end

    def _merge(
        self,
        memory: MemoryContext,
        vm_id: int,
        ppns: npt.NDArray[np.int64],
        mpns: npt.NDArray[np.int64],
        tokens: npt.NDArray[np.uint64],
    ) -> None:
        share_ppns: list[int] = []
        sources: list[int] = []
        targets: list[int] = []
        expect: list[int] = []
        for ppn, mpn, token in zip(ppns.tolist(), mpns.tolist(), tokens.tolist(), strict=True):
            stable = self.stable.get(token)
            if stable is not None:
                share_ppns.append(ppn)
                sources.append(mpn)
                targets.append(stable)
                expect.append(token)
                continue
            item = self.unstable.get(token)
            if item is None:
                self.unstable[token] = (vm_id, ppn, mpn)
            elif item[:2] != (vm_id, ppn):
                other_vm, other_ppn, other_mpn = item
                del self.unstable[token]
                if other_vm != vm_id and not any(v.id == other_vm for v in memory.vms):
                    continue
                if int(memory.backing(other_vm, [other_ppn])[0]) != other_mpn:
                    continue  # the tree's page moved since it was inserted
                share_ppns.append(ppn)
                sources.append(mpn)
                targets.append(other_mpn)
                expect.append(token)
                # In the stable tree at once: the next page with this content merges onto it.
                self.stable[token] = other_mpn
        if not share_ppns:
            return
        ok = share_checked(memory, vm_id, share_ppns, sources, targets, expect)
        for token, mpn, good in zip(expect, targets, ok.tolist(), strict=True):
            if not good and self.stable.get(token) == mpn:
                # The frame was freed (every sharer wrote it), or the tree's page moved.
                del self.stable[token]
