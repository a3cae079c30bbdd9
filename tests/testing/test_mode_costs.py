"""The conformance kit's cost and counter property of virtualization modes
(:mod:`vframework.testing.costs`): the standard modes against it, the known places where a
standard mode's cost model is cheaper than bare metal (strict xfail reproducers), and modes that
are wrong on purpose, which it must catch."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import Phase, settings
from hypothesis.stateful import run_state_machine_as_test
from mutants import CheapSyscalls, DoorbellTrapCountedTwice, InterruptExitCountedTwice
from vframework_modes import BareMetal

from vframework import PluginManager
from vframework.api import DISCONTINUITIES, Mode, Params
from vframework.machine.isa import Op
from vframework.testing.costs import CostMachine, NativeCosts, _Guest

STANDARD = ("bare-metal", "full", "trap-and-emulate", "paravirtual", "hardware-assisted")
SMALL = settings(max_examples=30, stateful_step_count=25, deadline=None, database=None)
PLANTED = settings(SMALL, derandomize=True)

#: Standard modes that charge some operation less than bare metal does, as they declare (their
#: ``known_limitations``); each has strict xfail reproducers below. A mode whose cost model is
#: fixed drops its declaration, and these reproducers then fail until their marks go too.
CHEAPER_THAN_NATIVE = {
    name: PluginManager().get("mode", name).known_limitations["costs"]
    for name in ("full", "trap-and-emulate", "paravirtual")
}


def _mode(name: str) -> type[Mode[Params]]:
    # The standard modes are installed wherever the suite runs (tox installs plugins/*): a
    # missing one is an error, not a reason to skip.
    return PluginManager().get("mode", name)


def _messages(exc: BaseException) -> list[str]:
    """Every failure Hypothesis reported (several distinct ones come as a group)."""
    if isinstance(exc, BaseExceptionGroup):
        return [m for e in exc.exceptions for m in _messages(e)]
    return [f"{type(exc).__name__}: {exc}"]


def _failures(machine: type[CostMachine]) -> list[str]:
    try:
        run_state_machine_as_test(machine, settings=PLANTED)
    except BaseException as exc:  # an ExceptionGroup when several checks fail
        return _messages(exc)
    return []


def _counters_only(machine: type[CostMachine]) -> type[CostMachine]:
    """The machine without its cost checks, so that a known cost violation cannot hide a counting bug."""
    return CostMachine.for_component(machine.mode_cls, machine.arch, costs=False)


def _known(name: str) -> Any:
    reason = CHEAPER_THAN_NATIVE.get(name)
    return pytest.mark.xfail(reason=reason, strict=True, raises=AssertionError) if reason else ()


@pytest.mark.parametrize("name", [pytest.param(n, marks=_known(n)) for n in STANDARD])
def test_standard_mode(name: str) -> None:
    # A known violation needs no shrinking: its reproducers below are already minimal.
    how = settings(SMALL, phases=(Phase.explicit, Phase.generate)) if name in CHEAPER_THAN_NATIVE else SMALL
    run_state_machine_as_test(CostMachine.for_component(_mode(name)), settings=how)


@pytest.mark.parametrize("name", STANDARD)
def test_standard_mode_counters(name: str) -> None:
    run_state_machine_as_test(_counters_only(CostMachine.for_component(_mode(name))), settings=SMALL)


def _booted(name: str) -> CostMachine:
    machine = CostMachine.for_component(_mode(name))()
    machine.boot()
    return machine


@pytest.mark.xfail(
    reason="port I/O is emulated for less than a real device access costs", strict=True, raises=AssertionError
)
@pytest.mark.parametrize("name", ["full", "trap-and-emulate", "paravirtual"])
def test_port_access_costs_at_least_native(name: str) -> None:
    machine = _booted(name)
    block = machine.kernel_block(((Op.IN, 0, 0x20),))
    machine.kernel_block_again(block)  # a translator's cached run: no translation cost to hide it


@pytest.mark.xfail(
    reason="the back-end doorbell costs less than bare metal's register write", strict=True, raises=AssertionError
)
@pytest.mark.parametrize("name", ["full", "trap-and-emulate", "paravirtual"])
def test_doorbell_costs_at_least_native(name: str) -> None:
    _booted(name).notify_backend()


@pytest.mark.xfail(
    reason="a translated CR3 load charges a callout but no TLB flush", strict=True, raises=AssertionError
)
def test_translated_cr3_load_costs_at_least_native() -> None:
    machine = _booted("full")
    machine.context_switch(1)
    machine.context_switch(1)  # from the translation cache: no translation cost left to hide it


def _native_costs(mode_cls: type[Mode[Params]]) -> list[int]:
    side = _Guest(mode_cls, "x86", "vm0")
    vcpu, monitor = side.vcpu, side.monitor
    cycles = [side.hv.deliver(vcpu, kind, 3) for kind in DISCONTINUITIES]
    return [
        *cycles,
        monitor.hidden_fault(vcpu, 2),
        monitor.mode.notify_backend(vcpu),
        monitor.io(vcpu, "disk", 512, True),
    ]


def test_native_costs_are_the_bare_metal_plugins() -> None:
    # The kit carries its own bare-metal reference (the kernel never imports a plugin): it must
    # charge exactly what the bare-metal plugin charges.
    assert _native_costs(NativeCosts) == _native_costs(BareMetal)


# -- modes wrong on purpose (tests/mutants.py) ---------------------------------------------------


def test_catches_a_system_call_cheaper_than_native() -> None:
    failures = _failures(CostMachine.for_component(CheapSyscalls))
    expected = (
        "on VM 'guest' under mode 'planted-cheap-syscalls' (x86-vt): the mode's deliver('syscall', 1) costs 10 "
        "cycles, less than the 242 it costs on bare metal; "
        "expected a virtualized operation to cost at least its native cost"
    )
    assert any(expected in f for f in failures), failures


def test_catches_a_trap_counted_twice() -> None:
    # Counting checks alone: trap-and-emulate's own known cost violations would be reported too.
    failures = _failures(_counters_only(CostMachine.for_component(DoorbellTrapCountedTwice)))
    expected = (
        "after back-end notification: on VM 'guest' under mode 'planted-doorbell-trap-counted-twice' (classic), "
        "the mode's notify_backend() counted 2 hypervisor entries {'traps': 2} for 1 event(s); "
        "expected each event counted once (1), or none (0)"
    )
    assert any(expected in f for f in failures), failures


def test_catches_an_exit_counted_twice() -> None:
    failures = _failures(CostMachine.for_component(InterruptExitCountedTwice))
    expected = re.compile(
        r"after .*: on VM 'guest' under mode 'planted-interrupt-exit-counted-twice' \(x86-vt\), the mode's "
        r"deliver\('(timer|device)', (\d+)\) counted (\d+) hypervisor entries \{'vm_exits': \3\} for \2 event\(s\)"
    )
    assert any((m := expected.search(f)) is not None and int(m.group(3)) == 2 * int(m.group(2)) for f in failures), (
        failures
    )
