"""Components that are wrong on purpose: each is a standard component (or a kit double) with one
realistic bug in one method, and names the conformance property that must catch it.

``tests/testing/test_mutants.py`` checks, on a fixed seed, that each is caught; ``python
tests/detection.py`` measures how often each is caught over fresh seeds at the default profile
(the rates docs/testing.md records).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
from vframework_billing.flat import FlatPricing
from vframework_billing.tiered import TieredPricing
from vframework_devices.emulated import EmulatedDisk
from vframework_devices.ring_block import RingBlock
from vframework_memory.host_swap import HostSwap
from vframework_memory.shares import SharesPolicy
from vframework_modes.hardware import HardwareAssisted
from vframework_modes.software import TrapAndEmulate
from vframework_schedulers.credit import CreditScheduler
from vframework_schedulers.fair import FairScheduler
from vframework_schedulers.proportional import ProportionalScheduler

from vframework.api.contract import Workload
from vframework.api.views import VCPUView
from vframework.guest.ops import Compute, Operation, Touch
from vframework.testing.doubles import FifoScheduler


@dataclass(frozen=True)
class Mutant:
    """A broken component and the property (by name) that must catch it."""

    cls: type
    prop: str
    bug: str


MUTANTS: list[Mutant] = []


def mutant(prop: str, bug: str) -> Callable[[type], type]:
    def register(cls: type) -> type:
        MUTANTS.append(Mutant(cls, prop, bug))
        return cls

    return register


# -- schedulers -------------------------------------------------------------------------------


@mutant("dispatch", "pick returns the head of the queue without taking it off")
class DoublePick(FifoScheduler):
    name = "bug-double-pick"

    def pick(self, cpu: int, now: int) -> tuple[Any, int]:
        return (self.queue[0], self.slice_ns) if self.queue else (None, 0)


@mutant("work conservation", "drops a runnable vCPU that went OVER instead of queueing it behind the others")
class CreditDropsOver(CreditScheduler):
    name = "bug-credit-drops-over"

    def charge(self, vcpu: Any, ran_ns: int, now: int, runnable: bool) -> None:
        super().charge(vcpu, ran_ns, now, runnable)
        cv = vcpu.sched
        if runnable and cv.credit < 0 and cv.queued:
            self._dequeue(cv)


@mutant("liveness", "declares itself not work-conserving, and serves VM 0 only when no other VM waits")
class Starves(FifoScheduler):
    name = "bug-starves"
    work_conserving = False
    slice_ns = 1_000_000  # the double's 1 us slices make seconds of simulated time slow

    def pick(self, cpu: int, now: int) -> tuple[Any, int]:
        for vcpu in self.queue:
            if vcpu.vm.id != 0:
                self.queue.remove(vcpu)
                return vcpu, self.slice_ns
        return (None, 0)


@mutant("accounting", "debits half the time a vCPU ran")
class CreditHalfBurn(CreditScheduler):
    name = "bug-credit-half-burn"

    def _burn(self, cv: Any, now: int) -> None:
        ran = now - cv.since
        cv.since = now
        cv.credit -= ran // 2
        cv.burnt += ran // 2
        cv.dom.used += ran // 2


@mutant("caps and reservations", "reads the cap as per vCPU: a 2-vCPU VM capped at 50% gets a whole CPU")
class CreditCapPerVCPU(CreditScheduler):
    name = "bug-credit-cap-per-vcpu"

    def _budget(self, dom: Any) -> int:
        return super()._budget(dom) * len(dom.vcpus)  # type: ignore[no-any-return]


@mutant("accounting", "charges the whole slice given, also when the vCPU left the CPU early")
class ProportionalNoRefund(ProportionalScheduler):
    name = "bug-proportional-no-refund"

    def charge(self, vcpu: Any, ran_ns: int, now: int, runnable: bool) -> None:
        super().charge(vcpu, max(ran_ns, vcpu.sched[1]), now, runnable)


@mutant("caps and reservations", "picks a VM over its limit as long as it has the least pass")
class ProportionalIgnoresLimit(ProportionalScheduler):
    name = "bug-proportional-ignores-limit"

    def pick(self, cpu: int, now: int) -> tuple[Any, int]:
        for s in self.vms.values():
            s.tokens = max(s.tokens, self._burst(s)) if s.limit else s.tokens
        return super().pick(cpu, now)


@mutant("caps and reservations", "weights VMs by their shares alone, ignoring reservations")
class ProportionalIgnoresReservation(ProportionalScheduler):
    name = "bug-proportional-ignores-reservation"

    def _rebalance(self) -> None:
        for s in self.vms.values():
            self._set_weight(s, float(s.shares))
        self.adjusted.clear()


@mutant("fairness", "picks the VM with the lowest id instead of the one that received least")
class FairById(FairScheduler):
    name = "bug-fair-by-id"

    def pick(self, cpu: int, now: int) -> tuple[Any, int]:
        if not self.order:
            return None, 0
        received, vm = min(self.order, key=lambda entry: entry[1])
        self.order.remove((received, vm))
        queue = self.queues[vm]
        vcpu = queue.popleft()
        if queue:
            self.order.add((received, vm))
        return vcpu, self.slice_ns


# -- modes ------------------------------------------------------------------------------------


@mutant("costs", "a system call costs 10 cycles when nothing exits")
class CheapSyscalls(HardwareAssisted):
    """Forgets that a system call costs its native round trip even when nothing exits."""

    name = "planted-cheap-syscalls"

    def deliver(self, vcpu: VCPUView, kind: str, count: int) -> int:
        return 10 * count if kind == "syscall" else super().deliver(vcpu, kind, count)


@mutant("counters", "counts the doorbell's trap, which the base class already counts")
class DoorbellTrapCountedTwice(TrapAndEmulate):
    """Counts the doorbell's trap itself, not knowing that the base class already does."""

    name = "planted-doorbell-trap-counted-twice"

    def notify_backend(self, vcpu: VCPUView) -> int:
        self.context.counters["traps"] += 1
        return super().notify_backend(vcpu)


