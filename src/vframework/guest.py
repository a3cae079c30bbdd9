"""The reference guest OS model: processes, page tables, a frame allocator and fault handling.

The guest believes its physical memory is PPNs ``0..memory_pages-1``. Each process has a page
table (VPN -> PPN, with present / writable / user / accessed / dirty bits) held in numpy arrays.
The guest's kernel work is costed by the VM's mode, so the same guest runs under every mode.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np

from .isa import IF_FLAG
from .kernel import GuestKernel
from .ops import IO, Compute, Fault, KernelCall, Operation, Sleep, Syscall, Touch

if TYPE_CHECKING:
    from .hypervisor import Hypervisor
    from .vm import VCPU, VM

__all__ = ["GuestOS", "GuestProcess", "GuestOutOfMemory", "HALT", "IO_WAIT", "PTE_PRESENT", "PTE_WRITABLE",
           "PTE_USER", "PTE_ACCESSED", "PTE_DIRTY"]

PTE_PRESENT, PTE_WRITABLE, PTE_USER, PTE_ACCESSED, PTE_DIRTY = 1, 2, 4, 8, 16
#: Returned as the "then" of :meth:`GuestOS.step` when the process has ended.
HALT = -1
#: Returned as the "then" of :meth:`GuestOS.step` when the process waits for its I/O
#: (``vcpu.io_ns`` holds the device time; completion arrives as a device interrupt).
IO_WAIT = -2


class GuestOutOfMemory(RuntimeError):
    """The guest has no free guest-physical page for a fault (it has no swap yet)."""


class GuestProcess:
    """A guest process: its page table and the workload generator that drives it."""

    __slots__ = ("pid", "page_table", "pte_flags", "ops")

    def __init__(self, pid: int, pages: int, ops: Generator[Operation, Any, None]) -> None:
        self.pid = pid
        #: VPN -> PPN (-1: not mapped).
        self.page_table = np.full(pages, -1, dtype=np.int64)
        self.pte_flags = np.zeros(pages, dtype=np.uint8)
        self.ops = ops


class GuestOS:
    """One VM's operating system."""

    def __init__(self, vm: VM, hypervisor: Hypervisor) -> None:
        self.vm = vm
        self.hypervisor = hypervisor
        self.costs = hypervisor.machine.costs
        # Free guest-physical pages, lowest PPN handed out first.
        self._free = np.arange(vm.memory_pages - 1, -1, -1, dtype=np.int64)
        self._free_top = vm.memory_pages
        self.processes: list[GuestProcess] = []
        mode = vm.mode
        assert mode is not None, "the VM's mode is attached before its guest OS"
        kernel = GuestKernel.build()
        #: The kernel build this guest runs: the para-virtual port under a para-virtual mode.
        self.kernel = kernel.ported() if mode.paravirtual else kernel
        mode.kernel = self.kernel
        for vcpu in vm.vcpus:
            mode.execute(vcpu, self.kernel.boot)

    def handle_interrupts(self, vcpu: VCPU, kind: str, count: int) -> int:
        """``count`` virtual interrupts of ``kind`` ("timer" or "device") delivered to the
        kernel and handled; returns cycles. Handlers run with IF clear, as interrupt gates do."""
        mode = self.vm.mode
        assert mode is not None
        handler = self.kernel.timer_handler if kind == "timer" else self.kernel.device_handler
        cycles = self.hypervisor.deliver(vcpu, kind, count)
        saved = vcpu.ctx.flags
        vcpu.ctx.flags &= ~IF_FLAG
        cycles += mode.execute_many(vcpu, handler, count)
        vcpu.ctx.flags = saved
        return cycles
    @property
    def free_pages(self) -> int:
        """Guest-physical pages the guest has not allocated."""
        return self._free_top

    def spawn(self, ops: Generator[Operation, Any, None], pages: int) -> GuestProcess:
        """Create a process with an address space of ``pages`` virtual pages."""
        proc = GuestProcess(len(self.processes) + 1, pages, ops)
        self.processes.append(proc)
        return proc

    def _allocate(self, count: int) -> np.ndarray:
        if count > self._free_top:
            raise GuestOutOfMemory(
                f"VM {self.vm.name!r}: the guest needs {count} more pages but has {self._free_top} free"
            )
        top = self._free_top
        ppns = self._free[top - count : top][::-1].copy()
        self._free_top = top - count
        return ppns

    def step(self, vcpu: VCPU) -> tuple[int, int | None]:
        """Run the next operation of the vCPU's process.

        Returns ``(run_ns, then)``: the CPU time the operation takes now, and afterwards
        ``None`` (carry on), a number of ns to block for, or :data:`HALT`.
        """
        proc = vcpu.process
        assert proc is not None
        try:
            op = next(proc.ops)
        except StopIteration:
            return 0, HALT
        counters = self.vm.counters
        costs = self.costs
        if type(op) is Compute:
            counters["instructions_direct"] += op.cycles // costs.instruction
            return costs.ns(op.cycles), None
        if type(op) is Touch:
            return costs.ns(self._touch(vcpu, proc, op.vpns, op.write)), None
        if type(op) is Sleep:
            return 0, op.ns
        mode = self.vm.mode
        assert mode is not None
        kernel = self.kernel
        if type(op) is Syscall:
            counters["syscalls"] += 1
            return costs.ns(self.hypervisor.deliver(vcpu, "syscall", 1) + mode.execute(vcpu, kernel.syscall)), None
        if type(op) is KernelCall:
            return costs.ns(self._kernel_call(vcpu, op.routine, op.count)), None
        if type(op) is Fault:
            cycles = self.hypervisor.deliver(vcpu, "exception", 1) + mode.execute(vcpu, kernel.exception_handler)
            return costs.ns(cycles), None
        if type(op) is IO:
            counters["io_requests"] += 1
            counters["syscalls"] += 1
            counters["io_bytes"] += op.nbytes
            cycles = self.hypervisor.deliver(vcpu, "syscall", 1) + mode.execute(vcpu, kernel.disk_request)
            cycles += mode.io(vcpu, op.device, op.nbytes, op.write)
            vcpu.io_ns = costs.ns(costs.io_device + op.nbytes * costs.byte_copy)
            return costs.ns(cycles), IO_WAIT
        raise TypeError(f"workload of VM {self.vm.name!r} yielded {op!r}, which is not an operation")

    def _kernel_call(self, vcpu: VCPU, routine: str, count: int) -> int:
        mode = self.vm.mode
        assert mode is not None
        if routine == "timer_interrupt":
            return self.handle_interrupts(vcpu, "timer", count)
        if routine == "syscall":
            self.vm.counters["syscalls"] += count
            cycles = self.hypervisor.deliver(vcpu, "syscall", count)
            return cycles + mode.execute_many(vcpu, self.kernel.syscall, count)
        block = self.kernel.routines().get(routine)
        if block is None:
            raise ValueError(f"VM {self.vm.name!r}: the guest kernel has no routine {routine!r}")
        return mode.execute_many(vcpu, block, count)

    def _touch(self, vcpu: VCPU, proc: GuestProcess, vpns: np.ndarray, write: bool) -> int:
        table = proc.page_table
        if vpns.size and (int(vpns.min()) < 0 or int(vpns.max()) >= table.size):
            raise IndexError(
                f"VM {self.vm.name!r} process {proc.pid} touched a VPN outside its "
                f"{table.size}-page address space"
            )
        cycles = 0
        ppns = table[vpns]
        if (ppns < 0).any():
            missing = np.unique(vpns[ppns < 0])
            new = self._allocate(missing.size)
            table[missing] = new
            proc.pte_flags[missing] = PTE_PRESENT | PTE_WRITABLE | PTE_USER
            self.vm.counters["guest_page_faults"] += int(missing.size)
            cycles += self.hypervisor.deliver(vcpu, "page_fault", int(missing.size))
            cycles += self.vm.mode.execute_many(vcpu, self.kernel.page_fault_handler, int(missing.size))  # type: ignore[union-attr]
            cycles += int(missing.size) * self.costs.page_zero
            ppns = table[vpns]
        unbacked = self.vm.p2m[ppns] < 0
        if unbacked.any():
            backed = self.hypervisor.back_pages(self.vm, np.unique(ppns[unbacked]))
            cycles += self.vm.mode.hidden_fault(vcpu, backed)  # type: ignore[union-attr]
        flags = PTE_ACCESSED | PTE_DIRTY if write else PTE_ACCESSED
        proc.pte_flags[vpns] |= flags
        cycles += self.vm.mode.translate(vcpu, vpns, ppns, write)  # type: ignore[union-attr]
        return cycles

    def sample_active(self) -> int:
        """Pages referenced since the last call (accessed bits), clearing the bits."""
        active = 0
        for proc in self.processes:
            accessed = (proc.pte_flags & PTE_ACCESSED) != 0
            active += int(np.count_nonzero(accessed))
            proc.pte_flags[accessed] &= ~np.uint8(PTE_ACCESSED)
        return active
