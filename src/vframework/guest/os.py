"""The reference guest OS model: processes, system calls, interrupts, faults, fork and memory.

The guest believes its physical memory is PPNs ``0..memory_pages-1``. Its kernel code runs on
the vCPU through the VM's mode (:mod:`vframework.guest.kernel`); its memory manager
(:mod:`vframework.guest.mm`) keeps page tables, a frame allocator, copy-on-write and swap. The
same guest runs under every mode; only what reaches the hypervisor differs.
"""

from __future__ import annotations

from collections.abc import Generator
from enum import IntEnum
from typing import TYPE_CHECKING

import numpy as np

from vframework.guest.kernel import NANO_ROUTINES, GuestKernel, nano_routine
from vframework.guest.mm import (
    PTE_ACCESSED,
    PTE_COW,
    PTE_DIRTY,
    PTE_PRESENT,
    PTE_SWAPPED,
    PTE_USER,
    PTE_WRITABLE,
    ContentLayout,
    GuestMemory,
    GuestOutOfMemory,
    GuestProcess,
    name_seed,
    write_content,
)
from vframework.guest.ops import (
    IO,
    SECTOR_BYTES,
    Compute,
    Fault,
    ForkExec,
    ForkWait,
    IORequest,
    KernelCall,
    MapUnmap,
    Operation,
    Sleep,
    Syscall,
    Touch,
)
from vframework.guest.platform import GuestDevice, GuestVCPU, GuestVM, Platform
from vframework.guest.process import ProcessCalls
from vframework.guest.runahead import RunAhead, plan
from vframework.machine.hardware import SHARED
from vframework.machine.isa import IF_FLAG
from vframework.sim.units import PAGE_SIZE

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["DEVICE_WAIT", "GuestOS", "GuestOutOfMemory", "GuestProcess", "Then"]

#: ``vcpu.wait_ns`` while the vCPU waits for a device plugin, which wakes it (not a timer).
DEVICE_WAIT = -1


class Then(IntEnum):
    """What a vCPU does once the operation :meth:`GuestOS.step` started has run."""

    #: Run the process's next operation.
    NEXT = 0
    #: Block for ``vcpu.wait_ns``; a timer wakes it.
    SLEEP = 1
    #: Block on its I/O (``vcpu.wait_ns`` of device time); completion is a device interrupt.
    IO_WAIT = 2
    #: The process has ended; the vCPU halts.
    HALT = 3


_MAPPED = PTE_PRESENT | PTE_WRITABLE | PTE_USER
#: Nanobenchmark entry points: the kind of discontinuity each delivers.
_ENTRIES = {"syscall_entry": "syscall", "page_fault_entry": "page_fault", "exception_entry": "exception"}


