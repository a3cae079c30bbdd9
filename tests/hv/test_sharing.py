"""Content-based sharing, the hypervisor's side: share, break, release, count, refuse."""

from __future__ import annotations

import numpy as np
import pytest

from vframework.api.params import Params
from vframework.errors import PluginError
from vframework.guest.mm import ContentLayout
from vframework.guest.os import GuestOS
from vframework.hv.devices import DeviceHost
from vframework.hv.hypervisor import Hypervisor
from vframework.hv.sharing import consumed_pages
from vframework.hv.vm import VM
from vframework.machine.hardware import FREE, PRIVATE, SHARED, Machine, MachineMemory
from vframework.sim.engine import Engine
from vframework.sim.units import PAGE_SIZE
from vframework.testing.doubles import FifoScheduler, FixedPolicy, FlatMode, ScriptWorkload

PAGES = 8


def _host(vms: int = 3) -> Hypervisor:
    hv = Hypervisor(Engine(0), Machine(1, 64 * PAGE_SIZE), FifoScheduler(None, 1), FixedPolicy(None), [])
    for i in range(vms):
        vm = VM(i, f"vm{i}", 1, PAGES, image="img")
        hv.attach_mode(vm, FlatMode, Params())
        vm.guest = GuestOS(vm, hv)
        vm.vcpus[0].process = vm.guest.spawn(ScriptWorkload([], PAGES).run(), PAGES, ContentLayout(image=4))
        hv.add_vm(vm)
        hv.back_pages(vm, np.arange(PAGES))
    return hv


def _fill(hv: Hypervisor, vm_id: int, ppn: int, token: int) -> int:
    mpn = int(hv.vms[vm_id].p2m[ppn])
    hv.machine.memory.content[mpn] = token
    return mpn


def test_sharing_maps_one_frame_and_frees_the_other() -> None:
    hv = _host()
    memory = hv.machine.memory
    target = _fill(hv, 0, 1, 0xAB)
    own = _fill(hv, 1, 2, 0xAB)
    assert hv.memory.share(1, [2], [target]) == 1
    assert hv.vms[1].p2m[2] == target
    assert memory.state[target] == SHARED
    assert memory.refcount[target] == 2
    assert memory.state[own] == FREE
    assert hv.vms[0].counters["mem_shared"] == 1
    assert hv.vms[1].counters["mem_shared"] == 1
    assert memory.sharing == 1
    memory.check()


@pytest.mark.parametrize("closed", [0, 1], ids=["target's owner", "the page's VM"])
def test_a_vm_with_share_pages_off_shares_nothing(closed: int) -> None:
    # libvirt's nosharepages, kept by the hypervisor whatever a service asks.
    hv = _host()
    memory = hv.machine.memory
    hv.vms[closed].share_pages = False
    target = _fill(hv, 0, 1, 0xAB)
    own = _fill(hv, 1, 2, 0xAB)
    assert hv.memory.share(1, [2], [target]) == 0
    assert hv.vms[1].p2m[2] == own
    assert memory.state[target] == PRIVATE
    assert memory.state[own] == PRIVATE
    memory.check()


def test_unequal_contents_are_refused_with_the_pages_named() -> None:
    hv = _host()
    target = _fill(hv, 0, 1, 0xAB)
    _fill(hv, 1, 2, 0xCD)
    with pytest.raises(ValueError, match=r"page 2 of VM 'vm1'.*different contents"):
        hv.memory.share(1, [2], [target])
    assert hv.machine.memory.state[target] == PRIVATE  # nothing changed


