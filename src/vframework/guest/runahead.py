"""Running a process ahead: many operations of one vCPU as one step, with nothing changed.

A memory workload alternates a batch of references with a compute phase, tens of thousands of
times per simulated second. Stepping each one costs an event and a pass of numpy calls over a
few thousand pages. Yet while a vCPU runs its slice, nothing else can change what those
operations do, *until* something else happens to the vCPU, its VM or its CPU.

So the guest plans: it takes the process's next operations while they are compute phases and
references to pages that are present, backed, and (for a write) not copy-on-write, works out
all their effects at once (one TLB simulation over the whole run, see
:meth:`~vframework.machine.mmu.TLB.run`), and hands the hypervisor a :class:`RunAhead` with
the time at which each operation starts. The hypervisor commits the operations as simulated
time passes their starts, at the end of the run or whenever something looks at or changes what
they touch (a sample, an interrupt, a preemption, another vCPU of the VM or the hypervisor
changing its memory); at that point the run is *truncated* and the operations not yet started
go back to the process, to be planned again from the new state. Effects are applied in order
and only for operations that have started, exactly as stepping would apply them, so results do
not change by a byte.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from vframework.guest.mm import PTE_ACCESSED, PTE_COW, PTE_DIRTY, PTE_PRESENT, GuestProcess, write_content
from vframework.guest.ops import Compute, Operation, Touch
from vframework.machine.hardware import SHARED
from vframework.machine.mmu import asid

if TYPE_CHECKING:
    import numpy.typing as npt

    from vframework.guest.os import GuestOS
    from vframework.guest.platform import GuestVCPU
    from vframework.machine.mmu import TLBRun

__all__ = ["MAX_OPS", "MAX_REFS", "RunAhead", "plan"]

#: At most this many operations in one run ahead.
MAX_OPS = 4096
#: At most this many page references in one run ahead (bounds the numpy temporaries).
MAX_REFS = 1 << 18
#: A run of fewer operations is not worth planning: the first is stepped.
_MIN_OPS = 2
#: Cycles below which ``cycles * 10**9`` fits an int64.
_NS_SAFE = (1 << 63) // 1_000_000_000
#: Operations a process's first plan looks at (later plans go by the mean of the last).
_FIRST_OPS = 16
#: Planned operations beyond the estimate of what fits the budget (the estimate is a running mean).
_SLACK = 1.25


class RunAhead:
    """Operations of one process, planned from one state; committed as their starts pass."""

    __slots__ = (
        "_accessed",
        "_bits",
        "_content",
        "_cum",
        "_epoch",
        "_stale",
        "_tlb",
        "_touch_at",
        "_touch_ends",
        "_vpns",
        "_writes",
        "committed",
        "counters",
        "ops",
        "paused",
        "proc",
        "start",
        "starts",
        "total_ns",
    )

    def __init__(
        self,
        proc: GuestProcess,
        counters: dict[str, int],
        content: npt.NDArray[np.uint64],
        ops: list[Operation],
        durations: npt.NDArray[np.int64],
        per_op: dict[str, npt.NDArray[np.int64]],
        touch: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], TLBRun] | None,
        stale: npt.NDArray[np.bool_] | None,
        bits: npt.NDArray[np.bool_] | None,
        accessed: npt.NDArray[np.bool_] | None = None,
    ) -> None:
        self.proc = proc
        self.counters = counters
        self._content = content
        self.ops = ops
        ends = durations.cumsum()
        #: Offset (ns from :attr:`start`) at which each operation starts.
        self.starts = ends - durations
        self.total_ns = int(ends[-1])
        #: Simulated time of the first operation's start (set by the hypervisor).
        self.start = 0
        #: Operations applied so far.
        self.committed = 0
        #: When an interrupt stopped the run (its operations not started wait), or None.
        self.paused: int | None = None
        # Counters as running sums, so committing any range is two lookups per counter.
        self._cum = {k: np.concatenate(([0], v.cumsum())) for k, v in per_op.items()}
        self._epoch = proc.epoch
        if touch is not None:
            # Per operation: the first element after its references (in the joined VPNs).
            self._touch_ends, self._touch_at, self._vpns, self._tlb = touch
        else:
            self._touch_ends = np.zeros(len(ops), dtype=np.int64)
            self._touch_at = np.zeros(0, dtype=np.int64)
        self._stale, self._bits = stale, bits
        self._accessed = accessed
        self._writes = [i for i, op in enumerate(ops) if type(op) is Touch and op.write]

    def commit(self, offset: int, inclusive: bool) -> None:
        """Apply every operation that started before ``offset`` ns into the run (or at it, when
        ``inclusive``: an event that fires after the operation's start at the same instant)."""
        started = self.starts.searchsorted(offset, side="right" if inclusive else "left")
        self.commit_count(min(len(self.ops), max(1, int(started))))

    def commit_count(self, upto: int) -> None:
        """Apply operations ``committed .. upto - 1``."""
        done = self.committed
        if upto <= done:
            return
        counters = self.counters
        for key, cum in self._cum.items():
            counters[key] += int(cum[upto] - cum[done])
        if self._touch_at.size:
            first, last = int(self._touch_ends[done - 1]) if done else 0, int(self._touch_ends[upto - 1])
            if last > first:
                self._apply_touches(done, upto, first, last)
        self.committed = upto

    def _apply_touches(self, done: int, upto: int, first: int, last: int) -> None:
        proc = self.proc
        vpns = self._vpns
        mpns = self._tlb.mpns
        ends = self._touch_ends
        for i in self._writes:
            if done <= i < upto:
                a = int(ends[i - 1]) if i else 0
                proc.writes += 1
                write_content(self._content, mpns[a : int(ends[i])], vpns[a : int(ends[i])], proc.writes, proc.salt)
        # Accessed (and dirty) bits, set where missing, as a reference sets them. A sample that
        # cleared accessed bits since planning makes every reference set its bit again.
        assert self._stale is not None
        assert self._bits is not None
        write = self._bits[first:last]
        if proc.epoch == self._epoch:
            need = self._stale[first:last]
            reads, writes = vpns[first:last][need & ~write], vpns[first:last][need & write]
        else:
            reads, writes = vpns[first:last][~write], vpns[first:last][write]
        accessed = self._accessed
        if accessed is not None:
            accessed[proc.page_table[vpns[first:last]]] = True
        if reads.size:
            proc.pte_flags[reads] |= PTE_ACCESSED
        if writes.size:
            proc.pte_flags[writes] |= PTE_ACCESSED | PTE_DIRTY
        self._tlb.settle(last)

    def drop(self, after: int | None = None) -> int:
        """Give the operations not applied (all, or those starting after offset ``after``)
        back to the process, in order; returns their total ns. The run keeps the others."""
        keep = self.committed
        if after is not None:
            keep = max(keep, int(self.starts.searchsorted(after, side="right")))
        rest = self.ops[keep:]
        if not rest:
            return 0
        ns = self.total_ns - int(self.starts[keep])
        self.ops = self.ops[:keep]
        self.total_ns -= ns
        _give_back(self.proc, rest)
        return ns


def _pull(proc: GuestProcess, want: int) -> list[Operation]:
    """Up to ``want`` next operations of ``proc`` that a run ahead can hold."""
    out: list[Operation] = []
    lookahead = proc.lookahead
    refs = 0
    while len(out) < want and refs < MAX_REFS:
        if lookahead:
            op = lookahead.popleft()
        else:
            assert proc.ops is not None
            try:
                op = next(proc.ops)
            except StopIteration:
                break  # a finished generator raises again when stepped: the end is kept
        kind = type(op)
        if (kind is Compute and op.cycles > 0) or (kind is Touch and op.vpns.size):  # type: ignore[attr-defined]
            out.append(op)
            if kind is Touch:
                refs += op.vpns.size  # type: ignore[attr-defined]
            continue
        lookahead.appendleft(op)
        break
    return out


def _back_off(proc: GuestProcess) -> None:
    """The next operations cannot be planned (I/O, faults while a working set warms up):
    step the next 1, 3, 7, ... up to 63 without trying, until a plan succeeds again."""
    proc.plan_backoff = min(2 * proc.plan_backoff + 1, 63)
    proc.plan_wait = proc.plan_backoff


def _give_back(proc: GuestProcess, ops: Sequence[Operation]) -> None:
    proc.lookahead.extendleft(reversed(ops))


def _plannable(
    guest: GuestOS, proc: GuestProcess, vpns: npt.NDArray[np.int64], write: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int32], npt.NDArray[np.uint8]]:
    """Which references of a run can be planned (no fault, no trap, nothing watched), what a
    TLB miss on each loads, and their guest PTE flags."""
    monitor = guest.vm.monitor
    assert monitor is not None
    table = proc.page_table
    inside = (vpns >= 0) & (vpns < table.size)
    safe = np.where(inside, vpns, 0)
    flags = proc.pte_flags[safe]
    ppns = table[safe]
    walked = guest.vm.p2m[np.maximum(ppns, 0)]
    ok = inside & ((flags & PTE_PRESENT) != 0) & (walked >= 0)
    ok &= ~write | ((flags & PTE_COW) == 0)
    watch = guest.vm.watch
    if watch is not None:
        # A reference to a page being sampled is a hidden fault: stepped, not planned.
        ok &= ~watch[np.maximum(ppns, 0)]
    if guest.vm.counters["mem_shared"]:
        # A write to a frame shared copy-on-write breaks the sharing: stepped, not planned.
        ok &= ~write | (guest.hypervisor.machine.memory.state[np.maximum(walked, 0)] != SHARED)
    if monitor.paging == "shadow":
        # A first write to a clean page traps to set its dirty bit: stepped, not planned.
        ok &= ~write | ((flags & PTE_DIRTY) != 0)
    fill = monitor.run_fill(proc, safe, walked)
    ok &= fill >= 0
    return ok, fill, flags


