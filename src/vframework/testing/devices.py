"""State machine for a device plugin: what every virtual device must guarantee its guests.

Two VMs, each with the device under test attached, submit I/O operations at random (sizes,
depths, reads and writes -- for a NIC, receives and sends --, sequential or scattered sectors,
reorder barriers for a disk) through the
guest OS's own submission path, while time advances, their memory is stamped with data that
names the VM, and the host tries to reclaim their pages. The device sees the kit's
:class:`~vframework.api.DeviceContext`, which checks every call it makes. After every step:

* **exactly once**: every request completes once (a second completion is refused on the
  spot); after a drain, none is left open;
* **barriers** (disks): a request submitted after a barrier never completes before it, and one
  submitted before it never completes after it;
* **zero copy**: a device that declares ``zero_copy`` copies no byte (``io_bytes_copied``);
* **page flipping** conserves frames and flips only pages the guest offered writable;
* **grants only**: a zero-copy device reads and writes only guest pages mapped through a grant
  to its back end, pinned; any device reaches only such pages or its own buffer pages;
* **pinned frames stay**: a pinned page keeps its frame until unpinned, whatever the host
  reclaims; frames are conserved and every VM owns the frames it maps;
* **isolation of data**: what a device writes into a VM's pages is data that VM wrote (or
  zeros), never another VM's.

Parametrize with :meth:`DeviceMachine.for_component`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from vframework.api.contract import Device
from vframework.api.params import Params
from vframework.guest.ops import IO
from vframework.guest.os import GuestOS
from vframework.hv.contexts import HostMemory
from vframework.hv.devices import DeviceHost
from vframework.hv.hypervisor import Hypervisor
from vframework.hv.vm import VM
from vframework.machine.hardware import Machine
from vframework.sim.engine import Engine
from vframework.sim.units import PAGE_SIZE
from vframework.testing.doubles import FifoScheduler, FixedPolicy, FlatMode, ScriptWorkload
from vframework.testing.memory import assert_frames_and_isolation

if TYPE_CHECKING:
    import numpy.typing as npt

    from vframework.guest.ops import IORequest

__all__ = ["DeviceMachine"]

VMS = 2
PAGES = 1024
_TAG_SHIFT = 56


def _tag(vm: VM) -> int:
    return vm.id + 1


class CheckedDeviceHost(DeviceHost):
    """The hypervisor's device context, checking what the device asks of it."""

    def __init__(self, hypervisor: Hypervisor, vm: VM, zero_copy: bool) -> None:
        super().__init__(hypervisor, vm)
        self.zero_copy = zero_copy
        self.own: set[int] = set()  # the device's buffer pages
        self.completed: list[tuple[int, bool]] = []  # (id, barrier) in completion order
        self.open_barriers: set[int] = set()
        self.pinned_at: dict[int, int] = {}  # PPN -> MPN when first pinned

    def buffer_pages(self, count: int) -> npt.NDArray[np.int64]:
        ppns = super().buffer_pages(count)
        self.own.update(int(p) for p in ppns)
        return ppns

    def _reachable(self, ppns: npt.NDArray[np.int64], what: str) -> None:
        io = self.vm.io
        granted: set[int] = set()
        if io is not None:
            live = io.grants.maps > 0
            granted = {int(p) for p in io.grants.frame[live]}
        for ppn in (int(p) for p in ppns):
            if ppn in granted:
                assert io is not None
                assert io.pins[ppn] > 0, f"{self.vm.name}: page {ppn} under DMA ({what}) is not pinned"
                continue
            assert not self.zero_copy, f"{self.vm.name}: zero-copy device {what} page {ppn}, which no grant maps"
            assert ppn in self.own, f"{self.vm.name}: device {what} page {ppn}: neither granted nor its own buffer"

    def read_pages(self, ppns: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
        self._reachable(np.asarray(ppns), "read")
        return super().read_pages(ppns)

    def write_pages(self, ppns: npt.NDArray[np.int64], tokens: npt.NDArray[np.uint64]) -> None:
        self._reachable(np.asarray(ppns), "wrote")
        tags = {int(t) >> _TAG_SHIFT for t in np.asarray(tokens, dtype=np.uint64) if int(t)}
        assert tags <= {_tag(self.vm)}, f"{self.vm.name} was given data of VM(s) {sorted(t - 1 for t in tags)}"
        super().write_pages(ppns, tokens)

    def flip(self, ppns: npt.NDArray[np.int64], tokens: npt.NDArray[np.uint64]) -> None:
        io = self.vm.io
        offered = set()
        if io is not None:
            live = (io.grants.flags & 1).astype(bool) & (io.grants.domid == self.backend_domid)
            offered = {int(p) for p in io.grants.frame[live & ((io.grants.flags & 2) == 0)]}
        for ppn in (int(p) for p in np.asarray(ppns)):
            assert ppn in offered, f"{self.vm.name}: device flipped page {ppn}, which the guest did not offer writable"
        tags = {int(t) >> _TAG_SHIFT for t in np.asarray(tokens, dtype=np.uint64) if int(t)}
        assert tags <= {_tag(self.vm)}, f"{self.vm.name} was given data of VM(s) {sorted(t - 1 for t in tags)}"
        unbacked = int(np.count_nonzero(self.vm.p2m[np.asarray(ppns)] < 0))
        frames = self.hv_frames()
        super().flip(ppns, tokens)
        # A page offered with no frame behind it gets one first; past that, one frame out per one in.
        assert self.hv_frames() == frames + unbacked, f"{self.vm.name}: page flipping changed the frames in use"

    def hv_frames(self) -> int:
        memory = self._hv.machine.memory
        return memory.frames - memory.free_frames

    def pin(self, ppns: npt.NDArray[np.int64]) -> None:
        super().pin(ppns)
        for ppn in (int(p) for p in ppns):
            self.pinned_at.setdefault(ppn, int(self.vm.p2m[ppn]))

    def unpin(self, ppns: npt.NDArray[np.int64]) -> None:
        super().unpin(ppns)
        io = self.vm.io
        assert io is not None
        for ppn in (int(p) for p in ppns):
            if io.pins[ppn] == 0:
                self.pinned_at.pop(ppn, None)

    def complete(self, request: IORequest) -> None:
        rid = request.id
        for barrier in self.open_barriers:
            assert rid <= barrier, (
                f"{self.vm.name}: request {rid} completed before barrier {barrier} submitted ahead of it"
            )
        if request.barrier:
            earlier = sorted(i for i in self.vm.io_open if i < rid)
            assert not earlier, (
                f"{self.vm.name}: barrier {rid} completed before requests {earlier} submitted ahead of it"
            )
        super().complete(request)  # refuses a second completion
        self.open_barriers.discard(rid)
        self.completed.append((rid, request.barrier))


class DeviceMachine(RuleBasedStateMachine):
    """Two VMs driving the device under test."""

    device_cls: type[Device[Params]]

    @classmethod
    def for_component(cls, device_cls: type[Device[Params]]) -> type[DeviceMachine]:
        return type(f"DeviceMachine[{device_cls.name}]", (cls,), {"device_cls": device_cls})

    def __init__(self) -> None:
        super().__init__()
        self.engine = Engine(seed=0)
        self.machine = Machine(2, 2 * VMS * PAGES * PAGE_SIZE)
        self.hv = Hypervisor(self.engine, self.machine, FifoScheduler(None, 2), FixedPolicy(None))
        self.hv.start()
        self.hosts: list[CheckedDeviceHost] = []
        self.devices: list[Device[Params]] = []
        self.stamp_count = 0
        for i in range(VMS):
            vm = VM(i, f"vm{i}", 2, PAGES)
            self.hv.attach_mode(vm, FlatMode, Params())
            vm.guest = GuestOS(vm, self.hv)
            for vcpu in vm.vcpus:  # no workload of their own: the kit submits for them
                vcpu.process = vm.guest.spawn(ScriptWorkload([], 1).run(), 1)
            host = CheckedDeviceHost(self.hv, vm, self.device_cls.zero_copy)
            device = self.device_cls(self.device_cls.kit_params(), host)
            vm.devices[device.serves] = device
            self.hv.add_vm(vm)
            self.hosts.append(host)
            self.devices.append(device)

    def _vm(self, i: int) -> VM:
        return self.hv.vms[i]

    @rule(
        vm=st.integers(0, VMS - 1),
        vcpu=st.integers(0, 1),
        pages=st.integers(1, 4),
        count=st.integers(1, 6),
        write=st.booleans(),
        barrier=st.booleans(),
        scatter=st.booleans(),
        data=st.data(),
    )
    def submit(
        self, vm: int, vcpu: int, pages: int, count: int, write: bool, barrier: bool, scatter: bool, data: Any
    ) -> None:
        """A guest submits an operation through its OS (only a vCPU with nothing outstanding)."""
        machine_vm = self._vm(vm)
        v = machine_vm.vcpus[vcpu]
        if v.io_outstanding:
            return
        barrier &= self.device_cls.serves == "disk"  # a NIC's sends and receives have no order
        device = self.devices[vm]
        sectors: tuple[int, ...] = ()
        if scatter:
            sectors = tuple(data.draw(st.lists(st.integers(0, 2**20), min_size=count, max_size=count)))
        op = IO(pages * PAGE_SIZE, write, device.serves, barrier=barrier, count=count, sectors=sectors)
        first = machine_vm.io_submitted
        assert machine_vm.guest is not None
        machine_vm.guest.submit_io(v, device, op)
        v.io_flush = None
        device.flush(v)  # the driver's code has run (the hypervisor does this at the segment's end)
        if barrier:
            self.hosts[vm].open_barriers.update(range(first, machine_vm.io_submitted))

    @rule(span=st.integers(1, 50_000_000))
    def run_for(self, span: int) -> None:
        self.engine.run(until=self.engine.now + span)

    @rule(vm=st.integers(0, VMS - 1))
    def guest_writes_its_memory(self, vm: int) -> None:
        """The guest fills its backed, unpinned pages with data that names it."""
        machine_vm = self._vm(vm)
        ppns = np.flatnonzero(machine_vm.p2m >= 0)
        if machine_vm.io is not None:
            ppns = ppns[machine_vm.io.pins[ppns] == 0]
        self.stamp_count += 1
        base = (_tag(machine_vm) << _TAG_SHIFT) | (self.stamp_count << 32)
        content = self.machine.memory.content
        content[machine_vm.p2m[ppns]] = np.uint64(base) + ppns.astype(np.uint64) + np.uint64(1)

    @rule(vm=st.integers(0, VMS - 1))
    def host_reclaims_everything(self, vm: int) -> None:
        """Memory pressure: the host takes every page back it can (pinned pages must stay)."""
        machine_vm = self._vm(vm)
        HostMemory(self.hv).reclaim(machine_vm.id, np.arange(machine_vm.memory_pages))

    @precondition(lambda self: any(vm.io_open for vm in self.hv.vms.values()))
    @rule()
    def drain(self) -> None:
        """Let every device finish: nothing may stay open."""
        for _ in range(200):
            if not any(vm.io_open for vm in self.hv.vms.values()):
                return
            self.engine.run(until=self.engine.now + 100_000_000)
        left = {vm.name: sorted(vm.io_open) for vm in self.hv.vms.values() if vm.io_open}
        raise AssertionError(f"requests never completed after 20 simulated seconds: {left}")

    @invariant()
    def zero_copy_copies_nothing(self) -> None:
        if self.device_cls.zero_copy:
            for vm in self.hv.vms.values():
                assert vm.counters["io_bytes_copied"] == 0, f"{vm.name}: a zero-copy device copied bytes"

    @invariant()
    def pinned_frames_stay(self) -> None:
        for host in self.hosts:
            vm = host.vm
            for ppn, mpn in host.pinned_at.items():
                assert int(vm.p2m[ppn]) == mpn, f"{vm.name}: pinned page {ppn} moved from frame {mpn}"

    @invariant()
    def frames_and_isolation(self) -> None:
        assert_frames_and_isolation(self.machine.memory, self.hv.vms.values())

    @invariant()
    def completed_once_and_counted(self) -> None:
        for host in self.hosts:
            vm = host.vm
            ids = [rid for rid, _ in host.completed]
            assert len(ids) == len(set(ids)), f"{vm.name}: a request completed twice"
            assert vm.counters["io_completed"] == len(ids)
            assert len(ids) + len(vm.io_open) == vm.io_submitted, f"{vm.name}: requests lost"