class GuestOS(ProcessCalls):
    """One VM's operating system."""

    def __init__(self, vm: GuestVM, hypervisor: Platform) -> None:
        self.vm = vm
        self.hypervisor = hypervisor
        self.costs = hypervisor.machine.costs
        self.memory = GuestMemory(vm.memory_pages, vm.swap_pages)
        #: The kernel's page frame table, sized by the memory the guest was configured with (not
        #: what a balloon leaves it): a ballooned-down large VM has less for its processes than
        #: a VM configured at that size. The model never writes it, so it takes machine frames
        #: only where the mode preallocates.
        self.page_frame_table = self.memory.take(-(-vm.memory_pages * vm.page_struct_bytes // PAGE_SIZE))
        self._pinned: npt.NDArray[np.integer] | None = None  # PPNs the reference being served needs
        self.processes: list[GuestProcess] = []
        self._next_pid = 1
        #: Image pages hold the same content in every VM booted from the same image.
        self.image_seed = name_seed(vm.image)
        monitor = vm.monitor
        assert monitor is not None, "the VM's mode is attached before its guest OS"
        kernel = GuestKernel.build()
        #: The kernel build this guest runs: the para-virtual port under a para-virtual mode.
        self.kernel = kernel.ported() if monitor.paravirtual else kernel
        monitor.kernel = self.kernel
        for vcpu in vm.vcpus:
            monitor.execute(vcpu, self.kernel.boot)

    def handle_interrupts(self, vcpu: GuestVCPU, kind: str, count: int) -> int:
        """``count`` virtual interrupts of ``kind`` ("timer" or "device") delivered to the
        kernel and handled; returns cycles. Handlers run with IF clear, as interrupt gates do."""
        monitor = self.vm.monitor
        assert monitor is not None
        handler = self.kernel.timer_handler if kind == "timer" else self.kernel.device_handler
        cycles = self.hypervisor.deliver(vcpu, kind, count)
        saved = vcpu.ctx.flags
        vcpu.ctx.flags &= ~IF_FLAG
        cycles += monitor.execute_many(vcpu, handler, count)
        vcpu.ctx.flags = saved
        return cycles

    @property
    def free_pages(self) -> int:
        """Guest-physical pages the guest has not allocated."""
        return self.memory.free_pages

    def spawn(
        self, ops: Generator[Operation, None, None] | None, pages: int, layout: ContentLayout | None = None
    ) -> GuestProcess:
        """Create a process with an address space of ``pages`` virtual pages, whose pages hold
        what ``layout`` says when first touched (None: zero)."""
        if layout is not None and layout.volatile_start > pages:
            raise ValueError(
                f"VM {self.vm.name!r}: a content layout of {layout.volatile_start} image, zero and "
                f"private pages does not fit a {pages}-page address space"
            )
        proc = GuestProcess(self._next_pid, pages, ops, layout)
        proc.salt = name_seed(f"{self.vm.name}/{proc.pid}")
        self._next_pid += 1
        self.processes.append(proc)
        return proc

    def step(self, vcpu: GuestVCPU) -> tuple[int, Then]:
        """Run the next operation of the vCPU's process.

        Returns ``(run_ns, then)``: the CPU time the operation takes now, and what the vCPU
        does afterwards (blocking sets ``vcpu.wait_ns``).
        """
        proc = vcpu.process
        assert proc is not None
        assert proc.ops is not None
        if proc.lookahead:
            op = proc.lookahead.popleft()
        else:
            try:
                op = next(proc.ops)
            except StopIteration:
                return 0, Then.HALT
        counters = self.vm.counters
        costs = self.costs
        if type(op) is Compute:
            counters["instructions_direct"] += op.cycles // costs.instruction
            return costs.ns(op.cycles), Then.NEXT
        # Anything else may change memory the VM's other vCPUs have planned runs over.
        self.hypervisor.settle(self.vm)
        if type(op) is Touch:
            return self._waited(vcpu, *self.touch(vcpu, proc, op.vpns, op.write))
        if type(op) is ForkWait:
            return self._waited(vcpu, *self.fork_wait(vcpu, proc, op.touch))
        if type(op) is ForkExec:
            return self._waited(vcpu, *self.fork_exec(vcpu, proc, op.programs, op.shell))
        if type(op) is MapUnmap:
            return self._waited(vcpu, *self.map_unmap(vcpu, proc, op))
        if type(op) is Sleep:
            vcpu.wait_ns = op.ns
            return 0, Then.SLEEP
        monitor = self.vm.monitor
        assert monitor is not None
        kernel = self.kernel
        if type(op) is Syscall:
            counters["syscalls"] += 1
            cycles = self.hypervisor.deliver(vcpu, "syscall", 1) + monitor.execute(vcpu, kernel.syscall)
            return costs.ns(cycles), Then.NEXT
        if type(op) is KernelCall:
            return costs.ns(self._kernel_call(vcpu, op.routine, op.count)), Then.NEXT
        if type(op) is Fault:
            cycles = self.hypervisor.deliver(vcpu, "exception", 1) + monitor.execute(vcpu, kernel.exception_handler)
            return costs.ns(cycles), Then.NEXT
        if type(op) is IO:
            counters["io_requests"] += op.count
            counters["syscalls"] += 1
            counters["io_bytes"] += op.nbytes * op.count
            if op.device == "disk":
                counters["disk_requests"] += op.count
                counters["disk_bytes"] += op.nbytes * op.count
            cycles = self.hypervisor.deliver(vcpu, "syscall", 1)
            device = self.vm.devices.get(op.device)
            if device is not None:
                return costs.ns(cycles + self.submit_io(vcpu, device, op)), Then.IO_WAIT
            # No device plugin: the request is the generic driver's port I/O and a fixed delay.
            cycles += monitor.execute(vcpu, kernel.disk_request)
            cycles += monitor.io(vcpu, op.device, op.nbytes * op.count, op.write)
            vcpu.wait_ns = costs.ns(costs.io_device + op.nbytes * op.count * costs.byte_copy)
            return costs.ns(cycles), Then.IO_WAIT
        raise TypeError(f"workload of VM {self.vm.name!r} yielded {op!r}, which is not an operation")

    def _waited(self, vcpu: GuestVCPU, cycles: int, io_ns: int) -> tuple[int, Then]:
        """An operation's CPU time, and whether its vCPU then waits ``io_ns`` for swap I/O."""
        if io_ns:
            vcpu.wait_ns = io_ns
            return self.costs.ns(cycles), Then.IO_WAIT
        return self.costs.ns(cycles), Then.NEXT

    def submit_io(self, vcpu: GuestVCPU, device: GuestDevice, op: IO) -> int:
        """The driver hands an operation's requests to the device (each with the VM's next
        request id); the vCPU then waits for all of them (``wait_ns = DEVICE_WAIT``). Returns cycles.

        The device publishes them (``flush``: a ring push, a kick, starting the disk) only when
        the driver's code has run: the platform calls it at the end of the vCPU's segment
        (``vcpu.io_flush``), so that the device does not start before the driver is done."""
        vm = self.vm
        cycles = 0
        sector = op.sector
        for i in range(op.count):
            if op.sectors:
                sector = op.sectors[i]
            request = IORequest(vm.io_submitted, vcpu.index, op.nbytes, op.write, sector, op.barrier)
            vm.io_submitted += 1
            vm.io_open.add(request.id)
            vcpu.io_outstanding += 1
            cycles += device.submit(vcpu, request)
            if sector >= 0:
                sector += -(-op.nbytes // SECTOR_BYTES)
        vcpu.wait_ns = DEVICE_WAIT
        vcpu.io_flush = device
        return cycles

    def plan(self, vcpu: GuestVCPU, budget_ns: int) -> RunAhead | None:
        """The vCPU's next operations as one run ahead, if two or more start within
        ``budget_ns`` and can be planned (see :mod:`vframework.guest.runahead`)."""
        return plan(self, vcpu, budget_ns)

    def _kernel_call(self, vcpu: GuestVCPU, routine: str, count: int) -> int:
        monitor = self.vm.monitor
        assert monitor is not None
        if routine == "timer_interrupt":
            return self.handle_interrupts(vcpu, "timer", count)
        if routine == "context_switch":
            # Each switch loads a page-table base: an untagged TLB is flushed every time.
            tlb = self.hypervisor.tlb_for(vcpu)
            if not tlb.tagged:
                tlb.flush()
                self.vm.counters["tlb_flushes"] += count
            return monitor.execute_many(vcpu, self.kernel.context_switch, count)
        if routine == "syscall":
            self.vm.counters["syscalls"] += count
            cycles = self.hypervisor.deliver(vcpu, "syscall", count)
            return cycles + monitor.execute_many(vcpu, self.kernel.syscall, count)
        if routine in _ENTRIES:
            # The discontinuity alone, into a handler that returns at once.
            kind = _ENTRIES[routine]
            if kind == "syscall":
                self.vm.counters["syscalls"] += count
            return self.hypervisor.deliver(vcpu, kind, count)
        if routine == "pte_write":
            # Rewrite a live entry of the running process's page table (its first mapped page):
            # one store each time, which keeps shadows coherent as any PTE write does.
            proc = vcpu.process
            assert proc is not None
            mapped = proc.mapped()
            if not mapped.size:
                raise ValueError(f"VM {self.vm.name!r}: pte_write needs a mapped page; touch one first")
            return monitor.pt_write(vcpu, proc, np.full(count, mapped[0], dtype=np.int64))
        if routine in NANO_ROUTINES:
            return monitor.execute_many(vcpu, nano_routine(routine, self.kernel.paravirtual), count)
        block = self.kernel.routines().get(routine)
        if block is None:
            raise ValueError(f"VM {self.vm.name!r}: the guest kernel has no routine {routine!r}")
        return monitor.execute_many(vcpu, block, count)

    # -- memory ------------------------------------------------------------------------
    def touch(self, vcpu: GuestVCPU, proc: GuestProcess, vpns: npt.NDArray[np.int64], write: bool) -> tuple[int, int]:
        """References to ``vpns`` by ``proc``: faults as needed, then translation.

        Returns ``(cycles, io_ns)``: CPU cycles, and disk time the process must then wait for
        (swap traffic), 0 if none.
        """
        table = proc.page_table
        if vpns.size and (int(vpns.min()) < 0 or int(vpns.max()) >= table.size):
            raise IndexError(
                f"VM {self.vm.name!r} process {proc.pid} touched a VPN outside its {table.size}-page address space"
            )
        monitor = self.vm.monitor
        assert monitor is not None
        cycles = io_ns = 0
        flags = proc.pte_flags[vpns]
        # The steady state of a working set: every page present and already accessed (and, for
        # a write, dirty and not copy-on-write). One test covers it; the rest is the slow path.
        bits = PTE_ACCESSED | PTE_DIRTY if write else PTE_ACCESSED
        want = PTE_PRESENT | bits
        steady = bool(((flags & (want | PTE_COW if write else want)) == want).all())
        if not steady:
            if not (flags & PTE_PRESENT).all():
                # Pages this reference needs stay resident while its faults make room (no page
                # of the batch is swapped out to bring another in).
                present = table[vpns]
                self._pinned = present[present >= 0]
                try:
                    c, io_ns = self._fault_in(vcpu, proc, np.unique(vpns[(flags & PTE_PRESENT) == 0]))
                finally:
                    self._pinned = None
                cycles += c
                flags = proc.pte_flags[vpns]
            if write and (flags & PTE_COW).any():
                self._pinned = table[vpns]
                try:
                    cycles += self._copy_on_write(vcpu, proc, np.unique(vpns[(flags & PTE_COW) != 0]))
                finally:
                    self._pinned = None
                flags = proc.pte_flags[vpns]
        ppns = table[vpns]
        watch = self.vm.watch
        if watch is not None:
            seen = ppns[watch[ppns]]
            if seen.size:
                cycles += self._sampled(vcpu, seen)
        p2m = self.vm.p2m
        # Under shadow paging a complete shadow answers for the P2M: its pages are backed.
        shadow = monitor.complete_shadow(proc, vpns) if steady else None
        walked = p2m[ppns] if shadow is None else shadow
        if shadow is None and (walked < 0).any():
            cycles += self._back(vcpu, ppns)
            walked = p2m[ppns]
        if write and self.vm.counters["mem_shared"]:
            c = self._unshare(vcpu, ppns)
            if c:
                cycles += c
                walked, shadow = p2m[ppns], None
        c, mpns = monitor.translate(vcpu, proc, vpns, write, walked, shadowed=shadow is not None)
        cycles += c
        if self.vm.accessed is not None:
            self.vm.accessed[ppns] = True
        if write:
            proc.writes += 1
            write_content(self.hypervisor.machine.memory.content, mpns, vpns, proc.writes, proc.salt)
        if not steady:
            # Set A (and D) only where missing: a fancy-indexed read-modify-write of every
            # access would cost more than the rest of the batch.
            stale = (flags & bits) != bits
            if stale.any():
                proc.pte_flags[vpns[stale]] |= bits
        return cycles, io_ns

    def _fault_in(self, vcpu: GuestVCPU, proc: GuestProcess, vpns: npt.NDArray[np.int64]) -> tuple[int, int]:
        """Guest page faults on ``vpns`` (never mapped, or swapped out): the guest's handler maps
        them, zeroing new pages and reading swapped ones back."""
        monitor = self.vm.monitor
        assert monitor is not None
        n = int(vpns.size)
        self.vm.counters["guest_page_faults"] += n
        cycles = self.hypervisor.deliver(vcpu, "page_fault", n)
        cycles += monitor.execute_many(vcpu, self.kernel.page_fault_handler, n)
        ppns, c, io_ns = self._allocate(vcpu, n)
        cycles += c
        proc.page_table[vpns] = ppns
        swapped = (proc.pte_flags[vpns] & PTE_SWAPPED) != 0
        proc.pte_flags[vpns] = _MAPPED
        mem = self.memory
        mem.rmap_vpn[ppns] = vpns
        # The handler writes the new pages (zeroing, or the swapped-in data): they need frames.
        cycles += self._back(vcpu, ppns)
        cycles += self._unshare(vcpu, ppns)
        content = self.hypervisor.machine.memory.content
        if proc.layout is None:
            content[self.vm.p2m[ppns]] = 0
        else:
            content[self.vm.p2m[ppns]] = proc.layout.fill(vpns, self.image_seed, proc.salt)
        cycles += (n - int(swapped.sum())) * self.costs.page_zero
        if swapped.any():
            assert proc.swap_slot is not None
            slots = proc.swap_slot[vpns[swapped]]
            content[self.vm.p2m[ppns[swapped]]] = mem.swap_content[slots]
            proc.swap_slot[vpns[swapped]] = -1
            mem.free_slots(slots)
            k = int(swapped.sum())
            self.vm.counters["swap_ins"] += k
            io_ns += self.costs.ns(self.costs.io_device + k * 4096 * self.costs.byte_copy)
        return cycles + monitor.pt_write(vcpu, proc, vpns), io_ns

    def _allocate(self, vcpu: GuestVCPU, count: int) -> tuple[npt.NDArray[np.int64], int, int]:
        """``count`` free PPNs, swapping pages out first when there are not enough."""
        mem = self.memory
        cycles = io_ns = 0
        short = count - mem.free_pages
        if short > 0 and mem.balloon:
            # Deflate on OOM (virtio-balloon's DEFLATE_ON_OOM): pages the guest cannot find by
            # swapping come back from the balloon rather than failing the guest.
            reach = min(int(np.count_nonzero(self.evictable())), mem.free_swap_slots)
            if short > reach:
                self.balloon_deflate(short - reach)
                short = count - mem.free_pages
        if short > 0:
            cycles, io_ns = self._swap_out(vcpu, short)
        return mem.take(count), cycles, io_ns

    def _unevictable(self) -> npt.NDArray[np.integer]:
        """Pages no swap-out may take: those the reference being served needs, and those a
        device is reading or writing (Linux cannot unmap a page pinned for DMA)."""
        pinned = self._pinned if self._pinned is not None else np.empty(0, dtype=np.int64)
        io = self.vm.io_pinned
        return np.concatenate([pinned, io]) if io.size else pinned

    def evictable(self) -> npt.NDArray[np.bool_]:
        """Per PPN: whether a swap-out could take the page now (mapped, not unevictable)."""
        mask = self.memory.rmap_vpn >= 0
        mask[self._unevictable()] = False
        return mask

    def _swap_out(self, vcpu: GuestVCPU, count: int) -> tuple[int, int]:
        mem = self.memory
        victims = mem.victims(count, self._unevictable())
        slots = mem.swap_slots(count) if victims.size == count else None
        if slots is None:
            held = int(np.count_nonzero(mem.rmap_vpn >= 0)) - int(np.count_nonzero(self.evictable()))
            raise GuestOutOfMemory(
                f"VM {self.vm.name!r}: the guest needs {count} more pages; it has "
                f"{mem.free_pages} free and {mem.free_swap_slots} swap slots, and {held} mapped pages "
                "it cannot swap out (the reference needs them, or a device is using them); "
                "give the VM more memory or a larger `swap`"
            )
        # Writing a page to swap reads it: a page whose frame the hypervisor took needs one back.
        if self.vm.host_swapped is not None:
            self.vm.counters["double_paging"] += int(np.count_nonzero(self.vm.host_swapped[victims]))
        cycles = self._back(vcpu, victims)
        content = self.hypervisor.machine.memory.content
        mem.swap_content[slots] = content[self.vm.p2m[victims]]
        slots = np.asarray(slots)
        # Every process that maps a victim points at its slot: one, or 1 + sharers since a fork.
        mem.slot_refs[slots] += mem.sharers[victims]
        mem.sharers[victims] = 0
        at = mem.rmap_vpn[victims].astype(np.int64)  # the VPN of a victim, in every process mapping it
        for proc in self.processes:
            inside = at < proc.page_table.size
            mine = np.zeros(victims.size, dtype=bool)
            mine[inside] = proc.page_table[at[inside]] == victims[inside]
            if not mine.any():
                continue
            vpns = at[mine]
            if proc.swap_slot is None:
                proc.swap_slot = np.full(proc.page_table.size, -1, dtype=np.int32)
            proc.swap_slot[vpns] = slots[mine]
            proc.page_table[vpns] = -1
            proc.pte_flags[vpns] = PTE_SWAPPED
            cycles += self.vm.monitor.pt_write(vcpu, proc, vpns)  # type: ignore[union-attr]
        mem.give_back(victims)
        self.vm.counters["swap_outs"] += count
        return cycles, self.costs.ns(self.costs.io_device + count * 4096 * self.costs.byte_copy)

    def _back(self, vcpu: GuestVCPU, ppns: npt.NDArray[np.integer]) -> int:
        """The guest is about to read or write the frames of ``ppns``: back those the hypervisor
        took (each a hidden fault, with a zeroed frame); returns the cycles. Never index the P2M
        of an unbacked page: its -1 would reach the last machine frame, another owner's."""
        unbacked = np.unique(ppns[self.vm.p2m[ppns] < 0])
        if unbacked.size == 0:
            return 0
        monitor = self.vm.monitor
        assert monitor is not None
        cycles = monitor.hidden_fault(vcpu, self.hypervisor.back_pages(self.vm, unbacked))
        if self.vm.stall_ns:
            # Pages the hypervisor read back from its own swap: the vCPU stalls for the reads.
            cycles += self.vm.stall_ns * self.costs.clock_hz // 1_000_000_000
            self.vm.stall_ns = 0
        return cycles

    def _sampled(self, vcpu: GuestVCPU, ppns: npt.NDArray[np.integer]) -> int:
        """References to pages the hypervisor is sampling (it invalidated their mappings): each
        first reference is a hidden fault that tells it the page is active."""
        watch, touched = self.vm.watch, self.vm.touched
        assert watch is not None
        assert touched is not None
        ppns = np.unique(ppns)
        watch[ppns] = False
        touched[ppns] = True
        monitor = self.vm.monitor
        assert monitor is not None
        return monitor.hidden_fault(vcpu, int(ppns.size))

    def _unshare(self, vcpu: GuestVCPU, ppns: npt.NDArray[np.integer]) -> int:
        """The guest is about to write the (backed) pages ``ppns``: those on frames the
        hypervisor shares get a private copy first (a hidden write fault each); returns the
        cycles."""
        if not self.vm.counters["mem_shared"]:
            return 0
        shared = ppns[self.hypervisor.machine.memory.state[self.vm.p2m[ppns]] == SHARED]
        if shared.size == 0:
            return 0
        monitor = self.vm.monitor
        assert monitor is not None
        faults = int(np.unique(shared).size)
        copies = self.hypervisor.break_sharing(self.vm, shared)
        return monitor.hidden_fault(vcpu, faults) + copies * self.costs.page_copy

    def _copy_on_write(self, vcpu: GuestVCPU, proc: GuestProcess, vpns: npt.NDArray[np.int64]) -> int:
        """Writes to pages shared since a fork: copy those still shared, reclaim the rest."""
        monitor = self.vm.monitor
        assert monitor is not None
        mem = self.memory
        n = int(vpns.size)
        self.vm.counters["cow_faults"] += n
        self.vm.counters["guest_page_faults"] += n
        cycles = self.hypervisor.deliver(vcpu, "page_fault", n)
        cycles += monitor.execute_many(vcpu, self.kernel.page_fault_handler, n)
        old = proc.page_table[vpns].astype(np.int64)
        shared = mem.sharers[old] > 0
        if shared.any():
            copy_vpns = vpns[shared]
            new, c, _ = self._allocate(vcpu, int(copy_vpns.size))
            cycles += c
            # The copy reads the shared pages and writes the new ones: both need frames.
            cycles += self._back(vcpu, np.concatenate([old[shared], new]))
            cycles += self._unshare(vcpu, new)
            content = self.hypervisor.machine.memory.content
            content[self.vm.p2m[new]] = content[self.vm.p2m[old[shared]]]
            np.subtract.at(mem.sharers, old[shared], mem.sharers.dtype.type(1))
            mem.rmap_vpn[new] = copy_vpns
            proc.page_table[copy_vpns] = new
            cycles += int(copy_vpns.size) * self.costs.page_copy
        # The last sharer keeps its page: it only becomes writable again.
        proc.pte_flags[vpns] = (proc.pte_flags[vpns] & ~np.uint8(PTE_COW)) | PTE_WRITABLE
        return cycles + monitor.pt_write(vcpu, proc, vpns)

    def kernel_pages(self, count: int) -> npt.NDArray[np.int64]:
        """``count`` free guest-physical pages for the kernel's own use for good (a driver's
        I/O buffers): off the free list, in no process, never swapped or ballooned."""
        mem = self.memory
        if count > mem.free_pages:
            raise GuestOutOfMemory(
                f"VM {self.vm.name!r}: {count} pages of I/O buffers asked for, {mem.free_pages} pages free"
            )
        return mem.take(count)

    # -- the balloon driver (Xen's memory/target, ESX's vmmemctl) ------------------------
    def balloon_inflate(self, vcpu: GuestVCPU, count: int) -> npt.NDArray[np.int64]:
        """Take up to ``count`` guest-physical pages into the balloon: free pages first, then
        pages whose data the guest writes out to its swap area. Returns the PPNs taken; the
        caller hands their frames back to the hypervisor."""
        mem = self.memory
        evictable = int(np.count_nonzero(self.evictable()))
        count = min(count, mem.free_pages + min(mem.free_swap_slots, evictable))
        if count <= 0:
            return np.empty(0, dtype=np.int64)
        ppns, _, _ = self._allocate(vcpu, count)
        mem.balloon.extend(ppns.tolist())
        self.vm.counters["mem_balloon"] += int(ppns.size)
        return ppns

    def balloon_deflate(self, count: int) -> npt.NDArray[np.int64]:
        """Give up to ``count`` pages back from the balloon to the guest's free pages (they get
        frames again when the guest next uses them). Returns the PPNs released."""
        mem = self.memory
        count = min(count, len(mem.balloon))
        if count <= 0:
            return np.empty(0, dtype=np.int64)
        ppns = np.array(mem.balloon[-count:], dtype=np.int64)
        del mem.balloon[-count:]
        mem.give_back(ppns)
        self.vm.counters["mem_balloon"] -= int(ppns.size)
        return ppns

    def visible_memory(self, proc: GuestProcess) -> dict[int, int]:
        """VPN -> content handle of every page the process maps or has swapped (what it can read)."""
        out: dict[int, int] = {}
        content = self.hypervisor.machine.memory.content
        swapped, saved = self.vm.host_swapped, self.vm.host_swap_content
        for vpn in proc.mapped().tolist():
            ppn = int(proc.page_table[vpn])
            mpn = int(self.vm.p2m[ppn])
            if mpn >= 0:
                out[vpn] = int(content[mpn])
            elif swapped is not None and saved is not None and swapped[ppn]:
                out[vpn] = int(saved[ppn])  # in the hypervisor's swap: read back on next use
            else:
                out[vpn] = 0
        if proc.swap_slot is not None:
            for vpn in np.flatnonzero(proc.swap_slot >= 0).tolist():
                out[vpn] = int(self.memory.swap_content[proc.swap_slot[vpn]])
        return out

    def sample_active(self) -> int:
        """Pages referenced since the last call (accessed bits), clearing the bits."""
        active = 0
        for proc in self.processes:
            accessed = (proc.pte_flags & PTE_ACCESSED) != 0
            active += int(np.count_nonzero(accessed))
            proc.pte_flags[accessed] &= ~np.uint8(PTE_ACCESSED)
            proc.epoch += 1
        return active
