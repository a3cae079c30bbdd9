"""The guest's memory manager on its own: pages shared since a fork can be swapped out."""

from __future__ import annotations

import numpy as np

from vframework.guest.os import GuestOS
from vframework.hv.hypervisor import Hypervisor
from vframework.hv.vm import VM
from vframework.machine.hardware import Machine
from vframework.sim.engine import Engine
from vframework.sim.units import PAGE_SIZE
from vframework.testing.doubles import FifoScheduler, FixedPolicy, Native


def guest(memory_pages: int, swap_pages: int) -> tuple[GuestOS, object]:
    hv = Hypervisor(Engine(seed=0), Machine(1, 64 * PAGE_SIZE), FifoScheduler(None, 1), FixedPolicy(None))
    vm = VM(0, "vm0", 1, memory_pages, swap_pages=swap_pages)
    hv.attach_mode(vm, Native, Native.params_model())
    vm.guest = GuestOS(vm, hv)
    hv.add_vm(vm)
    return vm.guest, vm.vcpus[0]


def test_pages_shared_since_fork_are_swapped_and_read_back_intact() -> None:
    os_, vcpu = guest(memory_pages=8, swap_pages=16)
    parent = os_.spawn(None, 12)
    vcpu.process = parent
    os_.touch(vcpu, parent, np.arange(6, dtype=np.int64), write=True)
    before = os_.visible_memory(parent)
    child, _ = os_.fork(vcpu, parent)
    assert int(os_.memory.sharers.sum()) == 6  # all six pages shared copy-on-write
    # Six new pages with two free: four must be swapped out, and all mapped pages are shared.
    os_.touch(vcpu, parent, np.arange(6, 12, dtype=np.int64), write=True)
    assert os_.vm.counters["swap_outs"] >= 4
    assert child.swap_slot is not None
    assert (child.swap_slot >= 0).sum() >= 4
    # The child still reads what the parent had written before the fork, swapped or not.
    assert {v: c for v, c in os_.visible_memory(child).items() if v < 6} == before
    # Reading back swaps the child's pages in, intact, as its own copies.
    os_.switch_to(vcpu, child)
    os_.touch(vcpu, child, np.arange(6, dtype=np.int64), write=False)
    assert os_.visible_memory(child) == before
    assert {v: c for v, c in os_.visible_memory(parent).items() if v < 6} == before


def test_pages_the_hypervisor_took_are_backed_before_the_guest_copies_or_swaps_them() -> None:
    """A copy-on-write copy or a swap-out reads the page's frame. If the hypervisor took that
    frame back, the read is a hidden fault that backs the page again (with a zeroed frame),
    never a read through an unbacked P2M entry (index -1: the last frame, another owner's)."""
    os_, vcpu = guest(memory_pages=8, swap_pages=16)
    hv, vm = os_.hypervisor, os_.vm
    foreign = 0xDEAD_BEEF
    hv.machine.memory.content[-1] = foreign  # the last machine frame: not this VM's
    parent = os_.spawn(None, 12)
    vcpu.process = parent
    os_.touch(vcpu, parent, np.arange(6, dtype=np.int64), write=True)
    child, _ = os_.fork(vcpu, parent)
    hv.release_pages(vm, parent.page_table[np.arange(6)].astype(np.int64))
    os_.switch_to(vcpu, child)
    os_.touch(vcpu, child, np.array([0], dtype=np.int64), write=True)  # a COW copy of a taken page
    os_.switch_to(vcpu, parent)
    os_.touch(vcpu, parent, np.arange(6, 12, dtype=np.int64), write=True)  # swaps taken pages out
    assert os_.vm.counters["swap_outs"] > 0
    for proc in os_.processes:
        assert foreign not in os_.visible_memory(proc).values()
    assert foreign not in os_.memory.swap_content.tolist()
