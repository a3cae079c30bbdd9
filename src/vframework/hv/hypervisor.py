"""The hypervisor: VMs, the per-CPU dispatch loop, machine-frame backing and CPU accounting.

Each physical CPU is always in exactly one of four states, and every nanosecond of it is
charged to exactly one account:

* ``IDLE``   -> the CPU's ``idle_ns``;
* ``SWITCH`` -> the CPU's ``hypervisor_ns`` (switching to another vCPU);
* ``RUN``    -> the running VM's ``cpu_run_ns``;
* ``IRQ``    -> servicing an external interrupt: the owning VM's ``cpu_irq_ns`` (or the
  host's ``hypervisor_ns``). The vCPU it interrupted does not progress, is not charged, and
  counts the time as ``cpu_stolen_ns`` when the interrupt is not its own VM's.

:meth:`Hypervisor.sync` closes every open interval at the current time, so the identity
``sum(cpu_run_ns + cpu_irq_ns) + hypervisor_ns + idle_ns == elapsed * cpus`` holds exactly in
integer ns whenever it is called. The dispatch loop schedules one engine event per operation segment,
never per instruction or per page.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING

import numpy as np

from vframework.api.contract import MemoryPolicy, MemoryService, Mode, Scheduler
from vframework.api.params import Params
from vframework.errors import HostOutOfMemory, NoProgress, OutOfMemory, PluginError
from vframework.guest.mm import name_seed
from vframework.guest.os import DEVICE_WAIT, Then
from vframework.hv.contexts import HostMemory
from vframework.hv.hypercalls import hypercall
from vframework.hv.metrics import new_host_counters
from vframework.hv.monitor import Monitor
from vframework.hv.sharing import break_sharing, consumed_pages
from vframework.hv.swap import swap_in
from vframework.hv.vm import VCPU, VM, VCPUState
from vframework.machine.hardware import MAX_VMS, SHARED, Machine
from vframework.machine.isa import ARCHITECTURES
from vframework.machine.mmu import TLB
from vframework.machine.translate import TranslationCache
from vframework.sim.engine import URGENT, Engine, Event, event_time

if TYPE_CHECKING:
    import numpy.typing as npt

    from vframework.machine.cpu import GuestCPU

__all__ = ["PCPU", "HostOutOfMemory", "Hypervisor", "NoProgress"]

IDLE, SWITCH, RUN, IRQ = 0, 1, 2, 3
#: Where device interrupts are serviced: always CPU 0, or each CPU in turn.
IRQ_AFFINITIES = ("round-robin", "cpu0")
#: Zero-time operations a vCPU may run back to back before the run is declared stuck.
_MAX_ZERO_STEPS = 100_000


class PCPU:
    """The hypervisor's state of one physical CPU (Xen's ``struct sched_resource``)."""

    __slots__ = (
        "event",
        "irq_owner",
        "irq_queue",
        "irq_then",
        "last",
        "preempt_after_irq",
        "running",
        "saved",
        "since",
        "state",
    )

    def __init__(self) -> None:
        #: IDLE, SWITCH, RUN or IRQ; every ns of the CPU is charged by it.
        self.state = IDLE
        #: When the open accounting interval began.
        self.since = 0
        #: The engine event that ends what the CPU is doing now.
        self.event: Event | None = None
        #: The vCPU on it (during an interrupt: the one interrupted), and the one before.
        self.running: VCPU | None = None
        self.last: VCPU | None = None
        #: Interrupt servicing: the owner served (None: the host), what the CPU was doing
        #: before (state, ns of switch left), interrupts waiting behind it, what runs when
        #: it ends, and whether a preemption arrived meanwhile.
        self.irq_owner: VM | None = None
        self.saved: tuple[int, int] = (IDLE, 0)
        self.irq_queue: deque[tuple[VM | None, int, Callable[[], None] | None]] = deque()
        self.irq_then: Callable[[], None] | None = None
        self.preempt_after_irq = False


class Hypervisor:
    """The virtual machine monitor of one host."""

    def __init__(
        self,
        engine: Engine,
        machine: Machine,
        scheduler: Scheduler[Params],
        memory_policy: MemoryPolicy[Params],
        memory_services: list[MemoryService[Params]] | None = None,
        irq_affinity: str = "round-robin",
        arch: str = "x86",
        hosted: bool = False,
        host_os_load: float = 0.0,
        page_levels: int = 4,
        tlb_entries: int = 1024,
        tlb_tagged: bool = False,
    ) -> None:
        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
        #: The CPU architecture (see :mod:`vframework.machine.isa`).
        self.arch = arch
        #: Plan runs of operations ahead (:mod:`vframework.guest.runahead`); off, every
        #: operation is a step of its own. Results are the same either way.
        self.run_ahead = True
        #: A hosted hypervisor runs on a host OS (device emulation crosses world switches).
        self.hosted = hosted
        #: Hosted only: the share of every CPU the host OS's own work takes.
        self.host_os_load = host_os_load if hosted else 0.0
        #: Levels of the page tables (4 on x86-64): a native walk makes that many references.
        self.page_levels = page_levels
        #: One TLB per physical CPU; tagged TLBs (VPID / ASID) survive address-space switches.
        self.tlbs = [TLB(tlb_entries, tlb_tagged) for _ in machine.cpus]
        # Guest code run outside the dispatch loop (tests, the conformance kit) uses this one;
        # like a CPU's, it is flushed when another VM uses it (unless tagged).
        self._offline_tlb = TLB(tlb_entries, tlb_tagged)
        self._offline_vm: VM | None = None
        if irq_affinity not in IRQ_AFFINITIES:
            raise ValueError(f"irq_affinity must be one of {IRQ_AFFINITIES}, got {irq_affinity!r}")
        self.irq_affinity = irq_affinity
        self.engine = engine
        self.machine = machine
        self.scheduler = scheduler
        self.memory_policy = memory_policy
        self.memory_services = list(memory_services or [])
        #: Objects the devices of every VM share (a device's ``context.host_shared``).
        self.device_shared: dict[str, object] = {}
        self.vms: dict[int, VM] = {}
        #: VMs removed by :meth:`remove_vm`; their counters still count in the accounts.
        self.retired: dict[int, VM] = {}
        self.counters = new_host_counters()
        #: What memory policies and services see of the host.
        self.memory = HostMemory(self)
        #: Per physical CPU: what it is doing, since when, and its interrupt servicing.
        self.pcpus = [PCPU() for _ in machine.cpus]
        self._runnable: set[VCPU] = set()
        self._irq_next = 0
        #: Called with the VM when a VM's last vCPU halts (the simulation listens).
        self.on_vm_halted: Callable[[VM], None] | None = None
        self._started = False
        #: Cycles memory services reported using (see :meth:`_service_loop`).
        self.service_cycles = 0
        #: Translations of guest blocks, shared by every VM's monitor.
        self.translations = TranslationCache()

    @property
    def running(self) -> list[VCPU | None]:
        """The vCPU on each physical CPU (None: idle or switching)."""
        return [pcpu.running for pcpu in self.pcpus]

    # -- VMs ------------------------------------------------------------------------
    def add_vm(self, vm: VM) -> None:
        """Register a built VM (mode, guest and processes attached) and make it runnable."""
        if vm.id in self.vms or vm.id in self.retired:
            raise ValueError(f"VM id {vm.id} is taken")
        if not 0 <= vm.id < MAX_VMS:
            raise ValueError(f"VM id {vm.id} is out of range 0..{MAX_VMS - 1}")
        vm.mem_min, vm.mem_max = self._bounds(vm)
        self.vms[vm.id] = vm
        if vm.mode is not None and vm.mode.preallocate:
            self.back_pages(vm, np.arange(vm.memory_pages, dtype=np.int64), hidden=False)
        for vcpu in vm.vcpus:
            self.scheduler.attach(vcpu, vm.scheduler_params)
        if self._started:
            for vcpu in vm.vcpus:
                self._wake(vcpu)
            self._start_guest_timer(vm)

    def _bounds(self, vm: VM) -> tuple[int, int]:
        bounds = self.memory_policy.bounds(vm)
        try:
            low, high = (int(b) if isinstance(b, int | np.integer) else -1 for b in bounds)
        except (TypeError, ValueError):
            low = high = -1
        if not 0 <= low <= high <= vm.memory_pages:
            raise PluginError(
                f"memory policy {self.memory_policy.name!r} gave VM {vm.name!r} the bounds {bounds!r}; "
                f"bounds() must return (mem_min, mem_max) in pages, 0 <= mem_min <= mem_max <= {vm.memory_pages}"
            )
        return low, high

    def attach_mode(self, vm: VM, mode_cls: type[Mode[Params]], params: Params) -> Monitor:
        """Give a VM its virtualization mode (built with its monitor as context), before its
        guest OS boots."""
        vm.monitor = Monitor(vm, self, mode_cls, params)
        vm.mode = vm.monitor.mode
        return vm.monitor

    def remove_vm(self, vm: VM) -> None:
        """Destroy a VM now: its vCPUs leave their CPUs and queues, its frames are freed."""
        now = self.engine.now
        if vm.held_since is not None:
            vm.counters["mem_blocked_ns"] += now - vm.held_since
            vm.held_since = None
        freed: list[int] = []
        for vcpu in vm.vcpus:
            if vcpu.state == VCPUState.RUNNING:
                cpu = vcpu.cpu
                assert cpu is not None
                self._account(cpu)
                if self.pcpus[cpu].state == IRQ:
                    # The interrupt is serviced to its end; the CPU is empty afterwards.
                    self.pcpus[cpu].running = None
                    self.pcpus[cpu].saved = (IDLE, 0)
                    self.pcpus[cpu].last = vcpu
                    vcpu.cpu = None
                    self.scheduler.charge(vcpu, now - vcpu.run_start, now, False)
                else:
                    self._leave(cpu, vcpu, runnable=False)
                    freed.append(cpu)
            elif vcpu.state == VCPUState.RUNNABLE:
                vm.counters["cpu_ready_ns"] += now - vcpu.ready_since
                self._runnable.discard(vcpu)
                self.scheduler.block(vcpu, now)
            if vcpu.state != VCPUState.HALTED:
                vcpu.state = VCPUState.HALTED
                self.scheduler.detach(vcpu)
        backed = vm.p2m[vm.p2m >= 0]
        self.machine.memory.release(backed)
        vm.p2m[:] = -1
        for key in ("mem_granted", "mem_consumed", "mem_shared", "mem_swapped", "mem_active", "mem_target"):
            vm.counters[key] = 0
        del self.vms[vm.id]
        self.retired[vm.id] = vm
        for cpu in freed:
            self._dispatch(cpu)
        self._kick_idle()

    def hold(self, vm: VM, held: bool) -> None:
        """Stop the VM's vCPUs from running (``held``), or let them run again. ESX's low memory
        state blocks the VMs above their targets, so that reclamation catches up. A running
        vCPU is preempted; a runnable one leaves its queue; one that wakes while its VM is held
        stays blocked, its interrupts pending, until the VM is let go."""
        now = self.engine.now
        if held == (vm.held_since is not None):
            return
        if not held:
            assert vm.held_since is not None
            vm.counters["mem_blocked_ns"] += now - vm.held_since
            vm.held_since = None
            for vcpu in vm.vcpus:
                if vcpu.held:
                    vcpu.held = False
                    self._wake(vcpu)
            return
        vm.held_since = now
        for vcpu in vm.vcpus:
            if vcpu.state == VCPUState.RUNNING:
                assert vcpu.cpu is not None
                self.preempt(vcpu.cpu)  # on a CPU servicing an interrupt: at its end, and it stops held
        for vcpu in vm.vcpus:
            if vcpu.state == VCPUState.RUNNABLE:
                self._stop_held(vcpu)

    def _stop_held(self, vcpu: VCPU) -> None:
        """A runnable vCPU of a held VM leaves its queue and blocks until the VM is let go."""
        now = self.engine.now
        vcpu.vm.counters["cpu_ready_ns"] += now - vcpu.ready_since
        self._runnable.discard(vcpu)
        self.scheduler.block(vcpu, now)
        vcpu.state = VCPUState.BLOCKED
        vcpu.held = True

    def start(self) -> None:
        """Start dispatching: every vCPU with a process becomes runnable; periodic work begins."""
        self._started = True
        for vm in self.vms.values():
            for vcpu in vm.vcpus:
                if vcpu.process is not None:
                    self._wake(vcpu, boot=True)
                else:
                    self._halt(vcpu)
        if self.scheduler.tick_ns > 0:
            self.engine.process(self._ticker(), "scheduler-tick")
        for vm in self.vms.values():
            self._start_guest_timer(vm)
        self._apply_targets()
        if self.host_os_load > 0:
            self.engine.process(self._host_os(), "host-os")
        if self.memory_policy.period_ns > 0:
            self.engine.process(self._policy_loop(), "memory-policy")
        for service in self.memory_services:
            # Each service runs once at boot too: a balloon starts inflated to its target.
            self.service_cycles += service.run(self.memory, self.engine.now)
            self.engine.process(self._service_loop(service), f"memory-service:{service.name}")

    # -- memory ---------------------------------------------------------------------
    def back_pages(self, vm: VM, ppns: npt.NDArray[np.integer], hidden: bool = True) -> int:
        """Give machine frames to guest-physical pages that have none; returns how many.

        ``hidden``: the guest touched them unknowingly (a hidden page fault), as opposed to
        asking for them (balloon deflate) or having them from the start (preallocation)."""
        self.settle(vm)
        ppns = ppns[vm.p2m[ppns] < 0]
        if ppns.size == 0:
            return 0
        short = int(ppns.size) - self.machine.memory.free_frames
        if short > 0:
            # Synchronous reclamation (ESX pages out when a fault finds no free frame).
            for service in self.memory_services:
                short -= service.reclaim_now(self.memory, short, vm.id)
                if short <= 0:
                    break
        try:
            mpns = self.machine.memory.allocate(int(ppns.size), vm.id)
        except OutOfMemory as exc:
            raise HostOutOfMemory(
                f"cannot back {ppns.size} pages of VM {vm.name!r}: the host is out of machine "
                f"memory ({exc}) and nothing reclaimed it in time; give VMs less memory, or reclaim "
                "it: a memory policy that overcommits, with balloon drivers in the guests or host-swap"
            ) from None
        vm.p2m[ppns] = mpns
        vm.counters["mem_granted"] += int(ppns.size)
        vm.counters["mem_consumed"] += int(ppns.size)
        if vm.host_swapped is not None:
            swap_in(self, vm, ppns)
        if hidden and not (vm.mode is not None and vm.mode.preallocate):
            vm.counters["hidden_page_faults"] += int(ppns.size)
        return int(ppns.size)

    def tlb_for(self, vcpu: VCPU) -> TLB:
        """The TLB of the physical CPU the vCPU runs on."""
        if vcpu.cpu is not None:
            return self.tlbs[vcpu.cpu]
        if vcpu.vm is not self._offline_vm:
            if not self._offline_tlb.tagged:
                self._offline_tlb.flush()
            self._offline_vm = vcpu.vm
        return self._offline_tlb

    def release_pages(self, vm: VM, ppns: npt.NDArray[np.integer]) -> int:
        """Take the machine frames behind guest pages back (the guest gave them up); returns how many."""
        self.settle(vm)
        ppns = ppns[vm.p2m[ppns] >= 0]
        mpns = vm.p2m[ppns]
        self.shoot_down(vm, mpns)
        if vm.counters["mem_shared"]:
            vm.counters["mem_shared"] -= int(np.count_nonzero(self.machine.memory.state[mpns] == SHARED))
        self.machine.memory.release(mpns)
        vm.p2m[ppns] = -1
        vm.counters["mem_granted"] -= int(ppns.size)
        vm.counters["mem_consumed"] -= int(ppns.size)
        return int(ppns.size)

    def shoot_down(self, vm: VM, mpns: npt.NDArray[np.integer]) -> None:
        """The VM stops mapping ``mpns``: every cached translation to them (any CPU's TLB) and
        the VM's shadow entries go, before the frames can be reused or remapped."""
        for tlb in (*self.tlbs, self._offline_tlb):
            tlb.flush_mpns(mpns)
        if vm.monitor is not None:
            vm.monitor.frames_taken(mpns)

    def break_sharing(self, vm: VM, ppns: npt.NDArray[np.integer]) -> int:
        """The guest writes pages on shared frames: private copies (see
        :func:`~vframework.hv.sharing.break_sharing`); returns how many frames were copied."""
        return break_sharing(self, vm, ppns)

    def hypercall(self, vcpu: VCPU, ctx: GuestCPU, number: int, arg: int) -> int:
        """A para-virtual guest's explicit call; validated, performed or refused. Returns cycles."""
        result, cycles, entered = hypercall(self, vcpu.vm, ctx, number, arg)
        ctx.hcr = result
        if entered:
            vcpu.vm.counters["hypercalls"] += 1
        if result < 0:
            vcpu.vm.counters["hypercall_errors"] += 1
        return cycles

    def _apply_targets(self) -> None:
        for vm_id, target in self.memory_policy.targets(self.memory, self.engine.now).items():
            self.vms[vm_id].counters["mem_target"] = int(target)

    def _policy_loop(self) -> Generator[int, None, None]:
        while True:
            yield self.memory_policy.period_ns
            self._apply_targets()

    def _service_loop(self, service: MemoryService[Params]) -> Generator[int, None, None]:
        while True:
            yield service.period_ns
            # Recorded, not yet charged to a CPU: making services compete for CPU time is
            # the memory-reclamation issue's part.
            self.service_cycles += service.run(self.memory, self.engine.now)

    # -- CPU accounting -------------------------------------------------------------
    def _account(self, cpu: int) -> None:
        now = self.engine.now
        elapsed = now - self.pcpus[cpu].since
        self.pcpus[cpu].since = now
        if elapsed == 0:
            return
        state = self.pcpus[cpu].state
        if state == RUN:
            vcpu = self.pcpus[cpu].running
            assert vcpu is not None
            vcpu.remaining_ns -= elapsed
            vcpu.vm.counters["cpu_run_ns"] += elapsed
        elif state == SWITCH:
            self.machine.cpus[cpu].hypervisor_ns += elapsed
        elif state == IRQ:
            owner = self.pcpus[cpu].irq_owner
            if owner is None:
                self.machine.cpus[cpu].hypervisor_ns += elapsed
            else:
                owner.counters["cpu_irq_ns"] += elapsed
            victim = self.pcpus[cpu].running
            if victim is not None and victim.vm is not owner:
                victim.vm.counters["cpu_stolen_ns"] += elapsed
        else:
            self.machine.cpus[cpu].idle_ns += elapsed

    def sync(self) -> None:
        """Bring every account up to the current time (before sampling or checking)."""
        now = self.engine.now
        for cpu in range(len(self.pcpus)):
            self._account(cpu)
            running = self.pcpus[cpu].running
            if running is not None and running.plan is not None and running.plan.paused is None:
                running.plan.commit(now - running.plan.start, inclusive=True)
        for vcpu in self._runnable:
            vcpu.vm.counters["cpu_ready_ns"] += now - vcpu.ready_since
            vcpu.ready_since = now
        c = self.counters
        c["elapsed_ns"] = now
        c["hypervisor_ns"] = sum(p.hypervisor_ns for p in self.machine.cpus)
        c["idle_ns"] = sum(p.idle_ns for p in self.machine.cpus)
        frames = self.machine.memory.counts()
        c["free_frames"] = frames["free"]
        c["private_frames"] = frames["private"]
        c["shared_frames"] = frames["shared"]
        c["pages_shared"] = frames["shared"]
        c["pages_sharing"] = self.machine.memory.sharing
        for vm in self.vms.values():
            vm.counters["mem_consumed"] = consumed_pages(self, vm)
            if vm.held_since is not None:
                vm.counters["mem_blocked_ns"] += now - vm.held_since
                vm.held_since = now
        c["hypervisor_frames"] = frames["hypervisor"]
        c["events_fired"] = self.engine.events_fired

    def cpu_time_balance(self) -> tuple[int, int]:
        """(charged + hypervisor + idle, elapsed x CPUs) after :meth:`sync`; they must be equal."""
        everyone = [*self.vms.values(), *self.retired.values()]
        charged = sum(vm.counters["cpu_run_ns"] + vm.counters["cpu_irq_ns"] for vm in everyone)
        total = charged + self.counters["hypervisor_ns"] + self.counters["idle_ns"]
        return total, self.engine.now * len(self.machine.cpus)

    # -- running ahead --------------------------------------------------------------
    def settle(self, vm: VM) -> None:
        """End the planned runs of the VM's running vCPUs now (see
        :mod:`vframework.guest.runahead`): call before anything reads or changes the VM's memory
        state other than its own planned operations."""
        for vcpu in vm.vcpus:
            if vcpu.plan is None:
                continue
            cpu = vcpu.cpu
            assert cpu is not None
            self._account(cpu)
            self._truncate(vcpu)
            if self.pcpus[cpu].state != RUN:
                continue  # servicing an interrupt: its end resumes the vCPU
            event = self.pcpus[cpu].event
            if event is not None:
                self.engine.cancel(event)
            self._schedule_segment(cpu, vcpu)

    def _schedule_segment(self, cpu: int, vcpu: VCPU) -> None:
        """The event that ends the vCPU's segment: at the end of its operation (or planned run)
        or of its slice. A planned run first re-arms at its last operation's start: the
        segment's end is then scheduled when stepping would schedule it, so events of one
        instant on different CPUs (slices that end together) keep the order stepping gives."""
        now = self.engine.now
        plan = vcpu.plan
        if plan is not None:
            last = plan.start + int(plan.starts[len(plan.ops) - 1])
            if last > now:
                self.pcpus[cpu].event = self.engine.schedule_at(last, self._plan_arm, cpu)
                return
        self.pcpus[cpu].event = self.engine.schedule_at(
            min(now + vcpu.remaining_ns, vcpu.slice_end), self._segment_end, cpu
        )

    def _plan_arm(self, cpu: int) -> None:
        self._account(cpu)
        vcpu = self.pcpus[cpu].running
        assert vcpu is not None
        end = min(self.engine.now + vcpu.remaining_ns, vcpu.slice_end)
        self.pcpus[cpu].event = self.engine.schedule_at(end, self._segment_end, cpu)

    def _resume_plan(self, vcpu: VCPU) -> None:
        """After interrupts: the planned operations not started move later by the time they
        took; those that now start after the slice's end are given back."""
        plan = vcpu.plan
        assert plan is not None
        if plan.paused is None:
            return
        plan.start += self.engine.now - plan.paused
        plan.paused = None
        vcpu.remaining_ns -= plan.drop(after=vcpu.slice_end - plan.start)

    def _truncate(self, vcpu: VCPU) -> None:
        """Apply the planned operations that started before now; give the rest back."""
        plan = vcpu.plan
        assert plan is not None
        if plan.paused is None:
            plan.commit(self.engine.now - plan.start, inclusive=False)
        vcpu.remaining_ns -= plan.drop()
        vcpu.plan = None

    # -- dispatch -------------------------------------------------------------------
    def _dispatch(self, cpu: int) -> None:
        """Give an empty CPU its next vCPU (or leave it idle). Its interval is already closed."""
        now = self.engine.now
        # The scheduler returns one of the vCPUs it was attached (this hypervisor's VCPUs), or None.
        vcpu: VCPU | None
        while True:
            vcpu, slice_ns = self.scheduler.pick(cpu, now)  # type: ignore[assignment]
            if vcpu is None:
                self.pcpus[cpu].state = IDLE
                return
            if vcpu.state != VCPUState.RUNNABLE or vcpu.cpu is not None:
                raise RuntimeError(
                    f"scheduler {self.scheduler.name!r} picked {vcpu.name}, which is "
                    f"{vcpu.state.name.lower()}" + (f" on CPU {vcpu.cpu}" if vcpu.cpu is not None else "")
                )
            if slice_ns <= 0:
                raise RuntimeError(f"scheduler {self.scheduler.name!r} gave {vcpu.name} a slice of {slice_ns} ns")
            self._runnable.discard(vcpu)
            if vcpu.vm.held_since is None:
                break
            # Its VM is held: it blocks at once, as a vCPU that ran for no time and blocked.
            vcpu.vm.counters["cpu_ready_ns"] += now - vcpu.ready_since
            vcpu.state = VCPUState.BLOCKED
            vcpu.held = True
            self.scheduler.charge(vcpu, 0, now, False)
        counters = vcpu.vm.counters
        counters["cpu_ready_ns"] += now - vcpu.ready_since
        if vcpu.woke_at is not None:
            counters["cpu_wakeups"] += 1
            counters["cpu_wakeup_latency_ns"] += now - vcpu.woke_at
            vcpu.woke_at = None
        vcpu.state = VCPUState.RUNNING
        vcpu.cpu = cpu
        vcpu.run_start = now
        self.pcpus[cpu].running = vcpu
        switching = self.pcpus[cpu].last is not vcpu
        if switching:
            self.counters["vcpu_switches"] += 1
            tlb = self.tlbs[cpu]
            if not tlb.tagged:
                # Another address space arrives: an untagged TLB keeps nothing across it.
                tlb.flush()
                vcpu.vm.counters["tlb_flushes"] += 1
            switch_ns = self.machine.costs.ns(self.machine.costs.vcpu_switch)
            vcpu.slice_end = now + switch_ns + slice_ns
            self.pcpus[cpu].state = SWITCH
            self.pcpus[cpu].event = self.engine.schedule(switch_ns, self._begin_run, cpu)
        else:
            vcpu.slice_end = now + slice_ns
            self._begin_run(cpu)

    def _begin_run(self, cpu: int) -> None:
        self._account(cpu)
        self.pcpus[cpu].state = RUN
        self._advance(cpu)

    def _segment_end(self, cpu: int) -> None:
        self._account(cpu)
        vcpu = self.pcpus[cpu].running
        if vcpu is not None and vcpu.plan is not None:
            # The run ends when its last operation has started (its end, or the slice's).
            plan = vcpu.plan
            plan.commit_count(len(plan.ops))
            vcpu.plan = None
        self._advance(cpu)

    def _advance(self, cpu: int) -> None:
        """Run the CPU's vCPU from now: next operations, until a segment takes time."""
        vcpu = self.pcpus[cpu].running
        assert vcpu is not None
        now = self.engine.now
        guest = vcpu.vm.guest
        assert guest is not None
        for _ in range(_MAX_ZERO_STEPS):
            if vcpu.pending_timer and vcpu.remaining_ns > 0 and now < vcpu.slice_end:
                # A tick in the middle of an operation: the handler runs now, the rest after it.
                if vcpu.plan is not None:
                    self._truncate(vcpu)
                vcpu.remaining_ns += self.machine.costs.ns(guest.handle_interrupts(vcpu, "timer", vcpu.pending_timer))
                vcpu.pending_timer = 0
            if vcpu.remaining_ns <= 0:
                if vcpu.plan is not None:  # run to its end (an interrupt came at that instant)
                    vcpu.plan.commit_count(len(vcpu.plan.ops))
                    vcpu.plan = None
                after = vcpu.after
                if vcpu.io_flush is not None:
                    # The driver's code has run: the device publishes the requests now (its
                    # kick costs the vCPU what the mode says), then the vCPU waits.
                    device, vcpu.io_flush = vcpu.io_flush, None
                    vcpu.remaining_ns = self.machine.costs.ns(device.flush(vcpu))
                    continue
                if after is Then.IO_WAIT and vcpu.wait_ns == DEVICE_WAIT and vcpu.io_outstanding == 0:
                    # Its device finished before it was done submitting: no need to block.
                    vcpu.after = Then.NEXT
                    vcpu.wait_ns = 0
                    vcpu.pending_device += 1
                elif after is not Then.NEXT:
                    vcpu.after = Then.NEXT
                    self._leave(cpu, vcpu, runnable=False)
                    if after is Then.HALT:
                        self._halt(vcpu)
                    else:
                        vcpu.state = VCPUState.BLOCKED
                        if vcpu.wait_ns != DEVICE_WAIT:  # else its device plugin wakes it (io_done)
                            wake = self._io_complete if after is Then.IO_WAIT else self._timer_wake
                            self.engine.schedule(vcpu.wait_ns, wake, vcpu)
                    self._dispatch(cpu)
                    return
                if vcpu.pending_device or vcpu.pending_timer:
                    vcpu.remaining_ns = self.machine.costs.ns(self._deliver_pending(vcpu))
                    continue
                if self.run_ahead and now < vcpu.slice_end:
                    plan = guest.plan(vcpu, vcpu.slice_end - now)
                    if plan is not None:
                        plan.start = now
                        plan.commit_count(1)  # the first operation starts now, as a step would
                        vcpu.plan = plan
                        vcpu.remaining_ns = plan.total_ns
                        continue
                run_ns, vcpu.after = guest.step(vcpu)
                vcpu.remaining_ns = run_ns
                continue
            if now >= vcpu.slice_end:
                self._leave(cpu, vcpu, runnable=True)
                self._dispatch(cpu)
                return
            self._schedule_segment(cpu, vcpu)
            return
        raise NoProgress(
            f"the workload of {vcpu.name} yielded {_MAX_ZERO_STEPS} operations in a row that "
            "take no time; it never lets simulated time advance"
        )

    def _leave(self, cpu: int, vcpu: VCPU, runnable: bool) -> None:
        """Take the vCPU off the CPU (interval already closed) and charge the scheduler."""
        now = self.engine.now
        if vcpu.plan is not None:
            self._truncate(vcpu)
        event = self.pcpus[cpu].event
        if event is not None:
            self.engine.cancel(event)
            self.pcpus[cpu].event = None
        self.pcpus[cpu].running = None
        self.pcpus[cpu].last = vcpu
        self.pcpus[cpu].state = IDLE
        vcpu.cpu = None
        vcpu.last_cpu = cpu
        if runnable:
            vcpu.state = VCPUState.RUNNABLE
            vcpu.ready_since = now
            self._runnable.add(vcpu)
        self.scheduler.charge(vcpu, now - vcpu.run_start, now, runnable)

    def _halt(self, vcpu: VCPU) -> None:
        vcpu.state = VCPUState.HALTED
        self.scheduler.detach(vcpu)
        if all(v.state == VCPUState.HALTED for v in vcpu.vm.vcpus) and self.on_vm_halted:
            self.on_vm_halted(vcpu.vm)

    def _wake(self, vcpu: VCPU, boot: bool = False) -> None:
        if vcpu.state != VCPUState.BLOCKED:
            return
        if vcpu.vm.held_since is not None:
            vcpu.held = True  # it wakes when its VM is let go; its interrupts wait for it
            return
        now = self.engine.now
        vcpu.state = VCPUState.RUNNABLE
        vcpu.ready_since = now
        vcpu.woke_at = None if boot else now
        self._runnable.add(vcpu)
        for cpu in self.scheduler.wake(vcpu, now):
            self.preempt(cpu)
        self._kick_idle()

    def _kick_idle(self) -> None:
        for cpu, pcpu in enumerate(self.pcpus):
            if pcpu.state == IDLE and pcpu.running is None:
                self._account(cpu)
                self._dispatch(cpu)

    def preempt(self, cpu: int) -> None:
        """Take the CPU's vCPU off now (it stays runnable) and dispatch again.

        A CPU servicing an interrupt is preempted when the interrupt ends.
        """
        if self.pcpus[cpu].state == IRQ:
            self.pcpus[cpu].preempt_after_irq = True
            return
        self._account(cpu)
        vcpu = self.pcpus[cpu].running
        if vcpu is not None:
            self._leave(cpu, vcpu, runnable=True)
        self._dispatch(cpu)

    def _ticker(self) -> Generator[int, None, None]:
        costs = self.machine.costs
        while True:
            yield self.scheduler.tick_ns
            # The scheduler's tick is a host timer interrupt on every CPU.
            for cpu in range(len(self.pcpus)):
                self.raise_irq(None, costs.interrupt, cpu)
            for cpu in self.scheduler.tick(self.engine.now):
                self.preempt(cpu)
            self._kick_idle()

    def _host_os(self) -> Generator[int, None, None]:
        # A hosted hypervisor shares the CPUs with its host OS: every millisecond the host OS
        # takes its share of each CPU, as interrupt-level work owned by the host.
        period = 1_000_000
        cycles = self.machine.costs.cycles(int(period * self.host_os_load))
        while True:
            yield period
            for cpu in range(len(self.pcpus)):
                self.raise_irq(None, cycles, cpu)

    # -- guest timers -----------------------------------------------------------------
    def _start_guest_timer(self, vm: VM) -> None:
        if vm.hz > 0:
            self.engine.process(self._guest_timer(vm), f"guest-timer:{vm.name}")

    def _guest_timer(self, vm: VM) -> Generator[int, None, None]:
        """The guest kernel's periodic timer: a tick on each of its vCPUs every 1/HZ s. Each VM's
        ticks keep their own phase (from its name), as unsynchronised guests' do."""
        period = max(1, 1_000_000_000 // vm.hz)
        yield 1 + name_seed(f"{vm.name}/timer") % period
        while vm.id in self.vms:
            for vcpu in vm.vcpus:
                self.guest_tick(vcpu)
            if all(v.state == VCPUState.HALTED for v in vm.vcpus):
                return
            yield period

    def guest_tick(self, vcpu: VCPU) -> None:
        """A tick of the guest's timer on ``vcpu``. A running vCPU takes it now, in the middle of
        its operation; one waiting for a CPU (or held) takes it when it next runs, several
        ticks coalescing into one as a local APIC's pending bit does. An idle vCPU of a periodic
        kernel is woken for it: its handler runs at interrupt level on the CPU the vCPU last ran
        on (charged to its VM, stolen from whatever runs there) and it halts again; a tickless
        kernel takes no tick while idle. A halted vCPU (its work done) takes none."""
        state = vcpu.state
        if state == VCPUState.HALTED:
            return
        if state == VCPUState.BLOCKED and vcpu.vm.held_since is None:
            if vcpu.vm.tickless:
                return
            guest = vcpu.vm.guest
            assert guest is not None
            cycles = guest.handle_interrupts(vcpu, "timer", 1)
            last = vcpu.last_cpu if vcpu.last_cpu is not None else vcpu.index % len(self.pcpus)
            self.raise_irq(vcpu.vm, cycles, last)
            return
        vcpu.pending_timer = max(vcpu.pending_timer, 1)
        cpu = vcpu.cpu
        if state != VCPUState.RUNNING or cpu is None or self.pcpus[cpu].state != RUN:
            return  # taken when it next runs (after the switch or interrupt in progress)
        self._account(cpu)
        if vcpu.remaining_ns <= 0 or self.engine.now >= vcpu.slice_end:
            return  # its segment ends at this instant: taken at the boundary
        event = self.pcpus[cpu].event
        if event is not None:
            self.engine.cancel(event)
            self.pcpus[cpu].event = None
        self._advance(cpu)

    # -- program discontinuities and interrupts --------------------------------------
    def deliver(self, vcpu: VCPU, kind: str, count: int = 1) -> int:
        """Field ``count`` discontinuities of ``kind`` for the vCPU's guest and deliver them as
        virtual interrupts to its kernel's handler; returns the cycles (the mode decides them)."""
        counters = vcpu.vm.counters
        counters[f"virq_{kind}"] += count
        mode = vcpu.vm.mode
        assert mode is not None
        cycles = mode.deliver(vcpu, kind, count)
        if self.hosted and kind in ("device", "timer") and not mode.baseline:
            # A hosted VMM does not own the hardware: the interrupt reaches the host OS, which
            # switches to the VMM world to inject it, and back.
            counters["world_switches"] += 2 * count
            cycles += 2 * count * self.machine.costs.world_switch
        return cycles

    def _deliver_pending(self, vcpu: VCPU) -> int:
        guest = vcpu.vm.guest
        assert guest is not None
        cycles = 0
        if vcpu.pending_device:
            cycles += guest.handle_interrupts(vcpu, "device", vcpu.pending_device)
            vcpu.pending_device = 0
        if vcpu.pending_timer:
            cycles += guest.handle_interrupts(vcpu, "timer", vcpu.pending_timer)
            vcpu.pending_timer = 0
        return cycles

    def _timer_wake(self, vcpu: VCPU) -> None:
        vcpu.pending_timer += 1
        self._wake(vcpu)

    def io_done(self, vcpu: VCPU) -> None:
        """A device plugin completed the last request the blocked vCPU waits for: it wakes,
        with one device interrupt to handle (the device raised the physical one, if any)."""
        vcpu.wait_ns = 0
        vcpu.pending_device += 1
        self._wake(vcpu)

    def _io_complete(self, vcpu: VCPU) -> None:
        def wake() -> None:
            vcpu.pending_device += 1
            self._wake(vcpu)

        # The completion is a physical interrupt that belongs to the VM that issued the I/O.
        self.raise_irq(vcpu.vm, self.machine.costs.interrupt, then=wake)

    def _irq_cpu(self) -> int:
        if self.irq_affinity == "cpu0":
            return 0
        cpu = self._irq_next
        self._irq_next = (cpu + 1) % len(self.pcpus)
        return cpu

    def raise_irq(
        self, owner: VM | None, cycles: int, cpu: int | None = None, then: Callable[[], None] | None = None
    ) -> int:
        """An external interrupt owned by ``owner`` (None: the host) arrives now on ``cpu`` (by
        default chosen by the IRQ affinity). Servicing takes ``cycles``; then ``then()`` runs.
        Returns the CPU."""
        if cpu is None:
            cpu = self._irq_cpu()
        ns = self.machine.costs.ns(cycles)
        self.counters["interrupts"] += 1
        if self.pcpus[cpu].state == IRQ:
            self.pcpus[cpu].irq_queue.append((owner, ns, then))
            return cpu
        self._account(cpu)
        state, left = self.pcpus[cpu].state, 0
        running = self.pcpus[cpu].running
        if running is not None and running.plan is not None and state == RUN:
            # The planned operations not started yet start later, by the interrupt's time.
            running.plan.commit(self.engine.now - running.plan.start, inclusive=False)
            running.plan.paused = self.engine.now
        event = self.pcpus[cpu].event
        if event is not None:
            if state == SWITCH:
                left = event_time(event) - self.engine.now
            self.engine.cancel(event)
            self.pcpus[cpu].event = None
        self.pcpus[cpu].saved = (state, left)
        self._begin_irq(cpu, owner, ns, then)
        return cpu

    def _begin_irq(self, cpu: int, owner: VM | None, ns: int, then: Callable[[], None] | None) -> None:
        self.pcpus[cpu].state = IRQ
        self.pcpus[cpu].irq_owner = owner
        self.pcpus[cpu].irq_then = then
        self.pcpus[cpu].event = self.engine.schedule(ns, self._irq_end, cpu, URGENT)

    def _irq_end(self, cpu: int) -> None:
        self._account(cpu)
        self.pcpus[cpu].event = None
        then = self.pcpus[cpu].irq_then
        self.pcpus[cpu].irq_then = None
        if then is not None:
            then()
        if self.pcpus[cpu].irq_queue:
            self._begin_irq(cpu, *self.pcpus[cpu].irq_queue.popleft())
            return
        state, left = self.pcpus[cpu].saved
        self.pcpus[cpu].state = state
        self.pcpus[cpu].irq_owner = None
        running = self.pcpus[cpu].running
        if running is not None and running.plan is not None:
            self._resume_plan(running)
        if self.pcpus[cpu].preempt_after_irq:
            self.pcpus[cpu].preempt_after_irq = False
            self.preempt(cpu)
            if running is not None and running.vm.held_since is not None and running.state == VCPUState.RUNNABLE:
                # Its VM was held while the interrupt ran: it stops now, as hold() stops the
                # vCPUs it finds runnable (rather than wait for the scheduler to pick it).
                self._stop_held(running)
        elif state == RUN:
            self._advance(cpu)
        elif state == SWITCH:
            self.pcpus[cpu].event = self.engine.schedule(left, self._begin_run, cpu)
        elif self.pcpus[cpu].running is None:
            self._dispatch(cpu)