@pytest.mark.parametrize(
    ("ppns", "mpns", "message"),
    [
        ([PAGES], [0], "outside VM"),
        ([0, 0], [1, 1], "given twice"),
        ([0], [10**6], "outside the host"),
        ([0, 1], [2], "2 pages but 1 frames"),
    ],
)
def test_bad_share_requests_are_refused(ppns: list[int], mpns: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _host().memory.share(0, ppns, mpns)


def test_a_free_frame_cannot_be_a_target() -> None:
    hv = _host()
    free = int(np.flatnonzero(hv.machine.memory.state == FREE)[0])
    with pytest.raises(ValueError, match=f"frame {free} is not a VM's frame"):
        hv.memory.share(0, [0], [free])


def test_write_breaks_sharing_and_the_others_keep_the_old_content() -> None:
    hv = _host()
    memory = hv.machine.memory
    target = _fill(hv, 0, 3, 0x77)
    for vm_id in (1, 2):
        _fill(hv, vm_id, 3, 0x77)
        hv.memory.share(vm_id, [3], [target])
    assert memory.refcount[target] == 3
    vm = hv.vms[1]
    assert hv.break_sharing(vm, np.array([3])) == 1  # a private copy
    assert vm.p2m[3] != target
    assert memory.content[vm.p2m[3]] == 0x77
    assert memory.refcount[target] == 2
    assert vm.counters["mem_shared"] == 0
    assert vm.counters["share_breaks"] == 1
    # The last two: one copies, the last keeps the frame as its own private frame.
    hv.break_sharing(hv.vms[2], np.array([3]))
    assert hv.break_sharing(hv.vms[0], np.array([3])) == 0
    assert memory.state[target] == PRIVATE
    assert memory.owner[target] == 0
    assert memory.sharing == 0
    memory.check()


def test_stopping_a_vm_drops_its_mappings_of_shared_frames() -> None:
    hv = _host()
    memory = hv.machine.memory
    target = _fill(hv, 0, 0, 0x5)
    _fill(hv, 1, 0, 0x5)
    hv.memory.share(1, [0], [target])
    hv.remove_vm(hv.vms[0])
    assert memory.state[target] == SHARED
    assert memory.refcount[target] == 1
    hv.remove_vm(hv.vms[1])
    assert memory.state[target] == FREE
    memory.check()


def test_consumed_counts_one_nth_of_each_shared_frame() -> None:
    hv = _host()
    target = _fill(hv, 0, 5, 0x9)
    for vm_id in (1, 2):
        _fill(hv, vm_id, 5, 0x9)
        hv.memory.share(vm_id, [5], [target])
    for vm in hv.vms.values():
        # PAGES granted, one of them a third of a frame: PAGES - 1 + 1/3, rounded down.
        assert consumed_pages(hv, vm) == PAGES - 1


def test_pinning_a_shared_page_for_io_gives_it_a_private_frame_first() -> None:
    # As Linux's pin for DMA breaks copy-on-write: the device's write must reach this VM only,
    # and the page must not move later, while the I/O is in flight.
    hv = _host()
    memory = hv.machine.memory
    target = _fill(hv, 0, 6, 0x66)
    _fill(hv, 1, 6, 0x66)
    hv.memory.share(1, [6], [target])
    vm = hv.vms[1]
    DeviceHost(hv, vm).pin(np.array([6]))
    mpn = int(vm.p2m[6])
    assert mpn != target
    assert (memory.state[mpn], memory.owner[mpn], memory.content[mpn]) == (PRIVATE, 1, 0x66)
    assert vm.counters["mem_shared"] == 0
    assert hv.vms[0].p2m[6] == target, "the other sharer keeps the frame"
    # Pinned, the page is neither shared again nor paged out.
    assert hv.memory.share(1, [6], [target]) == 0
    assert hv.memory.swap_out(1, [6], 1_000) == 0
    assert int(vm.p2m[6]) == mpn
    memory.check()


def test_the_guest_never_swaps_out_a_page_under_io() -> None:
    # Linux cannot unmap a page pinned for DMA: swapping, or a balloon inflating, passes it by.
    hv = Hypervisor(Engine(0), Machine(1, 64 * PAGE_SIZE), FifoScheduler(None, 1), FixedPolicy(None), [])
    vm = VM(0, "vm0", 1, 8, swap_pages=8)
    hv.attach_mode(vm, FlatMode, Params())
    guest = vm.guest = GuestOS(vm, hv)
    proc = vm.vcpus[0].process = guest.spawn(ScriptWorkload([], 8).run(), 8, ContentLayout())
    hv.add_vm(vm)
    guest.touch(vm.vcpus[0], proc, np.arange(4), write=True)
    ppn = int(proc.page_table[2])
    DeviceHost(hv, vm).pin(np.array([ppn]))
    assert guest.balloon_inflate(vm.vcpus[0], 8).size == 7, "every page but the pinned one"
    assert proc.page_table[2] == ppn
    assert vm.p2m[ppn] >= 0


def test_swap_reclaim_and_balloon_keep_a_vms_mem_min() -> None:
    hv = _host()
    for vm_id, take in ((0, hv.memory.reclaim), (1, lambda v, p: hv.memory.swap_out(v, p, 1_000))):
        hv.vms[vm_id].mem_min = 5
        assert take(vm_id, np.arange(PAGES)) == PAGES - 5
        assert take(vm_id, np.arange(PAGES)) == 0
        assert hv.vms[vm_id].counters["mem_granted"] == 5
    vm = hv.vms[2]
    vm.mem_min = 5
    assert hv.memory.balloon(2, PAGES) == PAGES - 5, "the balloon leaves the guarantee usable"
    assert hv.memory.balloon(2, 1) == 0
    assert hv.memory.balloon(2, -1) == 1, "deflating is never held back"


@pytest.mark.parametrize("bounds", [(3, 2), (-1, 4), (0, PAGES + 1), (0.5, 4), 7, (1, 2, 3)])
def test_a_policy_giving_nonsense_bounds_is_named(bounds: object) -> None:
    class Odd(FixedPolicy):
        name = "odd"

        def bounds(self, vm: object) -> object:  # type: ignore[override]
            return bounds

    hv = Hypervisor(Engine(0), Machine(1, 64 * PAGE_SIZE), FifoScheduler(None, 1), Odd(None), [])
    vm = VM(0, "vm0", 1, PAGES)
    hv.attach_mode(vm, FlatMode, Params())
    with pytest.raises(PluginError, match=r"memory policy 'odd' gave VM 'vm0' the bounds"):
        hv.add_vm(vm)


def test_para_virtual_page_tables_are_pinned() -> None:
    hv = _host()
    vm = hv.vms[1]
    vm.pv_tables[4] = np.full(4, -1, dtype=np.int64)
    target = _fill(hv, 0, 4, int(hv.machine.memory.content[vm.p2m[4]]))
    assert hv.memory.share(1, [4], [target]) == 0
    assert vm.p2m[4] != target


def test_memory_share_and_release_keep_the_counts() -> None:
    memory = MachineMemory(8)
    a = memory.allocate(2, 0)
    memory.share(np.array([a[0], a[0], a[0]]))
    assert memory.refcount[a[0]] == 4
    assert memory.sharing == 3
    memory.check()
    assert memory.release(np.array([a[0], a[0], a[1]])).tolist() == [a[1]]
    assert memory.refcount[a[0]] == 2
    assert memory.sharing == 1
    memory.check()
    with pytest.raises(ValueError, match="exactly one mapping"):
        memory.unshare(np.array([a[0]]), 0)


def test_image_pages_are_equal_across_vms_and_private_pages_are_not() -> None:
    layout = ContentLayout(image=2, zero=1, private=2)
    vpns = np.arange(6)
    one, two = layout.fill(vpns, 11, 100), layout.fill(vpns, 11, 200)
    assert one[:2].tolist() == two[:2].tolist()
    assert 0 not in one[:2].tolist()
    assert one[2] == two[2] == 0
    assert one[5] == 0
    assert not set(one[3:5].tolist()) & set(two[3:5].tolist())
    with pytest.raises(ValueError, match="-1 zero pages"):
        ContentLayout(zero=-1)


def test_accessed_bits_are_set_by_references_and_cleared_by_reading() -> None:
    hv = _host(1)
    vm = hv.vms[0]
    assert vm.guest is not None
    proc = vm.vcpus[0].process
    assert proc is not None
    assert not hv.memory.referenced(0).any()  # tracking starts here
    vm.guest.touch(vm.vcpus[0], proc, np.array([1, 3]), write=False)
    seen = hv.memory.referenced(0)
    assert np.flatnonzero(seen).tolist() == sorted(int(p) for p in proc.page_table[[1, 3]])
    assert not hv.memory.referenced(0).any()  # reading cleared them
