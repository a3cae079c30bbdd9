"""``fair``: an equal share of CPU to each VM, whatever its number of vCPUs."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from pydantic import Field
from sortedcontainers import SortedList

from vframework import VCPU, Duration, Params, Scheduler


class FairParams(Params):
    tslice: Duration = Field(10_000_000, description="time slice a vCPU runs before the next VM's turn")


class FairScheduler(Scheduler):
    """Fair share per VM: the next vCPU comes from the runnable VM that has received the least
    CPU time so far; a VM's vCPUs take turns (round robin) within its share.

    A VM that was idle rejoins at the least received time of the VMs already waiting (as
    Linux CFS does with min_vruntime), so sleeping does not bank CPU for later bursts.
    Work-conserving: a CPU never idles while a vCPU is queued.
    """

    name = "fair"
    description = "equal CPU share per VM (whatever its vCPU count), round robin within a VM"
    Params = FairParams
    work_conserving = True

    def __init__(self, params: FairParams, cpus: int) -> None:
        super().__init__(params, cpus)
        self.slice_ns = params.tslice
        self.received: dict[int, int] = {}  # VM id -> CPU ns received
        self.queues: dict[int, deque[VCPU]] = {}  # VM id -> its queued vCPUs
        self.order: SortedList = SortedList()  # (received, VM id) of VMs with queued vCPUs
        self.floor = 0  # least received time among waiting VMs, last seen
        self.active: dict[int, int] = {}  # VM id -> its vCPUs queued or running

    def attach(self, vcpu: VCPU, vm_params: Params | None) -> None:
        self.received.setdefault(vcpu.vm.id, 0)
        self.queues.setdefault(vcpu.vm.id, deque())
        self.active.setdefault(vcpu.vm.id, 0)

    def detach(self, vcpu: VCPU) -> None:
        self.block(vcpu, 0)

    def _enqueue(self, vcpu: VCPU) -> None:
        vm = vcpu.vm.id
        queue = self.queues[vm]
        if not queue:
            self.order.add((self.received[vm], vm))
        queue.append(vcpu)

    def wake(self, vcpu: VCPU, now: int) -> Sequence[int]:
        vm = vcpu.vm.id
        if self.active[vm] == 0:
            # The VM was wholly idle: it rejoins no further behind than the VMs waiting now.
            if self.order:
                self.floor = max(self.floor, self.order[0][0])
            self.received[vm] = max(self.received[vm], self.floor)
        self.active[vm] += 1
        self._enqueue(vcpu)
        return ()

    def block(self, vcpu: VCPU, now: int) -> None:
        vm = vcpu.vm.id
        queue = self.queues.get(vm)
        if queue and vcpu in queue:
            queue.remove(vcpu)
            self.active[vm] -= 1
            if not queue:
                self.order.remove((self.received[vm], vm))

    def pick(self, cpu: int, now: int) -> tuple[VCPU | None, int]:
        if not self.order:
            return None, 0
        received, vm = self.order.pop(0)
        self.floor = received
        queue = self.queues[vm]
        vcpu = queue.popleft()
        if queue:
            self.order.add((received, vm))
        return vcpu, self.slice_ns

    def charge(self, vcpu: VCPU, ran_ns: int, now: int, runnable: bool) -> None:
        vm = vcpu.vm.id
        queue = self.queues[vm]
        if queue:
            self.order.remove((self.received[vm], vm))
        self.received[vm] += ran_ns
        if queue:
            self.order.add((self.received[vm], vm))
        if runnable:
            self._enqueue(vcpu)
        else:
            self.active[vm] -= 1

    def share_weight(self, vm_params: Params | None) -> float:
        return 1.0

    def share_error_bound_ns(self, vms: int) -> int:
        # A VM is picked whenever it has received the least; it can then be behind the fluid
        # share by at most the slices of every other VM ahead of it plus its own rejoin.
        return self.slice_ns * (vms + 1)
