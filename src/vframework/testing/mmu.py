"""State machine for memory virtualization: coherence, isolation, frame conservation, and
equivalence of guest-visible memory with bare metal.

Hypothesis drives guest memory work in a VM under the mode being checked, and the same work in
a bare-metal reference: page references (reads and writes), fork (children share pages
copy-on-write), process exit, context switches, and the hypervisor taking guest frames back.
After every step:

* coherence: every shadow-page-table entry and every TLB entry of the VM is contained in
  guest page table o P2M, and a reference right after any change reaches exactly the frame
  guest page table o P2M names;
* isolation: the VM's P2M names only frames it owns;
* frame conservation: every frame in exactly one state, the counts adding up;
* equivalence: every page each process can read holds the same content as on bare metal
  (frames the hypervisor took back are excluded: reclaiming them without losing content is
  the job of the reclamation services, checked where they are);
* the guest's memory semantics, against a model that knows nothing of frames, page tables or
  swap: each process reads what it last wrote to each VPN (zero if never), a child starts with
  its parent's contents, and a write by one process never changes what another reads
  (copy-on-write). Equivalence alone cannot see a guest-model bug that bare metal shares.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from vframework.api.contract import Mode
from vframework.api.params import Params
from vframework.guest.mm import PTE_PRESENT, GuestOutOfMemory, GuestProcess, write_content
from vframework.guest.os import GuestOS
from vframework.hv.hypervisor import Hypervisor
from vframework.hv.vm import VM
from vframework.machine.hardware import FREE, Machine
from vframework.machine.mmu import TLB
from vframework.sim.engine import Engine
from vframework.sim.units import PAGE_SIZE
from vframework.testing.doubles import FifoScheduler, FixedPolicy, Native
from vframework.testing.memory import assert_owns_its_frames

__all__ = ["MemoryMachine"]

#: Processes a machine grows to at most (forks stop there).
_MAX_PROCESSES = 4

PAGES = 24  # guest-physical pages per VM
FOREIGN = 0xF0E1_6000_F0E1_6000  # the content of every frame no VM owns (see _poison_free_frames)
SPACE = 12  # virtual pages per process


class _Guest:
    def __init__(self, mode_cls: type[Mode[Params]], arch: str, vm_id: int, hv: Hypervisor) -> None:
        self.vm = VM(vm_id, f"vm{vm_id}", 1, PAGES, swap_pages=PAGES)
        self.mode = hv.attach_mode(self.vm, mode_cls, mode_cls.params_model())
        self.vm.guest = GuestOS(self.vm, hv)
        hv.add_vm(self.vm)
        self.guest = self.vm.guest
        self.vcpu = self.vm.vcpus[0]
        self.vcpu.process = self.guest.spawn(None, SPACE)


class MemoryMachine(RuleBasedStateMachine):
    """Parametrize with :meth:`for_component` (and an architecture)."""

    #: The mode under test, set by :meth:`for_component` (None on this unparametrized base).
    mode_cls: Any = None
    arch = "x86"
    exhausted = False  # both guests ran out of memory alike: nothing more to compare

    @classmethod
    def for_component(cls, mode_cls: type[Mode[Params]], arch: str | None = None) -> type[MemoryMachine]:
        arch = arch or mode_cls.architectures[0]
        return type(f"{cls.__name__}[{mode_cls.name}@{arch}]", (cls,), {"mode_cls": mode_cls, "arch": arch})

    @initialize(tagged=st.booleans())
    def boot(self, tagged: bool) -> None:
        def hypervisor() -> Hypervisor:
            hv = Hypervisor(
                Engine(seed=0),
                Machine(1, 4 * PAGES * PAGE_SIZE),
                FifoScheduler(None, 1),
                FixedPolicy(None),
                arch=self.arch,
                tlb_entries=8,
                tlb_tagged=tagged,
            )
            hv._offline_tlb = TLB(8, tagged)
            return hv

        self.hv = hypervisor()
        self.sut = _Guest(self.mode_cls, self.arch, 0, self.hv)
        self.ref = _Guest(Native, self.arch, 0, hypervisor())
        self.exhausted = False
        self.lost: set[tuple[int, int]] = set()  # (pid, vpn) whose frame the hypervisor took
        # The model: pid -> {VPN: content handle} of the system under test's processes.
        self.model: dict[int, dict[int, int]] = {p.pid: {} for p in self.sut.guest.processes}
        self._poison_free_frames()

    def _poison_free_frames(self) -> None:
        # Free frames hold a marker no guest ever writes (allocation zeroes a frame), so a read
        # of a frame the VM does not own, such as one through an unbacked P2M entry (-1: the last
        # frame), shows up as the marker in what the guest can read.
        memory = self.hv.machine.memory
        memory.content[memory.state == FREE] = FOREIGN

    def _both(self) -> tuple[_Guest, _Guest]:
        return self.sut, self.ref

    def _same_outcome(self, step: Callable[[_Guest], None]) -> bool:
        """Run ``step(guest)`` on both guests. Forked processes can need more pages than the
        small VM has in memory and swap together: then both must fail alike, and the run ends
        there."""
        failed = []
        for g in self._both():
            try:
                step(g)
                failed.append(False)
            except GuestOutOfMemory:
                failed.append(True)
        assert failed[0] == failed[1], f"out of guest memory under {self.mode_cls.name} only on one side: {failed}"
        self.exhausted = failed[0]
        return not failed[0]

    def _proc(self, g: _Guest, index: int) -> GuestProcess:
        return g.guest.processes[index % len(g.guest.processes)]

    @precondition(lambda self: not self.exhausted)
    @rule(
        index=st.integers(0, 3), vpns=st.lists(st.integers(0, SPACE - 1), min_size=1, max_size=6), write=st.booleans()
    )
    def touch(self, index: int, vpns: list[int], write: bool) -> None:
        pages = np.array(vpns, dtype=np.int64)

        def step(g: _Guest) -> None:
            proc = self._proc(g, index)
            if g.vcpu.process is not proc:
                g.guest.switch_to(g.vcpu, proc)
            g.guest.touch(g.vcpu, proc, pages, write)

        if not self._same_outcome(step):
            return
        proc = self._proc(self.sut, index)
        model = self.model[proc.pid]
        for vpn in sorted(set(vpns)):
            model.setdefault(vpn, 0)  # a first touch maps a zero-filled page
        if write:
            # The same function of (old content, VPN, the process's write count) the guest uses.
            unique = np.array(sorted(set(vpns)), dtype=np.int64)
            content = np.array([model[v] for v in unique.tolist()], dtype=np.uint64)
            write_content(content, np.arange(unique.size), unique, proc.writes, proc.salt)
            model.update(zip(unique.tolist(), (int(c) for c in content), strict=True))
        # The next reference sees the current mapping, whatever was cached before.
        _, mpns = self.sut.mode.translate(self.sut.vcpu, proc, pages, False)
        expected = self.sut.vm.p2m[proc.page_table[pages]]
        assert np.array_equal(mpns, expected), f"a reference reached {mpns.tolist()}, mapping says {expected.tolist()}"

    @precondition(lambda self: not self.exhausted and len(self.sut.guest.processes) < _MAX_PROCESSES)
    @rule(index=st.integers(0, 3))
    def fork(self, index: int) -> None:
        parent = self._proc(self.sut, index).pid
        before = {p.pid for p in self.sut.guest.processes}
        for g in self._both():
            g.guest.fork(g.vcpu, self._proc(g, index))
        # A child shares its parent's pages, so it shares the parent's lost contents too.
        for child in (p.pid for p in self.sut.guest.processes if p.pid not in before):
            self.lost.update((child, vpn) for pid, vpn in list(self.lost) if pid == parent)
            self.model[child] = dict(self.model[parent])

    @precondition(lambda self: not self.exhausted and len(self.sut.guest.processes) > 1)
    @rule(index=st.integers(1, 3))
    def exit(self, index: int) -> None:
        for g in self._both():
            procs = g.guest.processes
            proc = procs[1 + (index - 1) % (len(procs) - 1)]
            if g.vcpu.process is proc:
                g.guest.switch_to(g.vcpu, procs[0])
            g.guest.exit(g.vcpu, proc)
        live = {p.pid for p in self.sut.guest.processes}
        self.lost = {(pid, vpn) for pid, vpn in self.lost if pid in live}
        self.model = {pid: pages for pid, pages in self.model.items() if pid in live}

    @precondition(lambda self: not self.exhausted)
    @rule(touch=st.integers(0, 4))
    def fork_wait(self, touch: int) -> None:
        def step(g: _Guest) -> None:
            assert g.vcpu.process is not None
            g.guest.fork_wait(g.vcpu, g.vcpu.process, touch)

        self._same_outcome(step)

    @precondition(lambda self: not self.exhausted)
    @rule(programs=st.lists(st.integers(1, 4), min_size=1, max_size=2))
    def fork_exec(self, programs: list[int]) -> None:
        """A child that execs one program, or a shell that execs another, then exits: every
        address space it had goes, and the parent's pages come back writable or stay shared."""

        def step(g: _Guest) -> None:
            assert g.vcpu.process is not None
            g.guest.fork_exec(g.vcpu, g.vcpu.process, tuple(programs), shell=len(programs) > 1)

        self._same_outcome(step)

    @precondition(lambda self: self.exhausted)
    @rule()
    def out_of_memory(self) -> None:
        """Both guests ran out of memory alike, so the comparison is over; this rule only lets
        the run end without Hypothesis finding no rule to take."""

    @precondition(lambda self: not self.exhausted)
    @rule(ppns=st.lists(st.integers(0, PAGES - 1), min_size=1, max_size=4, unique=True))
    def hypervisor_takes_frames(self, ppns: list[int]) -> None:
        vm = self.sut.vm
        chosen = np.array(ppns, dtype=np.int64)
        for proc in self.sut.guest.processes:
            present = proc.mapped()
            hit = present[np.isin(proc.page_table[present], chosen)]
            self.lost.update((proc.pid, int(v)) for v in hit)
        self.hv.release_pages(vm, chosen)
        self._poison_free_frames()

    @invariant()
    def coherence(self) -> None:
        if not hasattr(self, "sut"):
            return
        vm, mode = self.sut.vm, self.sut.mode
        procs = {p.pid: p for p in self.sut.guest.processes}
        shadows = mode.__dict__.get("_shadows")
        if shadows is not None:
            for pid, shadow in shadows.tables.items():
                assert pid in procs, f"a shadow table outlived process {pid}"
                valid = np.flatnonzero(shadow >= 0)
                ppns = procs[pid].page_table[valid]
                assert np.all(ppns >= 0), f"shadow maps VPNs {valid[ppns < 0].tolist()} the guest does not"
                wrong = np.flatnonzero(shadow[valid] != vm.p2m[ppns])
                if wrong.size:
                    i = int(wrong[0])
                    raise AssertionError(
                        f"{vm.name} process {pid}: the shadow maps VPN {int(valid[i])} to MPN {int(shadow[valid[i]])}, "
                        f"but the guest page table gives PPN {int(ppns[i])} and the P2M maps it to MPN "
                        f"{int(vm.p2m[ppns[i]])} ({wrong.size} such entries)"
                    )
        for tlb in (*self.hv.tlbs, self.hv._offline_tlb):
            keys, mpns = tlb.valid()
            tags, vpns = TLB.split(keys)
            for tag, vpn, mpn in zip(tags.tolist(), vpns.tolist(), mpns.tolist(), strict=True):
                current = self.sut.vcpu.process
                assert current is not None
                pid = tag & 0xFFF if tlb.tagged else current.pid
                proc = procs.get(pid)
                assert proc is not None, f"a TLB entry of a dead process {pid}"
                ppn = int(proc.page_table[vpn])
                assert ppn >= 0, f"stale TLB entry VPN {vpn} -> MPN {mpn}: the VPN is unmapped"
                assert int(vm.p2m[ppn]) == mpn, f"stale TLB entry VPN {vpn} -> MPN {mpn}: PPN {ppn} is now elsewhere"

    @invariant()
    def isolation_and_conservation(self) -> None:
        if not hasattr(self, "sut"):
            return
        memory = self.hv.machine.memory
        memory.check()
        assert_owns_its_frames(memory, self.sut.vm, "the VM")
        guest = self.sut.guest
        for p in guest.processes:
            seen = guest.visible_memory(p)
            bad = sorted(v for v, c in seen.items() if c == FOREIGN)
            assert not bad, (
                f"{self.sut.vm.name} process {p.pid} reads a frame it does not own at VPNs {bad[:5]} "
                f"(PPNs {[int(p.page_table[v]) for v in bad[:5]]}; an unbacked or stale P2M entry?)"
            )

    @invariant()
    def memory_equivalence(self) -> None:
        if not hasattr(self, "sut") or self.exhausted:
            # A step that ran out of memory stopped part-way (a fork_wait's child may be left
            # alive, without the lost pages of its parent): nothing after it is comparable.
            return
        for mine, theirs in zip(self.sut.guest.processes, self.ref.guest.processes, strict=False):
            a, b = self.sut.guest.visible_memory(mine), self.ref.guest.visible_memory(theirs)
            for vpn in set(a) | set(b):
                if (mine.pid, vpn) in self.lost:
                    continue
                assert a.get(vpn) == b.get(vpn), (
                    f"process {mine.pid} VPN {vpn} reads {a.get(vpn)!r} under the mode, {b.get(vpn)!r} on bare metal"
                )
            flags_a = mine.pte_flags & PTE_PRESENT
            flags_b = theirs.pte_flags & PTE_PRESENT
            differ = np.flatnonzero(flags_a != flags_b).tolist()
            assert not differ, (
                f"process {mine.pid}: VPNs {differ[:5]} are present under the mode and not on bare metal, or the "
                f"other way round ({len(differ)} VPNs)"
            )

    @invariant()
    def reads_what_was_written(self) -> None:
        if not hasattr(self, "sut") or self.exhausted:
            return  # a step that ran out of memory may have done part of its work
        for proc in self.sut.guest.processes:
            seen = self.sut.guest.visible_memory(proc)
            model = self.model[proc.pid]
            assert set(seen) == set(model), (
                f"process {proc.pid} can read VPNs {sorted(seen)}, but touched {sorted(model)}"
            )
            for vpn, value in model.items():
                if (proc.pid, vpn) not in self.lost:
                    assert seen[vpn] == value, (
                        f"process {proc.pid} VPN {vpn} reads {seen[vpn]:#x}, last wrote {value:#x} "
                        "(a write of another process, or a lost swap or copy-on-write)"
                    )
