"""Guest instructions executed per second under each mode, against ``bare-metal``.

The model: the reference guest kernel's routines (system call, critical section, context
switch, timer and device handlers, page-fault handler, disk request, fork, exit: 11,029
instructions per round, 25 of them sensitive on ``x86``) executed in a loop by each installed
mode's :meth:`~vframework.Mode.execute` on a one-VM, one-CPU hypervisor of the mode's first
architecture; a para-virtual mode runs the ported kernel. Every execution is a real one (no
``execute_many`` shortcut): each block's first run is interpreted, later runs use its
translation (``machine/translate.py``), as in a simulation. So this is the cost of executing
guest code plus each mode's handling of sensitive instructions: trap-and-emulate, binary
translation (with its translation cache), hypercalls, VM exits. Interrupts raised while
running are delivered between rounds, as the guest enables them.

Row ``modes.instructions`` per mode: guest instructions per wall second; baseline
``bare-metal`` in the same run. Binary translation's cache should keep ``full`` close to 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from common import best_of_interleaved, installed, row

from vframework.guest.kernel import GuestKernel
from vframework.guest.os import GuestOS
from vframework.hv.hypervisor import Hypervisor
from vframework.hv.vm import VM
from vframework.machine.hardware import Machine
from vframework.machine.isa import IF_FLAG
from vframework.sim.engine import Engine
from vframework.sim.units import PAGE_SIZE
from vframework.testing.doubles import FifoScheduler, FixedPolicy

#: Rounds over the kernel's routines per measurement (quick: a tenth).
DEFAULT_SIZE = 100
SMOKE_SIZE = 1
ROUTINES = (
    "syscall",
    "critical_section",
    "context_switch",
    "timer_handler",
    "device_handler",
    "page_fault_handler",
    "disk_request",
    "fork",
    "exit",
)


def _guest(mode_cls: type) -> tuple[Any, Any, list[Any]]:
    hv = Hypervisor(
        Engine(seed=0),
        Machine(1, 256 * PAGE_SIZE),
        FifoScheduler(None, 1),
        FixedPolicy(None),
        arch=mode_cls.architectures[0],
    )
    vm = VM(0, "bench", 1, 32)
    hv.attach_mode(vm, mode_cls, mode_cls.params_model())
    vm.guest = GuestOS(vm, hv)
    hv.add_vm(vm)
    if not vm.mode.preallocate:
        hv.back_pages(vm, np.arange(32, dtype=np.int64), hidden=False)
    kernel = GuestKernel.build()
    if vm.mode.paravirtual:
        kernel = kernel.ported()
    vcpu = vm.vcpus[0]
    vm.monitor.execute(vcpu, kernel.boot)
    return vm.monitor, vcpu, [getattr(kernel, name) for name in ROUTINES]


def instructions(mode_cls: type, rounds: int) -> Any:
    """Setup for one measurement: the timed body runs ``rounds`` rounds; returns instructions run."""
    mode, vcpu, blocks = _guest(mode_cls)
    per_round = sum(len(b) for b in blocks)

    def body() -> int:
        ctx = vcpu.ctx
        for _ in range(rounds):
            for block in blocks:
                mode.execute(vcpu, block)
            mode._vcpu = vcpu
            while ctx.pending and ctx.flags & IF_FLAG:
                mode.interrupt(ctx)
            mode._vcpu = None
            ctx.pending.clear()
        return rounds * per_round

    return body


def run(quick: bool = False, size: int | None = None, repeat: int | None = None) -> list[dict[str, Any]]:
    """One ``modes.instructions`` row per installed mode, each against ``bare-metal``."""
    rounds = size or (DEFAULT_SIZE // 10 if quick else DEFAULT_SIZE)
    repeat = repeat or 3
    classes = installed("mode", "bare-metal")
    names = list(classes)
    per_round = {name: sum(len(b) for b in _guest(cls)[2]) for name, cls in classes.items()}
    best = best_of_interleaved({name: (lambda c=cls: instructions(c, rounds)) for name, cls in classes.items()}, repeat)
    base = rounds * per_round["bare-metal"] / best["bare-metal"]
    return [
        row(
            "modes.instructions",
            name,
            rounds * per_round[name] / best[name],
            "instructions/s",
            base,
            "bare-metal",
            architecture=classes[name].architectures[0],
            instructions=rounds * per_round[name],
        )
        for name in names
    ]
