"""State machine for a memory service (page sharing, ballooning, any service that moves guest pages).

Hypothesis boots VMs from two images (so some pages are equal across VMs, some within one VM:
zero pages), lets their guests run and write, runs the service under test, stops VMs; after
every step it checks, exactly:

* **invisible to guests**: a service run changes no byte any guest process can read;
* **copy-on-write**: a guest's write changes exactly the pages it wrote, to the content the
  write makes of the old one; every other page of every VM reads as before, sharing or not;
* **a shared frame is never written**: while a frame stays shared its content never changes;
* **reference counts equal mappings**: every frame's count is the number of P2M entries,
  over all VMs, that name it;
* **frame conservation and isolation**: every frame is in exactly one state, the counts add up
  (with ``pages_sharing``), and a VM maps only frames it owns or frames shared copy-on-write;
* **ballooned pages are out of reach**: no process maps a page the balloon holds, and it has no
  frame (a balloon round trip, through the guest's swap, is covered by the first check).

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
from vframework.hv.hypervisor import Hypervisor
from vframework.hv.vm import VM
from vframework.machine.hardware import FREE, HYPERVISOR, SHARED, Machine
from vframework.sim.engine import Engine
from vframework.sim.units import PAGE_SIZE
from vframework.testing.doubles import FifoScheduler, FixedPolicy, FlatMode, ScriptWorkload
from vframework.testing.memory import assert_frames_and_isolation

if TYPE_CHECKING:
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
        self.procs: dict[int, GuestProcess] = {}
        self.shared_content: dict[int, int] = {}
        self.added = 0

    # -- what guests can read -----------------------------------------------------------
    def _views(self) -> dict[int, dict[int, int]]:
        out = {}
        for vm_id, proc in self.procs.items():
            guest = self.hv.vms[vm_id].guest
            assert guest is not None
            out[vm_id] = guest.visible_memory(proc)
        return out

    # -- rules -------------------------------------------------------------------------
    @precondition(lambda self: len(self.hv.vms) < MAX_VMS)
    @rule(
        image=st.sampled_from(IMAGES),
        layout=st.tuples(st.integers(0, 8), st.integers(0, 4), st.integers(0, 4)),
        touched=st.lists(st.integers(0, PAGES - 1), min_size=1, max_size=PAGES),
        writes=st.booleans(),
    )
    def add_vm(self, image: str, layout: tuple[int, int, int], touched: list[int], writes: bool) -> None:
        vm = VM(self.added, f"vm{self.added}", 1, PAGES, swap_pages=PAGES, image=image)
        self.added += 1
        self.hv.attach_mode(vm, FlatMode, Params())
        vm.guest = GuestOS(vm, self.hv)
        script = [Touch(np.array(touched, dtype=np.int64), writes)]
        proc = vm.guest.spawn(ScriptWorkload(script, PAGES).run(), PAGES, ContentLayout(*layout))
        vm.vcpus[0].process = proc
        self.procs[vm.id] = proc
        self.hv.add_vm(vm)

    @rule(span=st.integers(1, 20_000))
    def run_for(self, span: int) -> None:
        self.engine.run(until=self.engine.now + span)
        self.hv.sync()

    @precondition(lambda self: bool(self.hv.vms))
    @rule(times=st.integers(1, 4))
    def scan(self, times: int) -> None:
        before = self._views()
        for _ in range(times):
            self.service.run(self.hv.memory, self.engine.now)
        after = self._views()
        for vm_id, view in before.items():
            changed = sorted(v for v in view if after[vm_id].get(v) != view[v])
            assert not changed, (
                f"{self.service_cls.name} changed what VM vm{vm_id} reads at VPNs {changed[:5]}: "
                f"{[hex(view[v]) for v in changed[:5]]} became {[hex(after[vm_id].get(v, 0)) for v in changed[:5]]}"
            )

    @precondition(lambda self: any(p.mapped().size for p in self.procs.values()))
    @rule(data=st.data())
    def guest_writes(self, data: st.DataObject) -> None:
        vm_id = data.draw(st.sampled_from(sorted(i for i, p in self.procs.items() if p.mapped().size)), label="vm")
        proc = self.procs[vm_id]
        mapped = proc.mapped().tolist()
        vpns = np.array(data.draw(st.lists(st.sampled_from(mapped), min_size=1, max_size=6), label="vpns"))
        vm = self.hv.vms[vm_id]
        guest = vm.guest
        assert guest is not None
        before = self._views()
        self.hv.settle(vm)
        guest.touch(vm.vcpus[0], proc, vpns, write=True)
        after = self._views()
        written = np.unique(vpns)
        old = np.array([before[vm_id][v] for v in written.tolist()], dtype=np.uint64)
        expect = old.copy()
        write_content(expect, np.arange(written.size), written, proc.writes, proc.salt)
        for v, want in zip(written.tolist(), expect.tolist(), strict=True):
            assert after[vm_id][v] == want, f"vm{vm_id} wrote VPN {v} but reads {after[vm_id][v]:#x}, not {want:#x}"
        for other, view in before.items():
            for v, token in view.items():
                if other == vm_id and v in set(written.tolist()):
                    continue
                assert after[other][v] == token, (
                    f"vm{vm_id}'s write to VPNs {written.tolist()} changed what vm{other} reads at VPN {v}: "
                    f"{token:#x} became {after[other][v]:#x} (a shared frame was written in place?)"
                )

    @precondition(lambda self: bool(self.hv.vms))
    @rule(data=st.data(), pages=st.integers(0, PAGES))
    def set_target(self, data: st.DataObject, pages: int) -> None:
        """The policy's target moves (a balloon inflates or deflates towards it)."""
        vm_id = data.draw(st.sampled_from(sorted(self.hv.vms)), label="vm")
        self.hv.memory.set_target(vm_id, pages)

    @precondition(lambda self: bool(self.hv.vms))
    @rule(data=st.data())
    def stop_vm(self, data: st.DataObject) -> None:
        vm_id = data.draw(st.sampled_from(sorted(self.hv.vms)), label="vm")
        self.hv.remove_vm(self.hv.vms[vm_id])
        del self.procs[vm_id]

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
    def counters_agree(self) -> None:
        memory = self.machine.memory
        for vm in self.hv.vms.values():
            backed = vm.p2m[vm.p2m >= 0]
            shared = int(np.count_nonzero(memory.state[backed] == SHARED))
            assert vm.counters["mem_shared"] == shared, (
                f"{vm} says mem_shared {vm.counters['mem_shared']}, its P2M maps {shared} shared frames"
            )
