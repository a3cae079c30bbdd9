"""State machine for a memory service (page sharing, ballooning, any service that moves guest pages).

Hypothesis boots VMs from two images (so some pages are equal across VMs, some within one VM:
zero pages), lets their guests run, write, fork, exit and swap, has the hypervisor swap pages
too, runs the service under test, stops VMs; after every step it checks, exactly:

* **invisible to guests**: a service run changes no byte any guest process can read;
* **copy-on-write**: a guest's write changes exactly the pages it wrote, to the content the
  write makes of the old one; every other page of every VM reads as before, sharing or not;
* **a shared frame is never written**: while a frame stays shared its content never changes;
* **reference counts equal mappings**: every frame's count is the number of P2M entries,
  over all VMs, that name it;
* **frame conservation and isolation**: every frame is in exactly one state, the counts add up
  (with ``pages_sharing``), and a VM maps only frames it owns or frames shared copy-on-write;
* **a VM with share_pages off shares nothing**: it maps no shared frame (libvirt's nosharepages);
* **ballooned pages are out of reach**: no process maps a page the balloon holds, and it has no
  frame (a balloon round trip, through the guest's swap, is covered by the first check);
* **a VM's guarantee holds**: hypervisor swap never takes a VM below its ``mem_min`` (the kit
  gives each VM one), and a balloon never holds more than the VM's memory less it;
* **limits hold**, for a service that says it holds them (``holds_limits``): after each run no
  VM is above its ``mem_max`` (the kit moves it) with a private, unpinned page left to take;
* **pinned frames stay put**: a page a device reads or writes (a process's buffer pinned for
  direct I/O) keeps its frame, private, until the I/O completes: never reclaimed, swapped,
  shared or remapped, whatever the service, the guest or the hypervisor does meanwhile.

The policy's targets move too (a rule sets them), so a balloon inflates and deflates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from vframework.api.contract import MemoryService
from vframework.api.params import Params
from vframework.guest.mm import ContentLayout, write_content
from vframework.guest.ops import Touch
from vframework.guest.os import GuestOS
from vframework.hv.devices import DeviceHost
from vframework.hv.hypervisor import Hypervisor
from vframework.hv.sharing import pinned_frames
from vframework.hv.vm import VM
from vframework.machine.hardware import FREE, HYPERVISOR, PRIVATE, SHARED, STATE_NAMES, Machine
from vframework.sim.engine import Engine
from vframework.sim.units import PAGE_SIZE
from vframework.testing.doubles import FifoScheduler, FixedPolicy, FlatMode, ScriptWorkload
from vframework.testing.memory import assert_frames_and_isolation

if TYPE_CHECKING:
    from collections.abc import Callable

    from vframework.guest.mm import GuestProcess

__all__ = ["SharingMachine"]

PAGES = 16
MAX_VMS = 4
IMAGES = ("image-a", "image-b")


class SharingMachine(RuleBasedStateMachine):
    """Parametrize with :meth:`for_component` (a ``memory_service`` class)."""

    service_cls: type[MemoryService[Params]]

    @classmethod
    def for_component(cls, service_cls: type[MemoryService[Params]]) -> type[SharingMachine]:
        return type(f"{cls.__name__}[{service_cls.name}]", (cls,), {"service_cls": service_cls})

    def __init__(self) -> None:
        super().__init__()
        self.engine = Engine(seed=0)
        # Room for every VM's pages and a private copy of each: COW never runs out.
        self.machine = Machine(2, 2 * MAX_VMS * PAGES * PAGE_SIZE)
        self.service = self.service_cls(self.service_cls.kit_params())
        self.hv = Hypervisor(self.engine, self.machine, FifoScheduler(None, 2), FixedPolicy(None), [])
        self.hv.start()
        #: Each VM's processes: the first, and those forked since.
        self.procs: dict[int, list[GuestProcess]] = {}
        self.shared_content: dict[int, int] = {}
        #: (VM id, PPN) -> the frame it had when pinned for I/O, and how many I/Os pin it.
        self.pinned: dict[tuple[int, int], tuple[int, int]] = {}
        self.added = 0

    # -- what guests can read -----------------------------------------------------------
    def _views(self) -> dict[tuple[int, int], dict[int, int]]:
        """(VM id, PID) -> what that process reads at each VPN it maps or has swapped."""
        out = {}
        for vm_id, procs in self.procs.items():
            guest = self.hv.vms[vm_id].guest
            assert guest is not None
            for proc in procs:
                out[vm_id, proc.pid] = guest.visible_memory(proc)
        return out

    def _unchanged(self, before: dict[tuple[int, int], dict[int, int]], what: str) -> None:
        after = self._views()
        for (vm_id, pid), view in before.items():
            now = after.get((vm_id, pid), {})
            changed = sorted(v for v in view if now.get(v) != view[v])
            assert not changed, (
                f"{what} changed what vm{vm_id} process {pid} reads at VPNs {changed[:5]}: "
                f"{[hex(view[v]) for v in changed[:5]]} became {[hex(now.get(v, 0)) for v in changed[:5]]}"
            )

    # -- rules -------------------------------------------------------------------------
    @precondition(lambda self: len(self.hv.vms) < MAX_VMS)
    @rule(
        # An index, not the name: a strategy's label hashes its elements, and a string's hash
        # changes with PYTHONHASHSEED, so sampling names would draw other examples on a fixed seed.
        image=st.integers(0, len(IMAGES) - 1),
        layout=st.tuples(st.integers(0, 8), st.integers(0, 4), st.integers(0, 4)),
        touched=st.lists(st.integers(0, PAGES - 1), min_size=1, max_size=PAGES),
        writes=st.booleans(),
        # Mostly sharable: a VM with share_pages off (libvirt's nosharepages) is the exception.
        share_pages=st.integers(0, 3).map(bool),
        mem_min=st.integers(0, PAGES),
    )
    def add_vm(
        self,
        image: int,
        layout: tuple[int, int, int],
        touched: list[int],
        writes: bool,
        share_pages: bool,
        mem_min: int,
    ) -> None:
        vm = VM(self.added, f"vm{self.added}", 1, PAGES, swap_pages=PAGES, image=IMAGES[image])
        vm.share_pages = share_pages
        self.added += 1
        self.hv.attach_mode(vm, FlatMode, Params())
        vm.guest = GuestOS(vm, self.hv)
        script = [Touch(np.array(touched, dtype=np.int64), writes)]
        proc = vm.guest.spawn(ScriptWorkload(script, PAGES).run(), PAGES, ContentLayout(*layout))
        vm.vcpus[0].process = proc
        self.procs[vm.id] = [proc]
        self.hv.add_vm(vm)
        vm.mem_min = mem_min  # as a policy's bounds() would give it

    @rule(span=st.integers(1, 20_000))
    def run_for(self, span: int) -> None:
        self.engine.run(until=self.engine.now + span)
        self.hv.sync()

    @precondition(lambda self: bool(self.hv.vms))
    @rule(times=st.integers(1, 4))
    def scan(self, times: int) -> None:
        before, held = self._views(), self._held()
        for _ in range(times):
            self.service.run(self.hv.memory, self.engine.now)
        self._unchanged(before, self.service_cls.name)
        self._kept_mem_min(held, self.service_cls.name)
        if self.service_cls.holds_limits:
            self._within_limits()

    def _within_limits(self) -> None:
        """After a run of a service that holds limits, no VM is above its mem_max while it
        still has a page the service could have taken (private and not pinned)."""
        memory = self.machine.memory
        for vm in self.hv.vms.values():
            held = vm.counters["mem_granted"]
            if held <= vm.mem_max:
                continue
            mpns = vm.p2m[vm.p2m >= 0].astype(np.int64)
            takeable = mpns[(memory.state[mpns] == PRIVATE) & ~np.isin(mpns, pinned_frames(vm))]
            assert not takeable.size, (
                f"{self.service_cls.name} ran and left {vm} holding {held} pages, above its mem_max "
                f"({vm.mem_max} pages), with {takeable.size} private, unpinned pages it could have taken"
            )

    @precondition(lambda self: bool(self._writers()))
    @rule(data=st.data(), before=st.integers(1, 3), after=st.integers(1, 3))
    def writes_mid_scan(self, data: st.DataObject, before: int, after: int) -> None:
        """Guests write between two stretches of one scan: a service that trusts what it saw
        before the writes (a tree entry, a hint) merges pages that no longer match."""
        self.scan(before)
        self.guest_writes(data)
        self.scan(after)

    def _run_as(self, vm: VM, proc: GuestProcess, action: Callable[[], object]) -> None:
        """Run ``action`` as ``proc`` on the VM's vCPU: a process that is not the vCPU's own
        is switched to and back, as the guest's scheduler would (an untagged TLB is flushed)."""
        guest = vm.guest
        assert guest is not None
        vcpu = vm.vcpus[0]
        own = vcpu.process
        self.hv.settle(vm)
        if proc is not own and own is not None:
            guest.switch_to(vcpu, proc)
        try:
            action()
        finally:
            if proc is not own and own is not None:
                guest.switch_to(vcpu, own)

    def _writers(self) -> list[tuple[int, int]]:
        return sorted((i, n) for i, procs in self.procs.items() for n, p in enumerate(procs) if p.mapped().size)

    @precondition(lambda self: bool(self._writers()))
    @rule(data=st.data())
    def guest_writes(self, data: st.DataObject) -> None:
        vm_id, index = data.draw(st.sampled_from(self._writers()), label="vm, process")
        proc = self.procs[vm_id][index]
        mapped = proc.mapped().tolist()
        vpns = np.array(data.draw(st.lists(st.sampled_from(mapped), min_size=1, max_size=6), label="vpns"))
        vm = self.hv.vms[vm_id]
        guest = vm.guest
        assert guest is not None
        before = self._views()
        self._run_as(vm, proc, lambda: guest.touch(vm.vcpus[0], proc, vpns, write=True))
        after = self._views()
        written = np.unique(vpns)
        me = (vm_id, proc.pid)
        old = np.array([before[me][v] for v in written.tolist()], dtype=np.uint64)
        expect = old.copy()
        write_content(expect, np.arange(written.size), written, proc.writes, proc.salt)
        for v, want in zip(written.tolist(), expect.tolist(), strict=True):
            assert after[me][v] == want, (
                f"vm{vm_id} process {proc.pid} wrote VPN {v} but reads {after[me][v]:#x}, not {want:#x}"
            )
        for other, view in before.items():
            for v, token in view.items():
                if other == me and v in set(written.tolist()):
                    continue
                assert after[other][v] == token, (
                    f"vm{vm_id} process {proc.pid}'s write to VPNs {written.tolist()} changed what vm{other[0]} "
                    f"process {other[1]} reads at VPN {v}: {token:#x} became {after[other][v]:#x} "
                    "(a shared frame, or a page shared since a fork, written in place?)"
                )

    @precondition(lambda self: bool(self.procs))
    @rule(data=st.data())
    def guest_forks(self, data: st.DataObject) -> None:
        """A process forks: the child shares its pages copy-on-write (then either may write)."""
        vm_id = data.draw(st.sampled_from(sorted(self.procs)), label="vm")
        vm = self.hv.vms[vm_id]
        guest = vm.guest
        assert guest is not None
        # Indices, not the processes: a strategy's label hashes its elements, and an object's
        # hash is its address, so sampling objects makes a fixed seed draw different examples
        # in different processes.
        parent = self.procs[vm_id][data.draw(st.integers(0, len(self.procs[vm_id]) - 1), label="parent")]
        before = self._views()
        forked: list[GuestProcess] = []
        self._run_as(vm, parent, lambda: forked.append(guest.fork(vm.vcpus[0], parent)[0]))
        child = forked[0]
        self.procs[vm_id].append(child)
        self._unchanged(before, "a fork")
        assert guest.visible_memory(child) == before[vm_id, parent.pid], "the child does not read what its parent does"

    @precondition(lambda self: any(len(p) > 1 for p in self.procs.values()))
    @rule(data=st.data())
    def guest_exits(self, data: st.DataObject) -> None:
        vm_id = data.draw(st.sampled_from(sorted(i for i, p in self.procs.items() if len(p) > 1)), label="vm")
        vm = self.hv.vms[vm_id]
        guest = vm.guest
        assert guest is not None
        child = self.procs[vm_id][data.draw(st.integers(1, len(self.procs[vm_id]) - 1), label="exiting process")]
        # A process's I/O completes before it exits (Linux's exit_aio waits for it): the pages
        # it maps are unpinned, so none is freed while a device still reads or writes it.
        mapped = set(child.page_table[child.mapped()].tolist())
        for key in [k for k in self.pinned if k[0] == vm_id and k[1] in mapped]:
            self._complete_io(key, all_of_it=True)
        before = self._views()
        del before[vm_id, child.pid]
        self._run_as(vm, child, lambda: guest.exit(vm.vcpus[0], child))
        self.procs[vm_id].remove(child)
        self._unchanged(before, "an exit")

    @precondition(lambda self: bool(self.procs))
    @rule(data=st.data(), count=st.integers(1, PAGES))
    def guest_swaps(self, data: st.DataObject, count: int) -> None:
        """The guest pages some of its own pages out to its swap area (as memory pressure would)."""
        vm_id = data.draw(st.sampled_from(sorted(self.procs)), label="vm")
        vm = self.hv.vms[vm_id]
        guest = vm.guest
        assert guest is not None
        mem = guest.memory
        count = min(count, int(np.count_nonzero(guest.evictable())), mem.free_swap_slots)
        if count <= 0:
            return
        before = self._views()
        self.hv.settle(vm)
        guest._swap_out(vm.vcpus[0], count)
        self._unchanged(before, "the guest's own swapping")

    @precondition(lambda self: bool(self.procs))
    @rule(data=st.data())
    def host_swaps(self, data: st.DataObject) -> None:
        """The hypervisor pages some frames out behind the guest's back."""
        vm_id = data.draw(st.sampled_from(sorted(self.procs)), label="vm")
        ppns = data.draw(st.lists(st.integers(0, PAGES - 1), min_size=1, max_size=PAGES), label="PPNs")
        before, held = self._views(), self._held()
        self.hv.memory.swap_out(vm_id, ppns, 1_000)
        self._unchanged(before, "the hypervisor's swapping")
        self._kept_mem_min(held, "the hypervisor's swapping")

    @precondition(lambda self: bool(self.hv.vms))
    @rule(data=st.data(), pages=st.integers(1, PAGES))
    def fault_finds_no_frame(self, data: st.DataObject, pages: int) -> None:
        """A VM's page fault found no free frame: the hypervisor asks the service to free
        ``pages`` now (``reclaim_now``), none of them the faulting VM's."""
        vm_id = data.draw(st.sampled_from(sorted(self.hv.vms)), label="faulting vm")
        memory = self.hv.memory
        before, free, held = self._views(), memory.free_frames, self._held()
        frames = memory.backing(vm_id, np.arange(self.hv.vms[vm_id].memory_pages))
        freed = self.service.reclaim_now(memory, pages, vm_id)
        self._unchanged(before, f"{self.service_cls.name}'s reclaim_now")
        self._kept_mem_min(held, f"{self.service_cls.name}'s reclaim_now")
        assert isinstance(freed, int | np.integer), f"reclaim_now returned {freed!r}, not a count of frames"
        assert freed >= 0, f"reclaim_now returned {freed}, a negative count of frames"
        assert memory.free_frames - free >= freed, (
            f"reclaim_now({pages} pages, exclude vm{vm_id}) says it freed {freed} frames, "
            f"but the host's free frames went from {free} to {memory.free_frames}"
        )
        after = memory.backing(vm_id, np.arange(self.hv.vms[vm_id].memory_pages))
        taken = np.flatnonzero((frames >= 0) & (after < 0)).tolist()
        assert not taken, f"reclaim_now took PPNs {taken[:5]} from vm{vm_id}, the VM it was told to leave alone"

    @precondition(lambda self: bool(self.hv.vms))
    @rule(data=st.data(), pages=st.integers(0, PAGES))
    def set_target(self, data: st.DataObject, pages: int) -> None:
        """The policy's target moves (a balloon inflates or deflates towards it)."""
        vm_id = data.draw(st.sampled_from(sorted(self.hv.vms)), label="vm")
        self.hv.memory.set_target(vm_id, pages)

    @precondition(lambda self: bool(self._writers()))
    @rule(data=st.data())
    def direct_io_pins(self, data: st.DataObject) -> None:
        """A process starts direct I/O on pages it maps: the device pins them (a page on a
        shared frame gets its private copy first), and they must stay where they are."""
        vm_id, index = data.draw(st.sampled_from(self._writers()), label="vm, process")
        proc = self.procs[vm_id][index]
        mapped = proc.mapped().tolist()
        vpns = data.draw(st.lists(st.sampled_from(mapped), min_size=1, max_size=4, unique=True), label="vpns")
        vm = self.hv.vms[vm_id]
        ppns = np.unique(proc.page_table[np.array(vpns, dtype=np.int64)]).astype(np.int64)
        # At most half of a VM's pages under I/O at once: the guest keeps pages to swap, so that
        # a copy-on-write or a fault elsewhere can still find one.
        pinned = vm.io_pinned
        again = np.isin(ppns, pinned)
        fresh = np.flatnonzero(~again)[: max(PAGES // 2 - pinned.size, 0)]
        ppns = np.sort(np.concatenate([ppns[again], ppns[fresh]]))
        before = self._views()
        DeviceHost(self.hv, vm).pin(ppns)
        self._unchanged(before, "pinning pages for I/O")
        for ppn in ppns.tolist():
            _, count = self.pinned.get((vm_id, ppn), (0, 0))
            self.pinned[vm_id, ppn] = (int(vm.p2m[ppn]), count + 1)

    @precondition(lambda self: bool(self.hv.vms))
    @rule(data=st.data())
    def limit_vm(self, data: st.DataObject) -> None:
        """The VM's mem_max moves (as a policy's bounds would give it), maybe below what it holds."""
        vm = self.hv.vms[data.draw(st.sampled_from(sorted(self.hv.vms)), label="vm")]
        vm.mem_max = data.draw(st.integers(vm.mem_min, vm.memory_pages), label="mem_max pages")

    @precondition(lambda self: bool(self.pinned))
    @rule(data=st.data())
    def io_completes(self, data: st.DataObject) -> None:
        """One I/O on a pinned page completes: the device unpins it."""
        self._complete_io(data.draw(st.sampled_from(sorted(self.pinned)), label="pinned page"))

    def _complete_io(self, key: tuple[int, int], all_of_it: bool = False) -> None:
        vm_id, ppn = key
        mpn, count = self.pinned.pop(key)
        done = count if all_of_it else 1
        DeviceHost(self.hv, self.hv.vms[vm_id]).unpin(np.full(done, ppn, dtype=np.int64))
        if count > done:
            self.pinned[key] = (mpn, count - done)

    @precondition(lambda self: bool(self.hv.vms))
    @rule(data=st.data())
    def stop_vm(self, data: st.DataObject) -> None:
        vm_id = data.draw(st.sampled_from(sorted(self.hv.vms)), label="vm")
        self.hv.remove_vm(self.hv.vms[vm_id])
        del self.procs[vm_id]
        self.pinned = {k: v for k, v in self.pinned.items() if k[0] != vm_id}

    # -- invariants --------------------------------------------------------------------
    @invariant()
    def frames_and_isolation(self) -> None:
        assert_frames_and_isolation(self.machine.memory, self.hv.vms.values())

    @invariant()
    def refcounts_equal_mappings(self) -> None:
        memory = self.machine.memory
        mapped = [vm.p2m[vm.p2m >= 0] for vm in self.hv.vms.values()]
        counts = np.bincount(np.concatenate([np.empty(0, np.int64), *mapped]).astype(np.int64), minlength=memory.frames)
        used = memory.state != FREE
        wrong = np.flatnonzero(used & (memory.state != HYPERVISOR) & (counts != memory.refcount))
        assert not wrong.size, (
            f"frame {int(wrong[0])} has reference count {int(memory.refcount[wrong[0]])} "
            f"but {int(counts[wrong[0]])} P2M entries map it"
        )
        dangling = np.flatnonzero((memory.state == FREE) & (counts > 0))
        assert not dangling.size, f"free frame {int(dangling[0])} is still mapped by a VM"

    @invariant()
    def shared_frames_never_written(self) -> None:
        memory = self.machine.memory
        shared = np.flatnonzero(memory.state == SHARED)
        now = dict(zip(shared.tolist(), memory.content[shared].tolist(), strict=True))
        for mpn, token in now.items():
            was = self.shared_content.get(mpn)
            assert was is None or was == token, f"shared frame {mpn} was written: {was:#x} became {token:#x}"
        self.shared_content = now

    @invariant()
    def ballooned_pages_are_out_of_reach(self) -> None:
        for vm in self.hv.vms.values():
            guest = vm.guest
            assert guest is not None
            held = np.array(guest.memory.balloon, dtype=np.int64)
            assert vm.counters["mem_balloon"] == held.size, f"{vm} says mem_balloon {vm.counters['mem_balloon']}"
            if not held.size:
                continue
            assert np.unique(held).size == held.size, f"{vm}'s balloon holds a page twice"
            backed = held[vm.p2m[held] >= 0]
            assert not backed.size, f"{vm}'s ballooned page {int(backed[0])} still has a frame"
            for proc in guest.processes:
                mapped = np.isin(proc.page_table, held)
                assert not mapped.any(), (
                    f"{vm} process {proc.pid} maps ballooned page(s) at VPNs {np.flatnonzero(mapped)[:5]}"
                )

    @invariant()
    def guarantees_hold(self) -> None:
        for vm in self.hv.vms.values():
            balloon = vm.counters["mem_balloon"]
            assert balloon <= vm.memory_pages - vm.mem_min, (
                f"{vm}'s balloon holds {balloon} of its {vm.memory_pages} pages: more than its memory "
                f"less its mem_min ({vm.mem_min} pages), which stays usable"
            )

    def _held(self) -> dict[int, tuple[int, int]]:
        return {i: (vm.counters["mem_granted"], vm.counters["mem_balloon"]) for i, vm in self.hv.vms.items()}

    def _kept_mem_min(self, before: dict[int, tuple[int, int]], what: str) -> None:
        """Between ``before`` and now, only a balloon took a VM's pages below its mem_min (the
        balloon's pages are the VM's own to give; swap and reclaim must leave the guarantee)."""
        for vm_id, (granted, balloon) in before.items():
            vm = self.hv.vms.get(vm_id)
            if vm is None:
                continue
            now = vm.counters["mem_granted"]
            taken = granted - now - max(vm.counters["mem_balloon"] - balloon, 0)
            assert now >= vm.mem_min or taken <= 0, (
                f"{what} took {taken} pages of {vm} besides its balloon, leaving it {now} pages, "
                f"below its mem_min ({vm.mem_min} pages)"
            )

    @invariant()
    def pinned_frames_stay_put(self) -> None:
        memory = self.machine.memory
        for (vm_id, ppn), (mpn, _) in self.pinned.items():
            vm = self.hv.vms[vm_id]
            now = int(vm.p2m[ppn])
            assert now == mpn, f"{vm}'s page {ppn}, pinned for I/O on frame {mpn}, is now on frame {now}"
            mine = memory.state[mpn] == PRIVATE and memory.owner[mpn] == vm_id
            assert mine, (
                f"{vm}'s page {ppn} is pinned for I/O on frame {mpn}, which is {STATE_NAMES[memory.state[mpn]]} "
                f"and owned by {int(memory.owner[mpn])}: a device's write would reach whoever else maps it"
            )

    @invariant()
    def vms_without_share_pages_share_nothing(self) -> None:
        memory = self.machine.memory
        for vm in self.hv.vms.values():
            if vm.share_pages:
                continue
            backed = vm.p2m[vm.p2m >= 0]
            shared = np.flatnonzero(memory.state[backed] == SHARED)
            assert not shared.size, f"{vm} has share_pages off but maps shared frame {int(backed[shared[0]])}"

    @invariant()
    def counters_agree(self) -> None:
        memory = self.machine.memory
        for vm in self.hv.vms.values():
            backed = vm.p2m[vm.p2m >= 0]
            shared = int(np.count_nonzero(memory.state[backed] == SHARED))
            assert vm.counters["mem_shared"] == shared, (
                f"{vm} says mem_shared {vm.counters['mem_shared']}, its P2M maps {shared} shared frames"
            )
