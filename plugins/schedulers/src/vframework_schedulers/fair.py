"""``fair``: round-robin over runnable vCPUs, the same time slice for each."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from pydantic import Field

from vframework import VCPU, Duration, Params, Scheduler


class FairParams(Params):
    tslice: Duration = Field(10_000_000, description="time slice each vCPU gets per turn")


class FairScheduler(Scheduler):
    """Round robin: every runnable vCPU gets ``tslice`` in turn, so each gets an equal share.

    Work-conserving: a CPU never idles while the queue holds a vCPU.
    """

    name = "fair"
    description = "round robin, equal time slice per vCPU"
    Params = FairParams
    work_conserving = True

    def __init__(self, params: FairParams, cpus: int) -> None:
        super().__init__(params, cpus)
        self.slice_ns = params.tslice
        self.queue: deque[VCPU] = deque()

    def attach(self, vcpu: VCPU, vm_params: Params | None) -> None:
        pass

    def detach(self, vcpu: VCPU) -> None:
        self.block(vcpu, 0)

    def wake(self, vcpu: VCPU, now: int) -> Sequence[int]:
        self.queue.append(vcpu)
        return ()

    def block(self, vcpu: VCPU, now: int) -> None:
        try:
            self.queue.remove(vcpu)
        except ValueError:
            pass

    def pick(self, cpu: int, now: int) -> tuple[VCPU | None, int]:
        if not self.queue:
            return None, 0
        return self.queue.popleft(), self.slice_ns

    def charge(self, vcpu: VCPU, ran_ns: int, now: int, runnable: bool) -> None:
        if runnable:
            self.queue.append(vcpu)