def _check_batches(
    guest: GuestOS, proc: GuestProcess, touches: list[Touch]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.bool_], npt.NDArray[np.uint8], int | None]:
    """The references of ``touches`` up to the first batch that cannot be planned (its index,
    or None), with what :func:`_plannable` gives for them. Batches are checked in groups of 1,
    1, 2, 4, ...: a run is often cut short by a batch that faults, often its first, and what
    lies after that batch is never needed."""
    vpns, fill, write, flags = [], [], [], []
    checked, bad = 0, None
    while checked < len(touches):
        upto = min(len(touches), max(1, 2 * checked))  # each group as long as all checked so far
        part = touches[checked:upto]
        sizes = np.fromiter((t.vpns.size for t in part), dtype=np.int64, count=len(part))
        v = np.concatenate([t.vpns for t in part]) if len(part) > 1 else part[0].vpns
        w = np.fromiter((t.write for t in part), dtype=np.bool_, count=len(part)).repeat(sizes)
        ok, f, fl = _plannable(guest, proc, v, w)
        if not ok.all():
            offsets = sizes.cumsum() - sizes
            first = int(np.logical_and.reduceat(ok, offsets).argmin())
            end = int(offsets[first])
            v, f, w, fl = v[:end], f[:end], w[:end], fl[:end]
            bad = checked + first
        vpns.append(v)
        fill.append(f)
        write.append(w)
        flags.append(fl)
        if bad is not None:
            break
        checked = upto
    if len(vpns) == 1:
        return vpns[0], fill[0], write[0], flags[0], bad
    return np.concatenate(vpns), np.concatenate(fill), np.concatenate(write), np.concatenate(flags), bad


