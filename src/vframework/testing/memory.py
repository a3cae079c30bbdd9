"""State machine for machine memory: every frame in exactly one state, counts add up."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from vframework.machine.hardware import FREE, HYPERVISOR_OWNER, SHARED, STATE_NAMES, MachineMemory, OutOfMemory

if TYPE_CHECKING:
    from collections.abc import Iterable

    from vframework.hv.vm import VM

__all__ = ["FrameTableMachine", "assert_frames_and_isolation", "assert_owns_its_frames"]


def assert_owns_its_frames(memory: MachineMemory, vm: VM, who: str) -> None:
    """Isolation: every machine frame the VM's P2M names is owned by the VM, or shared
    copy-on-write (and so never written in place)."""
    # A component's garbage in the P2M is reported, not indexed with.
    garbage = np.flatnonzero((vm.p2m < -1) | (vm.p2m >= memory.frames))
    assert not garbage.size, (
        f"{who}'s P2M maps PPN {int(garbage[0])} to {int(vm.p2m[garbage[0]])}, which is no machine frame "
        f"(the host has {memory.frames}; -1 means unbacked)"
    )
    mpns = vm.p2m[vm.p2m >= 0]
    foreign = mpns[(memory.owner[mpns] != vm.id) & (memory.state[mpns] != SHARED)]
    if foreign.size:
        ppn = int(np.flatnonzero(vm.p2m == foreign[0])[0])
        raise AssertionError(
            f"{who} maps PPN {ppn} to frame {int(foreign[0])}, which is {STATE_NAMES[memory.state[foreign[0]]]} "
            f"and owned by {int(memory.owner[foreign[0]])}, not by {vm.name} (VM {vm.id})"
        )


def assert_frames_and_isolation(memory: MachineMemory, vms: Iterable[VM]) -> None:
    """Frame conservation (the table's own check), and isolation for every VM."""
    memory.check()
    for vm in vms:
        assert_owns_its_frames(memory, vm, str(vm))


class FrameTableMachine(RuleBasedStateMachine):
    """Allocations and frees, checked against a plain model of who owns which frame."""

    memory_cls: type[MachineMemory] = MachineMemory
    frames = 64

    @classmethod
    def for_component(cls, memory_cls: type[MachineMemory]) -> type[FrameTableMachine]:
        return type(f"{cls.__name__}[{memory_cls.__name__}]", (cls,), {"memory_cls": memory_cls})

    def __init__(self) -> None:
        super().__init__()
        self.memory = self.memory_cls(self.frames)
        self.model: dict[int, int] = {}  # mpn -> owner

    @rule(count=st.integers(0, 20), owner=st.sampled_from([0, 1, 2, HYPERVISOR_OWNER]))
    def allocate(self, count: int, owner: int) -> None:
        free = self.frames - len(self.model)
        if count > free:
            try:
                self.memory.allocate(count, owner)
            except OutOfMemory:
                return
            raise AssertionError("allocating more frames than are free succeeded")
        mpns = self.memory.allocate(count, owner)
        assert len(set(mpns.tolist())) == count
        for mpn in mpns.tolist():
            assert mpn not in self.model, f"frame {mpn} was handed out twice"
            self.model[mpn] = owner

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def free(self, data: st.DataObject) -> None:
        chosen = data.draw(st.lists(st.sampled_from(sorted(self.model)), unique=True, max_size=10))
        self.memory.free(np.array(chosen, dtype=np.int64))
        for mpn in chosen:
            del self.model[mpn]

    @rule(mpn=st.integers(0, 63))
    def free_a_free_frame_is_refused(self, mpn: int) -> None:
        if mpn in self.model:
            return
        try:
            self.memory.free(np.array([mpn]))
        except ValueError:
            return
        raise AssertionError(f"freeing free frame {mpn} was accepted")

    @invariant()
    def conservation(self) -> None:
        counts = self.memory.counts()
        assert set(counts) == set(STATE_NAMES)
        assert sum(counts.values()) == self.frames, counts
        assert counts["free"] == self.frames - len(self.model) == self.memory.free_frames
        self.memory.check()

    @invariant()
    def owners_match(self) -> None:
        owner = self.memory.owner
        for mpn, who in self.model.items():
            assert owner[mpn] == who
            assert self.memory.state[mpn] != FREE
