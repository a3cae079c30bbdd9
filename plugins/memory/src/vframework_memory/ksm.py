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

KSM keeps its trees as red-black trees ordered by the pages' bytes (memcmp), only to find a page
of equal content. Here each tree is a table keyed by the content token (a numpy hash table,
:class:`~vframework_memory.table.KeyTable`): it finds the same pages, and a scan's pages are
decided together, page order kept, in a few array operations. A Python object per tree page (a
sorted dictionary's entry) would cost over a hundred bytes per page and a Python step per page.
The counters are sysfs's: ``pages_shared``, ``pages_sharing`` (kept by the hypervisor),
``pages_unshared``, ``pages_volatile`` and ``full_scans``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from pydantic import Field

from vframework.api import MemoryContext, MemoryService, Params
from vframework_memory.content import SHARED, content_hash, share_checked
from vframework_memory.table import KeyTable

__all__ = ["Ksm", "KsmParams"]


class KsmParams(Params):
    pages_to_scan: int = Field(100, gt=0, description="pages scanned per wake-up (sysfs pages_to_scan)")
    sleep_millisecs: int = Field(20, gt=0, description="ms between wake-ups (sysfs sleep_millisecs)")
    scan_cycles: int = Field(1_500, ge=0, description="hypervisor cycles to checksum and look up one page")


#: Bits of :attr:`_VMScan.flags`.
_SEEN, _VOLATILE = 1, 2


class _VMScan:
    """KSM's per-page memory of one VM (its rmap items): the last checksum seen (32 bits, as
    Linux's ``oldchecksum``), and whether the page was seen and found volatile on its last visit."""

    def __init__(self, pages: int) -> None:
        self.checksum = np.zeros(pages, dtype=np.uint32)
        self.flags = np.zeros(pages, dtype=np.uint8)


class Ksm(MemoryService[KsmParams]):
    """Linear scan, stable and unstable trees keyed by content, merge after a quiet scan."""

    name = "ksm"
    description = "Linux KSM: linear scan, stable and unstable content trees, volatile pages skipped"
    params_model = KsmParams

    def __init__(self, params: KsmParams) -> None:
        super().__init__(params)
        self.period_ns = params.sleep_millisecs * 1_000_000
        #: Content -> merged MPN.
        self.stable = KeyTable({"mpn": np.int32})
        #: Content -> (VM id, PPN, MPN) of a page seen unchanged once in this scan.
        self.unstable = KeyTable(_UNSTABLE)
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
        counters["pages_volatile"] = sum(int(np.count_nonzero(s.flags & _VOLATILE)) for s in self._vms.values())
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
        # A 32-bit checksum, as Linux's: a changed page whose checksum happens to stay the same
        # is taken for quiet, and only the trees' full comparison keeps it from merging wrongly.
        checksum = content_hash(tokens, 32).astype(np.uint32)
        seen = (state.flags[ppns] & _SEEN) != 0
        changed = seen & (state.checksum[ppns] != checksum)
        quiet = seen & ~changed & ~merged
        state.flags[ppns] = np.where(changed & ~merged, _SEEN | _VOLATILE, _SEEN).astype(np.uint8)
        state.checksum[ppns] = checksum
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
        """Look the quiet pages up, in scan order, as KSM does one by one: a page whose content
        is in the stable tree merges onto its frame; one that meets a page of the unstable
        tree merges with it, and their frame enters the stable tree; any other enters the
        unstable tree. Pages of different contents never meet, so each content's pages are
        decided on their own, in order."""
        n = tokens.size
        if n == 0:
            return
        order = np.argsort(tokens, kind="stable")  # each content's pages together, in scan order
        ordered = tokens[order]
        first = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        sizes = np.diff(np.r_[first, n])
        keys = ordered[first]
        group = np.repeat(np.arange(first.size), sizes)  # each sorted position's content
        rank = np.arange(n) - first[group]  # its place among its content's pages
        # Where each content stands before this batch: in the stable tree, in the unstable one.
        onto = np.full(first.size, -1, dtype=np.int64)  # the frame a content's pages merge onto
        stable_slot = self.stable.find(keys)
        in_stable = stable_slot >= 0
        onto[in_stable] = self.stable.get(stable_slot[in_stable], "mpn")
        item_slot = np.where(in_stable, -1, self.unstable.find(keys))
        skip = np.zeros(first.size, dtype=bool)  # the tree page is the content's first page here
        live = np.zeros(first.size, dtype=bool)  # met, and still where it was inserted: merged with
        dead = np.zeros(first.size, dtype=bool)  # met, but its VM is gone or the page moved
        items = np.flatnonzero(item_slot >= 0)
        if items.size:
            slots = item_slot[items]
            item_vm = self.unstable.get(slots, "vm").astype(np.int64)
            item_ppn = self.unstable.get(slots, "ppn").astype(np.int64)
            item_mpn = self.unstable.get(slots, "mpn").astype(np.int64)
            skip[items] = (item_vm == vm_id) & (item_ppn == ppns[order[first[items]]])
            valid = np.zeros(items.size, dtype=bool)
            known = {v.id for v in memory.vms}
            for vm in np.unique(item_vm).tolist():
                if vm == vm_id or vm in known:
                    at = np.flatnonzero(item_vm == vm)
                    valid[at] = memory.backing(vm, item_ppn[at]) == item_mpn[at]
            # A tree page rewritten since it was inserted no longer holds its key's content:
            # KSM's memcmp walks past it and the page is inserted (it replaces the stale one).
            stale = np.zeros(items.size, dtype=bool)
            kept = np.flatnonzero(valid & ~skip[items])
            stale[kept] = memory.content(item_mpn[kept]) != keys[items[kept]]
            # A tree page a later page meets leaves the tree; one only passed over stays.
            met = (~skip[items] | (sizes[items] > 1)) & ~stale
            self.unstable.delete(slots[met | stale])
            live[items] = met & valid
            dead[items] = met & ~valid
            onto[items[met & valid]] = item_mpn[met & valid]
        step = rank - skip[group]  # 0 for the first page that acts on the tree
        acting = step >= 0
        # No partner (or a dead one, which the first acting page used up): the next page enters
        # the unstable tree, and the pages after it merge onto it.
        fresh = ~in_stable & ~live
        lead_step = dead.astype(np.int64)
        is_lead = fresh[group] & (step == lead_step[group])
        leader = np.full(first.size, -1, dtype=np.int64)  # a fresh content's first page, by batch index
        leader[group[is_lead]] = order[is_lead]
        merges_fresh = fresh[group] & (step > lead_step[group])
        merge = acting & (in_stable | live)[group] | merges_fresh
        promote = live | (fresh & (sizes - skip > lead_step + 1))  # first merged now: into the stable tree
        onto[fresh & (leader >= 0)] = mpns[leader[fresh & (leader >= 0)]]
        self.stable.put(keys[promote], mpn=onto[promote])
        alone = fresh & (leader >= 0) & ~promote
        ins = leader[alone]
        self.unstable.put(tokens[ins], vm=np.full(ins.size, vm_id, dtype=np.int16), ppn=ppns[ins], mpn=mpns[ins])
        if not merge.any():
            return
        chosen = np.sort(order[merge])  # in scan order, as KSM merges them
        dest = np.empty(n, dtype=np.int64)
        dest[order] = onto[group]
        dest = dest[chosen]
        ok = share_checked(memory, vm_id, ppns[chosen], mpns[chosen], dest, tokens[chosen])
        if not ok.all():
            # The frame was freed (every sharer wrote it), or the tree's page moved.
            bad = tokens[chosen][~ok]
            slots = self.stable.find(bad)
            here = slots >= 0
            here[here] = self.stable.get(slots[here], "mpn") == dest[~ok][here]
            self.stable.delete(slots[here])


#: The unstable tree's columns: where the page it holds was when it was inserted.
_UNSTABLE = {"vm": np.int16, "ppn": np.int32, "mpn": np.int32}