def plan(guest: GuestOS, vcpu: GuestVCPU, budget_ns: int) -> RunAhead | None:
    """The run ahead of ``vcpu``'s process from now: its next operations that start within
    ``budget_ns`` (at or before it) and can be planned; None when fewer than two can."""
    proc = vcpu.process
    assert proc is not None
    if proc.plan_wait:
        proc.plan_wait -= 1
        return None
    want = proc.plan_cap if proc.op_ns <= 0 else min(proc.plan_cap, int(budget_ns / proc.op_ns * _SLACK) + 2)
    ops = _pull(proc, want)
    if len(ops) < _MIN_OPS:
        _give_back(proc, ops)
        _back_off(proc)
        return None
    monitor = guest.vm.monitor
    assert monitor is not None
    costs = guest.costs
    n_ops = len(ops)
    is_touch = [type(op) is Touch for op in ops]
    touch_ops = [i for i, t in enumerate(is_touch) if t]
    compute = np.fromiter((0 if t else op.cycles for op, t in zip(ops, is_touch, strict=True)), np.int64, n_ops)  # type: ignore[attr-defined]
    # Costs.ns and the monitor's instruction count, for every compute phase at once (in
    # Python ints for phases long enough to overflow int64 nanosecond arithmetic).
    if int(compute.max()) < _NS_SAFE:
        durations = -(-compute * 1_000_000_000 // costs.clock_hz)
    else:
        durations = np.array([costs.ns(int(c)) for c in compute], dtype=np.int64)
    per_op = {"instructions_direct": compute // costs.instruction}
    touch = stale = bits = None
    cut = n_ops
    if touch_ops:
        vpns, fill, write, flags, bad = _check_batches(guest, proc, [ops[i] for i in touch_ops])  # type: ignore[misc]
        if bad is not None:
            cut = touch_ops[bad]
            touch_ops = touch_ops[:bad]
        sizes = np.fromiter((ops[i].vpns.size for i in touch_ops), dtype=np.int64, count=len(touch_ops))  # type: ignore[attr-defined]
        offsets = sizes.cumsum() - sizes
        if touch_ops:
            tlb = guest.hypervisor.tlb_for(vcpu)
            # ``fill`` is a fresh gather: the run patches it in place with what the TLB held.
            run = tlb.run(tlb.key(asid(guest.vm.id, proc.pid), vpns), fill)
            hits = np.add.reduceat(run.hits, offsets).astype(np.int64)
            misses = sizes - hits
            refs = misses * monitor.miss_refs
            cycles = sizes * costs.memory_access + refs * costs.page_walk_level
            at = np.array(touch_ops, dtype=np.int64)
            durations[at] = -(-cycles * 1_000_000_000 // costs.clock_hz)
            for key, values in (("tlb_hits", hits), ("tlb_misses", misses), ("page_walk_refs", refs)):
                column = np.zeros(n_ops, dtype=np.int64)
                column[at] = values
                per_op[key] = column
            ends = np.zeros(n_ops, dtype=np.int64)
            ends[at] = sizes
            touch = (ends.cumsum(), at, vpns, run)
            bits = write
            want_bits = np.where(write, PTE_ACCESSED | PTE_DIRTY, PTE_ACCESSED).astype(np.uint8)
            stale = (flags & want_bits) != want_bits
    # Keep the operations that start within the budget, and before the first unplannable one.
    starts = durations[:cut].cumsum() - durations[:cut]
    keep = min(cut, int(starts.searchsorted(budget_ns, side="right")))
    if keep < _MIN_OPS:
        _give_back(proc, ops)
        proc.plan_cap = _FIRST_OPS
        if cut < _MIN_OPS:
            _back_off(proc)
        return None
    _give_back(proc, ops[keep:])
    proc.op_ns = float(durations[:keep].mean())
    proc.plan_backoff = 0
    # Look further next time only while runs are not cut short by an unplannable operation.
    proc.plan_cap = 2 * keep + _FIRST_OPS if keep == cut else min(MAX_OPS, max(proc.plan_cap, 2 * keep))
    per_op = {k: v[:keep] for k, v in per_op.items()}
    if touch is not None:
        ends, at, vpns, run = touch
        touch = (ends[:keep], at[at < keep], vpns, run)
    return RunAhead(
        proc, guest.vm.counters, guest.hypervisor.machine.memory.content, ops[:keep], durations[:keep], per_op, touch,
        stale, bits, guest.vm.accessed,
    )  # fmt: skip