@mutant("counters", "counts external-interrupt exits on top of the base class")
class InterruptExitCountedTwice(HardwareAssisted):
    """Adds its own accounting of external-interrupt exits on top of the base class's."""

    name = "planted-interrupt-exit-counted-twice"

    def deliver(self, vcpu: VCPUView, kind: str, count: int) -> int:
        if kind in ("timer", "device"):
            self.context.counters["vm_exits"] += count
            self.context.counters["vm_exits_external_interrupt"] += count
        return super().deliver(vcpu, kind, count)


# -- memory policies --------------------------------------------------------------------------


class _BoundsTold(SharesPolicy):
    """A shares policy whose bugs are in its targets: the kernel is told the true bounds."""

    def bounds(self, vm: Any) -> tuple[int, int]:
        low, top, _ = SharesPolicy._bounds(self, vm)
        return low, top


@mutant("targets", "mem_max is read but not applied")
class SharesIgnoresMax(_BoundsTold):
    name = "bug-shares-ignores-max"

    def _bounds(self, vm: Any) -> tuple[int, int, float]:
        low, _, shares = super()._bounds(vm)
        return low, vm.memory_pages, shares


@mutant("targets", "mem_min is dropped exactly when memory is short")
class SharesDropsMin(_BoundsTold):
    name = "bug-shares-drops-min"

    def _bounds(self, vm: Any) -> tuple[int, int, float]:
        low, top, shares = super()._bounds(vm)
        return (0 if self._short else low), top, shares

    def targets(self, memory: Any, now: int) -> dict[int, int]:
        self._short = sum(vm.memory_pages for vm in memory.vms) > memory.total_frames
        return super().targets(memory, now)


@mutant("targets", "hands out what VMs hold plus what is left, counting the left-over twice")
class SharesOverhands(SharesPolicy):
    name = "bug-shares-overhands"

    def targets(self, memory: Any, now: int) -> dict[int, int]:
        first = super().targets(memory, now)
        left = memory.total_frames - sum(first.values())
        top = {vm.id: vm.memory_pages for vm in memory.vms}
        return {v: min(top[v], t + max(0, left)) for v, t in first.items()}


# -- memory services --------------------------------------------------------------------------


@mutant("sharing and reclamation", "reclaim_now reports the frames it was asked for, not those it freed")
class HostSwapOverstates(HostSwap):
    name = "bug-host-swap-overstates"

    def reclaim_now(self, memory: Any, pages: int, exclude: int) -> int:
        super().reclaim_now(memory, pages, exclude)
        return pages


# -- devices ----------------------------------------------------------------------------------


@mutant("requests and isolation", "serves every request by sector, barrier or not")
class IgnoresBarriers(RingBlock):
    name = "bug-ignores-barriers"

    def _accept(self, rid: int, payload: object) -> None:
        super()._accept(rid, payload)
        self._epoch = 0


@mutant("requests and isolation", "bounces data through its own buffer instead of DMA into granted pages")
class Copies(RingBlock):
    name = "bug-copies"

    def _complete(self, taken: object) -> None:
        self.context.counters["io_bytes_copied"] += 4096
        super()._complete(taken)  # type: ignore[arg-type]


@mutant("requests and isolation", "a read's DMA lands one page past the granted one")
class WritesPastTheGrant(RingBlock):
    name = "bug-writes-past-the-grant"

    def _complete(self, taken: object) -> None:
        taken.ppns = taken.ppns + 1  # type: ignore[attr-defined]
        super()._complete(taken)  # type: ignore[arg-type]


@mutant("requests and isolation", "completes every third request twice")
class CompletesTwice(EmulatedDisk):
    name = "bug-completes-twice"

    def _finish(self, request: object) -> None:
        super()._finish(request)  # type: ignore[arg-type]
        if request.id % 3 == 2:  # type: ignore[attr-defined]
            self.context.complete(request)  # type: ignore[arg-type]


# -- workloads --------------------------------------------------------------------------------


@mutant("well-formed operations", "touches one page past its address space")
class OutOfBounds(Workload):
    name = "bug-out-of-bounds"

    def address_space_pages(self) -> int:
        return 8

    def run(self) -> Generator[Operation, Any, None]:
        yield Compute(100)
        yield Touch(np.array([3, 8], dtype=np.int64), False)


# -- pricing ----------------------------------------------------------------------------------


@mutant("pricing", "a volume discount on the whole line once it crosses the threshold (a cliff)")
class CliffTier(TieredPricing):
    name = "bug-cliff-tier"

    def charge(self, line: Any) -> Any:
        tier = self._tiers.get(line.resource)
        if tier is None:
            return line.list_amount
        threshold, factor = tier
        crossed = line.used_before + line.quantity > threshold
        return line.list_amount * (factor if crossed else 1)


@mutant("pricing", "returns money as a float")
class FloatMoney(FlatPricing):
    name = "bug-float-money"

    def charge(self, line: Any) -> Any:
        return float(line.list_amount)
