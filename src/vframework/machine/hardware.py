"""The machine: physical CPUs, machine memory (a numpy frame table), devices and topology.

Machine memory is a table indexed by MPN (machine page number). Each frame has a state (free,
private to one VM, shared copy-on-write, or owned by the hypervisor), an owner VM id, a
reference count (the number of P2M mappings to it: one for a private frame, one per sharing
page for a shared one) and a *content handle*: a 64-bit value
that stands for the page's 4 KiB of bytes. Handle 0 is the zero page; any other handle
materializes deterministically (:func:`page_bytes`), so hashing, comparing, copying and
swapping see real bytes while the table costs 17 bytes per frame instead of 4 KiB.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import networkx as nx
import numpy as np

from vframework.errors import OutOfMemory
from vframework.machine.costs import CostModel
from vframework.machine.freestack import FreeStack
from vframework.sim.units import PAGE_SIZE

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = [
    "FREE",
    "HYPERVISOR",
    "HYPERVISOR_OWNER",
    "MAX_VMS",
    "NO_OWNER",
    "PRIVATE",
    "SHARED",
    "STATE_NAMES",
    "HostDevice",
    "Machine",
    "MachineMemory",
    "OutOfMemory",
    "PhysicalCPU",
    "page_bytes",
]

FREE, PRIVATE, SHARED, HYPERVISOR = 0, 1, 2, 3
STATE_NAMES = ("free", "private", "shared", "hypervisor")
NO_OWNER = -1
HYPERVISOR_OWNER = -2
#: VM ids are below this (Xen's DOMID_FIRST_RESERVED): a frame's owner is a 16-bit number.
MAX_VMS = 0x7FF0


def page_bytes(handle: int) -> bytes:
    """The 4 KiB a content handle stands for: zeros for 0, else a deterministic pattern."""
    if handle == 0:
        return bytes(PAGE_SIZE)
    gen = np.random.Generator(np.random.PCG64(int(handle) & 0xFFFF_FFFF_FFFF_FFFF))
    return gen.bytes(PAGE_SIZE)


class MachineMemory:
    """The frame table. All per-frame state is numpy; nothing is allocated per frame."""

    def __init__(self, frames: int) -> None:
        if frames <= 0:
            raise ValueError(f"machine memory needs at least one frame, got {frames}")
        self.frames = frames
        self.state = np.zeros(frames, dtype=np.uint8)
        self.owner = np.full(frames, NO_OWNER, dtype=np.int16)  # a VM id (< MAX_VMS), or a sentinel
        self.refcount = np.zeros(frames, dtype=np.int32)
        self.content = np.zeros(frames, dtype=np.uint64)
        # Frames per state, kept up to date by the methods below (the only writers of
        # ``state``), so that reading the counts costs nothing however large the host.
        self._tally = [frames, 0, 0, 0]
        #: Mappings of shared frames beyond the first of each (Linux KSM's ``pages_sharing``).
        self.sharing = 0
        # Lowest MPN first, freed frames reused first: allocation order is deterministic.
        self._free = FreeStack(frames)

    @property
    def free_frames(self) -> int:
        """Frames currently free."""
        return len(self._free)

    def allocate(self, count: int, owner: int) -> npt.NDArray[np.int64]:
        """Take ``count`` free frames for ``owner`` (a VM id, or HYPERVISOR_OWNER); zeroed."""
        if count < 0:
            raise ValueError(f"cannot allocate {count} frames")
        if not (0 <= owner < MAX_VMS or owner == HYPERVISOR_OWNER):
            raise ValueError(f"frame owner {owner} is not a VM id (0..{MAX_VMS - 1}) or the hypervisor")
        if count > len(self._free):
            raise OutOfMemory(f"asked for {count} frames, {len(self._free)} free")
        mpns = self._free.take(count)
        hv = owner == HYPERVISOR_OWNER
        self.state[mpns] = HYPERVISOR if hv else PRIVATE
        self._tally[FREE] -= count
        self._tally[HYPERVISOR if hv else PRIVATE] += count
        self.owner[mpns] = owner
        self.refcount[mpns] = 0 if hv else 1
        self.content[mpns] = 0
        return mpns

    def free(self, mpns: npt.ArrayLike) -> None:
        """Return frames to the free pool. Freeing a free or shared frame is a bug: it raises."""
        mpns = np.asarray(mpns, dtype=np.int64)
        if mpns.size == 0:
            return
        if np.unique(mpns).size != mpns.size:
            raise ValueError("the same frame was freed twice in one call")
        bad = mpns[(self.state[mpns] == FREE) | (self.state[mpns] == SHARED)]
        if bad.size:
            raise ValueError(f"frame {int(bad[0])} is {STATE_NAMES[self.state[bad[0]]]}; cannot free it")
        hypervisor = int(np.count_nonzero(self.state[mpns] == HYPERVISOR))
        self._tally[HYPERVISOR] -= hypervisor
        self._tally[PRIVATE] -= mpns.size - hypervisor
        self._tally[FREE] += mpns.size
        self.state[mpns] = FREE
        self.owner[mpns] = NO_OWNER
        self.refcount[mpns] = 0
        self.content[mpns] = 0
        self._free.give(mpns)

    def share(self, mpns: npt.NDArray[np.integer]) -> None:
        """One more mapping onto each of ``mpns`` (private or shared frames; a frame may repeat):
        a private frame becomes shared copy-on-write and belongs to no VM any more."""
        mpns = np.asarray(mpns, dtype=np.int64)
        if mpns.size == 0:
            return
        state = self.state[mpns]
        bad = mpns[(state != PRIVATE) & (state != SHARED)]
        if bad.size:
            raise ValueError(
                f"frame {int(bad[0])} is {STATE_NAMES[self.state[bad[0]]]}; only a VM's frame can be shared"
            )
        first = np.unique(mpns[state == PRIVATE])
        self.state[first] = SHARED
        self.owner[first] = NO_OWNER
        self._tally[PRIVATE] -= first.size
        self._tally[SHARED] += first.size
        np.add.at(self.refcount, mpns, self.refcount.dtype.type(1))
        self.sharing += int(mpns.size)

    def release(self, mpns: npt.NDArray[np.integer]) -> npt.NDArray[np.int64]:
        """Drop one mapping of each of ``mpns``: a private frame is freed, a shared one loses a
        reference and is freed with its last. Returns the frames freed."""
        frames: npt.NDArray[np.int64] = np.asarray(mpns, dtype=np.int64)
        shared = self.state[frames] == SHARED
        if not shared.any():
            self.free(frames)
            return frames
        held = frames[shared]
        np.subtract.at(self.refcount, held, self.refcount.dtype.type(1))
        gone = np.unique(held)
        gone = gone[self.refcount[gone] == 0]
        # A frame's last mapping was never counted in ``sharing``.
        self.sharing -= int(held.size) - int(gone.size)
        freed = np.concatenate([frames[~shared], gone])
        self._unshare(gone)
        self.free(freed)
        return freed

    def unshare(self, mpns: npt.NDArray[np.integer], owner: int) -> None:
        """Shared frames with one mapping left become private frames of ``owner`` again."""
        frames: npt.NDArray[np.int64] = np.asarray(mpns, dtype=np.int64)
        bad = frames[(self.state[frames] != SHARED) | (self.refcount[frames] != 1)]
        if bad.size:
            raise ValueError(f"frame {int(bad[0])} is not shared by exactly one mapping")
        self._unshare(frames)
        self.owner[frames] = owner

    def _unshare(self, mpns: npt.NDArray[np.int64]) -> None:
        self.state[mpns] = PRIVATE
        self._tally[SHARED] -= mpns.size
        self._tally[PRIVATE] += mpns.size

    def counts(self) -> dict[str, int]:
        """Frames in each state; they add up to :attr:`frames`. Costs O(1): the counts are
        kept as frames change state."""
        return dict(zip(STATE_NAMES, self._tally, strict=True))

    def owned_by(self, owner: int) -> int:
        """Private frames owned by one VM (or the hypervisor)."""
        return int(np.count_nonzero(self.owner == owner))

    def read(self, mpn: int) -> bytes:
        """The bytes of one frame."""
        return page_bytes(int(self.content[mpn]))

    def check(self) -> None:
        """Raise AssertionError if the table is inconsistent (used by the conformance kit)."""
        counts = self.counts()
        tally = np.bincount(self.state, minlength=len(STATE_NAMES))
        recount = {name: int(tally[i]) for i, name in enumerate(STATE_NAMES)}
        assert counts == recount, f"frame counts kept {counts}, the frame table says {recount}"
        assert sum(counts.values()) == self.frames, counts
        assert counts["free"] == len(self._free), (counts, len(self._free))
        free = self._free.free()
        assert np.all(self.state[free] == FREE), "a frame on the free stack is in use"
        assert np.all(self.owner[self.state == FREE] == NO_OWNER)
        assert np.all(self.refcount[self.state == PRIVATE] == 1)
        shared = self.refcount[self.state == SHARED]
        assert np.all(shared >= 1), "a shared frame has no mapping left"
        assert self.sharing == int(shared.sum()) - shared.size, (
            f"pages_sharing kept {self.sharing}, the frame table says {int(shared.sum()) - shared.size}"
        )
        assert np.all(self.owner[self.state == SHARED] == NO_OWNER), "a shared frame has an owner"


@dataclass
class PhysicalCPU:
    """One physical CPU (a hardware thread). Accounting fields are plain ints, in ns."""

    index: int
    socket: int = 0
    #: The real privileged registers, which only the hypervisor may change.
    gdtr: int = 0xFFC0_0000
    idtr: int = 0xFFC0_1000
    msw: int = 0x8005_003B
    idle_ns: int = 0
    hypervisor_ns: int = 0
    #: The vCPU currently dispatched here, or None (the machine layer knows no vCPU type).
    current: object = None


@dataclass
class HostDevice:
    """A physical device of the host; virtual devices (plugins) sit on top of these."""

    name: str
    kind: str
    socket: int = 0
    properties: dict[str, object] = field(default_factory=dict)


class Machine:
    """The host hardware: CPUs, memory, devices, their topology and the cost model."""

    def __init__(
        self,
        cpus: int,
        memory_bytes: int,
        costs: CostModel | None = None,
        sockets: int = 1,
        devices: list[HostDevice] | None = None,
    ) -> None:
        if cpus <= 0:
            raise ValueError(f"a machine needs at least one CPU, got {cpus}")
        if sockets <= 0 or cpus % sockets:
            raise ValueError(f"{cpus} CPUs cannot be split evenly over {sockets} sockets")
        self.costs = costs or CostModel()
        self.cpus = [PhysicalCPU(i, socket=i * sockets // cpus) for i in range(cpus)]
        self.memory = MachineMemory(memory_bytes // PAGE_SIZE)
        self.devices = list(devices or [])
        self.topology = self._build_topology(sockets)

    def _build_topology(self, sockets: int) -> nx.Graph:
        graph = nx.Graph()
        graph.add_node("host", kind="host")
        for s in range(sockets):
            graph.add_node(f"socket{s}", kind="socket")
            graph.add_edge("host", f"socket{s}")
            graph.add_node(f"mem{s}", kind="memory")
            graph.add_edge(f"socket{s}", f"mem{s}")
        for cpu in self.cpus:
            graph.add_node(f"cpu{cpu.index}", kind="cpu")
            graph.add_edge(f"socket{cpu.socket}", f"cpu{cpu.index}")
        for dev in self.devices:
            graph.add_node(dev.name, kind="device", device=dev.kind)
            graph.add_edge(f"socket{dev.socket}", dev.name)
        return graph

    def add_device(self, device: HostDevice) -> None:
        """Attach a host device (and record it in the topology)."""
        if self.topology.has_node(device.name):
            raise ValueError(f"the host already has a device or node called {device.name!r}")
        self.devices.append(device)
        self.topology.add_node(device.name, kind="device", device=device.kind)
        self.topology.add_edge(f"socket{device.socket}", device.name)
