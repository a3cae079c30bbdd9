"""The machine's frame table (``hardware.MachineMemory``): the conformance kit's state machine for
it, run as an ordinary pytest test."""

from __future__ import annotations

import pytest

from vframework.testing import FrameTableMachine


@pytest.mark.invariants
class TestFrameTableMachine(FrameTableMachine.TestCase):  # type: ignore[name-defined, misc]
    pass
