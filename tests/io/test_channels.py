"""Event channels and grant tables: Xen's semantics, and the kit's machines."""

from __future__ import annotations

import pytest

from vframework.io.events import EventChannels
from vframework.io.grants import GrantError, GrantTable
from vframework.testing import EventChannelMachine, GrantTableMachine

TestEventChannelMachine = EventChannelMachine.TestCase
TestGrantTableMachine = GrantTableMachine.TestCase


def test_a_masked_event_stays_pending_and_is_delivered_once_on_unmask() -> None:
    ev = EventChannels(4)
    port = ev.bind()
    ev.mask(port)
    assert not ev.notify(port)
    assert not ev.notify(port)  # coalesced: already pending
    assert ev.take() == []  # masked: the handler leaves it
    assert ev.pending(port)
    assert ev.unmask(port)  # now the guest gets its upcall
    assert ev.take() == [port]
    assert (ev.sent, ev.delivered) == (2, 1)
    assert ev.take() == []


def test_one_upcall_covers_every_port_notified_before_the_handler_runs() -> None:
    ev = EventChannels(4)
    a, b = ev.bind(), ev.bind()
    assert ev.notify(a)
    assert not ev.notify(b)  # an upcall is already on its way
    assert ev.take() == [a, b]
    assert ev.notify(b)


def test_unbound_ports_are_refused() -> None:
    ev = EventChannels(2)
    with pytest.raises(ValueError, match="not bound"):
        ev.notify(0)
    ev.bind(), ev.bind()
    with pytest.raises(ValueError, match="all 2"):
        ev.bind()


def test_a_back_end_reaches_only_what_it_was_granted() -> None:
    table = GrantTable(4)
    ref = table.grant(7, domid=0, readonly=True)
    assert table.map(ref, 0, write=False) == 7
    with pytest.raises(GrantError, match="read-only"):
        table.map(ref, 0, write=True)
    with pytest.raises(GrantError, match="domain 0, not 1"):
        table.copy(ref, 1, write=False)
    with pytest.raises(GrantError, match="not in the table"):
        table.map(99, 0, write=False)
    with pytest.raises(GrantError, match="in use"):
        table.revoke(ref)
    assert list(table.mapped_pages()) == [7]
    table.unmap(ref)
    table.revoke(ref)
    with pytest.raises(GrantError, match="not granted"):
        table.map(ref, 0, write=False)
