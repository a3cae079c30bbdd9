"""``fair``: an equal share of CPU to each VM, whatever its number of vCPUs."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from pydantic import Field
from sortedcontainers import SortedList

from vframework.api import Duration, Params, Scheduler, VCPUView


class FairParams(Params):
    tslice: Duration = Field(10_000_000, description="time slice a vCPU runs before the next VM's turn")


class FairScheduler(Scheduler[FairParams]):
    """Fair share per VM: the next vCPU comes from the runnable VM that has received the least
    CPU time so far; a VM's vCPUs take turns (round robin) within its share.

    Received time is compared only among VMs that compete now, as the fluid (GPS) share it
    approximates is memoryless:

    * a VM that was idle, or is new, rejoins at the least received time of the active VMs (as
      Linux CFS does with min_vruntime), so sleeping does not bank CPU for later bursts; on an
      idle host, at that of the last VMs active, so that VMs arriving then do not start at 0
      behind a VM that was here before them (and starve it while they catch up);
    * time a VM used while no other VM waited for a CPU leaves it at most one slice per vCPU
      ahead of the least-served active VM: a lead beyond that was earned on CPUs nobody else
      could use (a 2-vCPU VM beside a 1-vCPU VM on three CPUs), and starving the VM later to
      pay it back would break the share going forward.

    Work-conserving: a CPU never idles while a vCPU is queued.
    """

    name = "fair"
    description = "equal CPU share per VM (whatever its vCPU count), round robin within a VM"
    params_model = FairParams
    work_conserving = True

    def __init__(self, params: FairParams, cpus: int) -> None:
        super().__init__(params, cpus)
        self.slice_ns = params.tslice
        self.received: dict[int, int] = {}  # VM id -> CPU ns received
        self.queues: dict[int, deque[VCPUView]] = {}  # VM id -> its queued vCPUs
        self.order: SortedList = SortedList()  # (received, VM id) of VMs with queued vCPUs
        self.live: SortedList = SortedList()  # (received, VM id) of VMs with vCPUs queued or running
        self.active: dict[int, int] = {}  # VM id -> its vCPUs queued or running
        self.vcpus: dict[int, int] = {}  # VM id -> its vCPU count
        # The least received time of the VMs competing, never going back (Linux CFS's
        # min_vruntime): kept while no VM competes, so that VMs arriving at an idle host do
        # not start at 0 behind a VM that was here before them.
        self.floor = 0

    def attach(self, vcpu: VCPUView, vm_params: Params | None) -> None:
        vm = vcpu.vm.id
        self.received.setdefault(vm, 0)
        self.queues.setdefault(vm, deque())
        self.active.setdefault(vm, 0)
        self.vcpus[vm] = len(vcpu.vm.vcpus)

    def detach(self, vcpu: VCPUView) -> None:
        self.block(vcpu, 0)

    def _set_received(self, vm: int, value: int) -> None:
        old = self.received[vm]
        if old == value:
            return
        if self.queues[vm]:
            self.order.remove((old, vm))
            self.order.add((value, vm))
        if self.active[vm]:
            self.live.remove((old, vm))
            self.live.add((value, vm))
        self.received[vm] = value

    def _raise_floor(self) -> None:
        if self.live:
            self.floor = max(self.floor, self.live[0][0])

    def _activate(self, vm: int) -> None:
        if self.active[vm] == 0:
            # Rejoin no further behind than the least-served VM competing now (or last).
            self._raise_floor()
            self.received[vm] = max(self.received[vm], self.floor)
            self.live.add((self.received[vm], vm))
        self.active[vm] += 1

    def _deactivate(self, vm: int) -> None:
        self.active[vm] -= 1
        if self.active[vm] == 0:
            self._raise_floor()
            self.live.remove((self.received[vm], vm))

    def _enqueue(self, vcpu: VCPUView) -> None:
        vm = vcpu.vm.id
        queue = self.queues[vm]
        if not queue:
            self.order.add((self.received[vm], vm))
        queue.append(vcpu)

    def wake(self, vcpu: VCPUView, now: int) -> Sequence[int]:
        self._activate(vcpu.vm.id)
        self._enqueue(vcpu)
        return ()

    def block(self, vcpu: VCPUView, now: int) -> None:
        vm = vcpu.vm.id
        queue = self.queues.get(vm)
        if queue and vcpu in queue:
            queue.remove(vcpu)
            if not queue:
                self.order.remove((self.received[vm], vm))
            self._deactivate(vm)

    def pick(self, cpu: int, now: int) -> tuple[VCPUView | None, int]:
        if not self.order:
            return None, 0
        received, vm = self.order.pop(0)
        queue = self.queues[vm]
        vcpu = queue.popleft()
        if queue:
            self.order.add((received, vm))
        return vcpu, self.slice_ns

    def charge(self, vcpu: VCPUView, ran_ns: int, now: int, runnable: bool) -> None:
        vm = vcpu.vm.id
        value = self.received[vm] + ran_ns
        # Only time used while no other VM waited is uncontended, and only its lead is forgiven.
        contended = any(other != vm for _, other in self.order.islice(0, 2))
        least = None if contended else next((r for r, other in self.live if other != vm), None)
        if least is not None:
            value = min(value, max(self.received[vm], least + self.slice_ns * self.vcpus[vm]))
        self._set_received(vm, value)
        if runnable:
            self._enqueue(vcpu)
        else:
            self._deactivate(vm)

    def share_weight(self, vm_params: Params | None) -> float:
        return 1.0

    def share_error_bound_ns(self, vms: int) -> int:
        # A VM is picked whenever it has received the least; it can then be behind the fluid
        # share by at most the slices of every other VM ahead of it plus its own rejoin.
        return self.slice_ns * (vms + 1)
