"""The guest kernel's process calls: fork, exit, exec, a context switch, mmap and munmap.

Each is what lmbench's ``lat_proc`` and ``lat_mmap`` drive and what a fork-heavy guest spends
its time in: page-table writes the mode sees (:meth:`Monitor.pt_write`), the kernel's own code
run on the vCPU, and the address spaces the hypervisor pins or shadows coming and going. They
are a mixin of :class:`vframework.guest.os.GuestOS`, apart so that each module stays small.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from vframework.guest.mm import PTE_COW, PTE_WRITABLE, GuestProcess

if TYPE_CHECKING:
    from collections.abc import Generator

    import numpy.typing as npt

    from vframework.guest.kernel import GuestKernel
    from vframework.guest.mm import ContentLayout, GuestMemory
    from vframework.guest.ops import MapUnmap, Operation
    from vframework.guest.platform import GuestVCPU, GuestVM, Platform
    from vframework.machine.costs import CostModel

__all__ = ["ProcessCalls"]


class ProcessCalls:
    """fork, exit, execve, switch_to, mmap/munmap and the lmbench loops built from them."""

    vm: GuestVM
    hypervisor: Platform
    costs: CostModel
    memory: GuestMemory
    kernel: GuestKernel
    processes: list[GuestProcess]

    if TYPE_CHECKING:

        def spawn(
            self, ops: Generator[Operation, None, None] | None, pages: int, layout: ContentLayout | None = None
        ) -> GuestProcess: ...

        def touch(
            self, vcpu: GuestVCPU, proc: GuestProcess, vpns: npt.NDArray[np.int64], write: bool
        ) -> tuple[int, int]: ...

    def fork(self, vcpu: GuestVCPU, parent: GuestProcess) -> tuple[GuestProcess, int]:
        """fork(): the child shares the parent's pages copy-on-write. Returns (child, cycles)."""
        monitor = self.vm.monitor
        assert monitor is not None
        self.vm.counters["forks"] += 1
        self.vm.counters["syscalls"] += 1
        cycles = self.hypervisor.deliver(vcpu, "syscall", 1) + monitor.execute(vcpu, self.kernel.fork)
        child = self.spawn(None, parent.page_table.size, parent.layout)
        present = parent.mapped()
        child.page_table[present] = parent.page_table[present]
        shared = present[(parent.pte_flags[present] & PTE_WRITABLE) != 0]
        parent.pte_flags[shared] = (parent.pte_flags[shared] & ~np.uint8(PTE_WRITABLE)) | PTE_COW
        child.pte_flags[present] = parent.pte_flags[present]
        # A scalar of the array's own type keeps ufunc.at on numpy's fast path (40x a Python 1).
        np.add.at(self.memory.sharers, parent.page_table[present].astype(np.int64), self.memory.sharers.dtype.type(1))
        if parent.swap_slot is not None:
            # Swapped-out pages are shared too: the child points at the same swap slots.
            out = np.flatnonzero(parent.swap_slot >= 0)
            child.swap_slot = parent.swap_slot.copy()
            child.pte_flags[out] = parent.pte_flags[out]
            self.memory.share_slots(parent.swap_slot[out])
        # Writing the child's table and write-protecting the parent's: page-table writes, and the
        # kernel's own bookkeeping for every page the child now maps.
        cycles += monitor.pt_write(vcpu, child, present) + monitor.pt_write(vcpu, parent, shared)
        cycles += int(present.size) * self.costs.page_reference
        return child, cycles

    def exit(self, vcpu: GuestVCPU, proc: GuestProcess) -> int:
        """exit(): unmap everything, free pages no one else maps, drop the address space."""
        monitor = self.vm.monitor
        assert monitor is not None
        cycles = self.hypervisor.deliver(vcpu, "syscall", 1) + monitor.execute(vcpu, self.kernel.exit)
        return cycles + self._release(vcpu, proc)

    def _release(self, vcpu: GuestVCPU, proc: GuestProcess) -> int:
        """Unmap all of ``proc``, free the pages no one else maps and drop its address space
        (what exit and exec do to the old program). Returns cycles."""
        monitor = self.vm.monitor
        assert monitor is not None
        cycles = self._unmap(vcpu, proc, proc.mapped())
        if proc.swap_slot is not None:
            self.memory.free_slots(proc.swap_slot[proc.swap_slot >= 0])
        cycles += monitor.address_space_gone(proc)
        self.processes.remove(proc)
        return cycles

    def _unmap(self, vcpu: GuestVCPU, proc: GuestProcess, present: npt.NDArray[np.int64]) -> int:
        """Clear the mapped pages ``present`` of ``proc`` and free those no one else maps; the
        kernel's work per page is charged. Returns cycles."""
        monitor = self.vm.monitor
        assert monitor is not None
        ppns = proc.page_table[present].astype(np.int64)
        mem = self.memory
        sole = mem.sharers[ppns] == 0
        freed = np.unique(ppns[sole])
        np.subtract.at(mem.sharers, ppns[~sole], mem.sharers.dtype.type(1))
        proc.page_table[present] = -1
        proc.pte_flags[present] = 0
        cycles = monitor.pt_write(vcpu, proc, present) + int(present.size) * self.costs.page_reference
        mem.give_back(freed)
        return cycles

    def map_unmap(self, vcpu: GuestVCPU, proc: GuestProcess, op: MapUnmap) -> tuple[int, int]:
        """lmbench's mmap iteration: mmap, write ``op.offsets``, munmap. Returns (cycles, io_ns)."""
        monitor = self.vm.monitor
        assert monitor is not None
        end = op.start + op.pages
        if end > proc.page_table.size:
            raise ValueError(
                f"VM {self.vm.name!r}: a mapping of pages {op.start}..{end - 1} does not fit the process's "
                f"{proc.page_table.size}-page address space"
            )
        window = np.arange(op.start, end, dtype=np.int64)
        if (proc.page_table[window] >= 0).any() or (proc.swap_slot is not None and (proc.swap_slot[window] >= 0).any()):
            raise ValueError(f"VM {self.vm.name!r}: a mapping of pages {op.start}..{end - 1} overlaps pages in use")
        self.vm.counters["syscalls"] += 2
        cycles = self.hypervisor.deliver(vcpu, "syscall", 1) + monitor.execute(vcpu, self.kernel.syscall)
        io_ns = 0
        if op.offsets.size:
            touched, io_ns = self.touch(vcpu, proc, op.start + op.offsets, write=True)
            cycles += touched
        cycles += self.hypervisor.deliver(vcpu, "syscall", 1) + monitor.execute(vcpu, self.kernel.syscall)
        if proc.swap_slot is not None:
            out = window[proc.swap_slot[window] >= 0]
            self.memory.free_slots(proc.swap_slot[out])
            proc.swap_slot[out] = -1
            proc.pte_flags[out] = 0
        cycles += self._unmap(vcpu, proc, window[proc.page_table[window] >= 0])
        # Linux 2.4's flush_tlb_range on x86 reloads %cr3: the whole untagged TLB goes.
        tlb = self.hypervisor.tlb_for(vcpu)
        tlb.flush()
        self.vm.counters["tlb_flushes"] += 1
        return cycles, io_ns

    def switch_to(self, vcpu: GuestVCPU, proc: GuestProcess) -> int:
        """Context switch to ``proc`` on this vCPU: the kernel's switch path (a page-table
        switch, which flushes an untagged TLB)."""
        monitor = self.vm.monitor
        assert monitor is not None
        vcpu.process = proc
        tlb = self.hypervisor.tlb_for(vcpu)
        if not tlb.tagged:
            tlb.flush()
            self.vm.counters["tlb_flushes"] += 1
        return monitor.execute(vcpu, self.kernel.context_switch)

    def fork_wait(self, vcpu: GuestVCPU, parent: GuestProcess, touch: int) -> tuple[int, int]:
        """One forkwait iteration: fork; the child writes ``touch`` of the parent's pages
        (copy-on-write faults) and exits; the parent waits. Returns (cycles, io_ns)."""
        child, cycles = self.fork(vcpu, parent)
        cycles += self.switch_to(vcpu, child)
        mapped = child.mapped()
        io_ns = 0
        if touch and mapped.size:
            c, io_ns = self.touch(vcpu, child, mapped[: min(touch, mapped.size)], write=True)
            cycles += c
        cycles += self.exit(vcpu, child)
        cycles += self.switch_to(vcpu, parent)
        return cycles, io_ns

    def execve(self, vcpu: GuestVCPU, proc: GuestProcess, pages: int) -> tuple[GuestProcess, int, int]:
        """execve(): ``proc``'s program is replaced by one that touches ``pages`` pages before
        it exits (each first touch a page fault). Returns (the process now running on the vCPU,
        cycles, io_ns)."""
        monitor = self.vm.monitor
        assert monitor is not None
        self.vm.counters["syscalls"] += 1
        cycles = self.hypervisor.deliver(vcpu, "syscall", 1)
        new = self.spawn(None, pages)
        cycles += self._release(vcpu, proc)
        # The new mm is activated in place: a page-table base load, as a context switch's.
        vcpu.process = new
        tlb = self.hypervisor.tlb_for(vcpu)
        if not tlb.tagged:
            tlb.flush()
            self.vm.counters["tlb_flushes"] += 1
        cycles += monitor.execute(vcpu, self.kernel.execve) + self.costs.exec_load
        touched, io_ns = self.touch(vcpu, new, np.arange(pages, dtype=np.int64), write=True)
        return new, cycles + touched, io_ns

    def fork_exec(
        self, vcpu: GuestVCPU, parent: GuestProcess, programs: tuple[int, ...], shell: bool
    ) -> tuple[int, int]:
        """lmbench's exec (and, with ``shell``, shell) iteration: fork; the child execs each
        program in turn and exits; the parent waits. Returns (cycles, io_ns)."""
        child, cycles = self.fork(vcpu, parent)
        cycles += self.switch_to(vcpu, child)
        io_ns = 0
        proc = child
        for i, pages in enumerate(programs):
            proc, c, io = self.execve(vcpu, proc, pages)
            cycles += c
            io_ns += io
            if shell and i == 0:
                cycles += self.costs.shell_start
        cycles += self.exit(vcpu, proc)
        cycles += self.switch_to(vcpu, parent)
        return cycles, io_ns
