"""The kit's device machine, run against the standard devices and against planted bugs."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test
from mutants import CompletesTwice, Copies, IgnoresBarriers, WritesPastTheGrant
from vframework_devices.emulated import EmulatedDisk
from vframework_devices.emulated_nic import EmulatedNIC
from vframework_devices.ring_block import RingBlock
from vframework_devices.ring_net import RingNet, RingNetParams

from vframework.testing import DeviceMachine

TestRingBlock = DeviceMachine.for_component(RingBlock).TestCase
TestEmulatedDisk = DeviceMachine.for_component(EmulatedDisk).TestCase


class _ForgetsToPin(RingBlock):
    name = "bug-forgets-to-pin"

    def _accept(self, rid: int, payload: object) -> None:
        pin = self.context.pin
        self.context.pin = lambda ppns: None  # type: ignore[method-assign]
        try:
            super()._accept(rid, payload)
        finally:
            self.context.pin = pin  # type: ignore[method-assign]

    def _complete(self, taken: object) -> None:
        unpin = self.context.unpin
        self.context.unpin = lambda ppns: None  # type: ignore[method-assign]
        try:
            super()._complete(taken)  # type: ignore[arg-type]
        finally:
            self.context.unpin = unpin  # type: ignore[method-assign]


@pytest.mark.parametrize("bug", [IgnoresBarriers, Copies, _ForgetsToPin, WritesPastTheGrant, CompletesTwice])
def test_the_kit_catches_a_planted_bug(bug: type) -> None:
    machine = DeviceMachine.for_component(bug)
    quiet = settings(
        max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True
    )
    with pytest.raises((AssertionError, ValueError)):
        run_state_machine_as_test(machine, settings=quiet)


TestRingNet = DeviceMachine.for_component(RingNet).TestCase
TestEmulatedNIC = DeviceMachine.for_component(EmulatedNIC).TestCase


class _Flipping(RingNet):
    name = "ring-net-flipping"

    @classmethod
    def kit_params(cls) -> RingNetParams:
        return RingNetParams(rx_mode="flip")


TestRingNetFlipping = DeviceMachine.for_component(_Flipping).TestCase


class _Polling(RingNet):
    name = "ring-net-polling"

    @classmethod
    def kit_params(cls) -> RingNetParams:
        return RingNetParams(rx_poll_us=30)


TestRingNetPolling = DeviceMachine.for_component(_Polling).TestCase
