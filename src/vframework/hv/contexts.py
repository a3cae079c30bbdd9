"""The contexts the hypervisor hands to memory policies, memory services and devices: what
each may see of the host and do to it, and nothing more."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from vframework.hv.sharing import pinned_frames, share_pages
from vframework.hv.swap import swap_out

if TYPE_CHECKING:
    import numpy.typing as npt

    from vframework.hv.hypervisor import Hypervisor
    from vframework.hv.vm import VM

__all__ = ["SLOW_DRIVER", "HostMemory"]

#: A slow balloon driver moves this many times fewer pages than asked.
SLOW_DRIVER = 10


class HostMemory:
    """A :class:`~vframework.api.MemoryContext` over one hypervisor."""

    def __init__(self, hypervisor: Hypervisor) -> None:
        self._hv = hypervisor

    @property
    def free_frames(self) -> int:
        """Machine frames free now."""
        return self._hv.machine.memory.free_frames

    @property
    def vms(self) -> list[VM]:
        """The running VMs, in creation order."""
        return list(self._hv.vms.values())

    def _vm(self, vm_id: int) -> VM:
        try:
            return self._hv.vms[vm_id]
        except KeyError:
            raise KeyError(f"no running VM with id {vm_id}") from None

    def p2m(self, vm_id: int) -> npt.NDArray[np.int32]:
        """A read-only copy of the VM's P2M (PPN -> MPN, -1 where unbacked)."""
        view = self._vm(vm_id).p2m.copy()
        view.flags.writeable = False
        return view

    def grant(self, vm_id: int, ppns: npt.ArrayLike) -> int:
        """Back these guest-physical pages with machine frames; returns how many were backed."""
        return self._hv.back_pages(self._vm(vm_id), np.asarray(ppns, dtype=np.int64), hidden=False)

    def reclaim(self, vm_id: int, ppns: npt.ArrayLike) -> int:
        """Take the machine frames behind these pages back; returns how many. Pages under I/O
        (pinned) are skipped, and so are those beyond what would take the VM below its
        ``mem_min``."""
        vm = self._vm(vm_id)
        pages = np.unique(np.asarray(ppns, dtype=np.int64))
        if pages.size and (int(pages[0]) < 0 or int(pages[-1]) >= vm.memory_pages):
            raise ValueError(f"reclaim: a page is outside VM {vm.name!r}'s {vm.memory_pages} pages")
        pages = pages[vm.p2m[pages] >= 0]
        if vm.io is not None and pages.size:
            pages = pages[vm.io.pins[pages] == 0]
        return self._hv.release_pages(vm, pages[: vm.above_min])

    def set_target(self, vm_id: int, pages: int) -> None:
        """Set the VM's memory target in pages."""
        self._vm(vm_id).counters["mem_target"] = int(pages)

    @property
    def total_frames(self) -> int:
        """Machine frames of the host, and those its VMs may use (not the hypervisor's own)."""
        memory = self._hv.machine.memory
        return memory.frames - memory.counts()["hypervisor"]

    def watch(self, vm_id: int, ppns: npt.ArrayLike) -> None:
        """Start sampling these pages of the VM for activity: their mappings are invalidated, so
        the next reference to each is seen (a hidden fault). Replaces the previous sample."""
        vm = self._vm(vm_id)
        self._hv.settle(vm)
        vm.watch = np.zeros(vm.memory_pages, dtype=bool)
        vm.touched = np.zeros(vm.memory_pages, dtype=bool)
        vm.watch[np.asarray(ppns, dtype=np.int64)] = True

    def touched(self, vm_id: int, ppns: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Which of these sampled pages the VM referenced since :meth:`watch`."""
        vm = self._vm(vm_id)
        if vm.touched is None:
            return np.zeros(np.asarray(ppns).size, dtype=bool)
        seen: npt.NDArray[np.bool_] = vm.touched[np.asarray(ppns, dtype=np.int64)]
        return seen

    def hold(self, vm_id: int, held: bool) -> None:
        """Block the VM's vCPUs, or let them run again."""
        self._hv.hold(self._vm(vm_id), held)

    def referenced(self, vm_id: int) -> npt.NDArray[np.bool_]:
        """The VM's per-page accessed bits since the previous call, which clears them."""
        vm = self._vm(vm_id)
        self._hv.settle(vm)
        if vm.accessed is None:
            vm.accessed = np.zeros(vm.memory_pages, dtype=bool)
            return vm.accessed.copy()
        bits = vm.accessed.copy()
        vm.accessed[:] = False  # in place: the array is the one the VM's references set
        return bits

    def balloon(self, vm_id: int, pages: int) -> int:
        """Ask the VM's balloon driver to inflate by ``pages`` (negative: deflate); returns how
        many pages it moved. Inflating takes guest pages (free ones first, then pages the guest
        swaps out) and frees their frames; deflating gives pages back to the guest, which gets
        frames again when it uses them. A VM without a driver moves nothing; a slow one a
        tenth, rounded up."""
        vm = self._vm(vm_id)
        guest = vm.guest
        if guest is None or vm.balloon_driver == "off" or pages == 0:
            return 0
        if vm.balloon_driver == "slow":
            step = -(-abs(pages) // SLOW_DRIVER)  # a tenth, rounded up
            pages = step if pages > 0 else -step
        if pages > 0:
            # The balloon never holds the VM's guarantee: its mem_min stays usable.
            pages = min(pages, max(vm.memory_pages - vm.mem_min - vm.counters["mem_balloon"], 0))
            if pages == 0:
                return 0
        self._hv.settle(vm)
        if pages < 0:
            return int(guest.balloon_deflate(-pages).size)
        ppns = guest.balloon_inflate(vm.vcpus[0], pages)
        self._hv.release_pages(vm, ppns)
        return int(ppns.size)

    def swap_out(self, vm_id: int, ppns: npt.ArrayLike, read_ns: int) -> int:
        """Page these pages of the VM out to the host's swap; returns how many (see
        :func:`vframework.hv.swap.swap_out`)."""
        return swap_out(self._hv, self._vm(vm_id), ppns, read_ns)

    @property
    def counters(self) -> dict[str, int]:
        """The host's counters (a sharing service reports ``pages_unshared``... here)."""
        return self._hv.counters

    def rng(self, name: str) -> np.random.Generator:
        """The run's random stream ``name`` (the same for the same seed)."""
        return self._hv.engine.rng(f"memory:{name}")

    def backing(self, vm_id: int, ppns: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """The machine frame behind each of the VM's pages (-1 where unbacked)."""
        vm = self._vm(vm_id)
        ppns = np.asarray(ppns, dtype=np.int64)
        if ppns.size and (int(ppns.min()) < 0 or int(ppns.max()) >= vm.memory_pages):
            raise ValueError(f"a page is outside VM {vm.name!r}'s {vm.memory_pages} pages")
        mpns: npt.NDArray[np.int64] = vm.p2m[ppns].astype(np.int64)
        return mpns

    def content(self, mpns: npt.ArrayLike) -> npt.NDArray[np.uint64]:
        """The content token of each frame: what a hash or a full comparison sees."""
        mpns = self._frames(mpns)
        memory = self._hv.machine.memory
        # A VM running ahead has not written its planned stores yet: settle it first.
        for owner in np.unique(memory.owner[mpns]).tolist():
            if owner in self._hv.vms:
                self._hv.settle(self._hv.vms[owner])
        return memory.content[mpns]

    def frame_state(self, mpns: npt.ArrayLike) -> npt.NDArray[np.uint8]:
        """Each frame's state (:data:`~vframework.machine.hardware.FREE`, ``PRIVATE``, ``SHARED``...)."""
        return self._hv.machine.memory.state[self._frames(mpns)]

    def refcount(self, mpns: npt.ArrayLike) -> npt.NDArray[np.int32]:
        """Each frame's mappings (1 for a private frame, n for a frame shared n ways)."""
        return self._hv.machine.memory.refcount[self._frames(mpns)]

    def pinned_frames(self, vm_id: int) -> npt.NDArray[np.int64]:
        """The VM's frames that must stay where they are (see :func:`vframework.hv.sharing.pinned_frames`)."""
        return pinned_frames(self._vm(vm_id))

    def share(self, vm_id: int, ppns: npt.ArrayLike, mpns: npt.ArrayLike) -> int:
        """Map the VM's pages onto frames of equal content, copy-on-write; returns how many
        (see :func:`vframework.hv.sharing.share_pages`)."""
        return share_pages(self._hv, self._vm(vm_id), ppns, mpns)

    def _frames(self, mpns: npt.ArrayLike) -> npt.NDArray[np.int64]:
        mpns = np.asarray(mpns, dtype=np.int64)
        frames = self._hv.machine.memory.frames
        if mpns.size and (int(mpns.min()) < 0 or int(mpns.max()) >= frames):
            raise ValueError(f"a frame is outside the host's {frames} frames")
        return mpns
