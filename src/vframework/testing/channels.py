"""State machines for event channels and grant tables (:mod:`vframework.io.events`,
:mod:`vframework.io.grants`).

:class:`EventChannelMachine` binds, notifies, masks and unmasks ports and runs the guest's
upcall handler at random, against a model of what a guest must see:

* an upcall is raised exactly when a port becomes pending-and-unmasked while no upcall is
  pending; the handler takes exactly the pending unmasked ports;
* a notification is delivered **at most once**, never while its port is masked, and a pending
  event survives masking and is delivered once after unmask;
* ``delivered <= sent``, and every notify the guest has not seen is still pending.

:class:`GrantTableMachine` grants pages to domains (read-only or writable), has a back end map,
unmap and copy through references (honest and hostile: wrong domain, ungranted or out-of-range
references, writes to read-only grants) and has the guest revoke grants. It checks that a back
end **reaches only pages granted to it, with the access granted**, that an entry in use can
never be revoked, and that the table's pinned pages are exactly the mapped entries' pages.

Parametrize with ``for_table(cls)`` to check another implementation with the same interface.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from vframework.io.events import EventChannels
from vframework.io.grants import GrantError, GrantTable

__all__ = ["EventChannelMachine", "GrantTableMachine"]

_PORTS = 8
_PAGES = 32
_DOMAINS = 3


class EventChannelMachine(RuleBasedStateMachine):
    """One VM's event channels, driven by back ends and its own upcall handler."""

    channels_cls: type[EventChannels] = EventChannels

    @classmethod
    def for_table(cls, channels_cls: type[EventChannels]) -> type[EventChannelMachine]:
        return type(f"EventChannelMachine[{channels_cls.__name__}]", (cls,), {"channels_cls": channels_cls})

    @initialize()
    def make(self) -> None:
        self.ev = self.channels_cls(_PORTS)
        self.bound: set[int] = set()
        self.pending: set[int] = set()
        self.masked: set[int] = set()
        self.upcall = False
        self.unseen: Counter[int] = Counter()  # notifies per port not yet seen by the guest
        self.sent = self.delivered = 0

    @precondition(lambda self: len(self.bound) < _PORTS)
    @rule()
    def bind(self) -> None:
        port = self.ev.bind()
        assert port not in self.bound, f"port {port} was bound twice"
        assert not self.ev.pending(port), f"port {port} came bound with an event pending"
        assert not self.ev.masked(port), f"port {port} came bound masked"
        self.bound.add(port)

    @precondition(lambda self: len(self.bound) == _PORTS)
    @rule()
    def bind_when_full_fails(self) -> None:
        try:
            self.ev.bind()
        except ValueError:
            return
        raise AssertionError(f"a {_PORTS}-port table bound a port with all of them in use")

    @precondition(lambda self: bool(self.bound))
    @rule(data=st.data())
    def notify(self, data: st.DataObject) -> None:
        port = data.draw(st.sampled_from(sorted(self.bound)))
        raised = self.ev.notify(port)
        self.sent += 1
        self.unseen[port] += 1
        expect = port not in self.pending and port not in self.masked and not self.upcall
        assert raised == expect, f"notify on port {port} raised an upcall: {raised}, expected {expect}"
        self.pending.add(port)
        self.upcall |= raised

    @rule(port=st.integers(-2, _PORTS + 1))
    def notify_unbound_fails(self, port: int) -> None:
        if port in self.bound:
            return
        try:
            self.ev.notify(port)
        except ValueError:
            return
        raise AssertionError(f"notify on unbound port {port} was accepted")

    @precondition(lambda self: bool(self.bound))
    @rule(data=st.data())
    def mask(self, data: st.DataObject) -> None:
        port = data.draw(st.sampled_from(sorted(self.bound)))
        self.ev.mask(port)
        self.masked.add(port)

    @precondition(lambda self: bool(self.masked))
    @rule(data=st.data())
    def unmask(self, data: st.DataObject) -> None:
        port = data.draw(st.sampled_from(sorted(self.masked)))
        raised = self.ev.unmask(port)
        self.masked.discard(port)
        expect = port in self.pending and not self.upcall
        assert raised == expect, f"unmask of port {port} raised an upcall: {raised}, expected {expect}"
        self.upcall |= raised

    @rule()
    def upcall_handler(self) -> None:
        taken = self.ev.take()
        expect = sorted(self.pending - self.masked)
        assert taken == expect, f"the handler took ports {taken}, pending and unmasked were {expect}"
        for port in taken:
            self.pending.discard(port)
            self.unseen[port] = 0
        self.delivered += len(taken)
        self.upcall = False

    @precondition(lambda self: bool(self.bound))
    @rule(data=st.data())
    def close(self, data: st.DataObject) -> None:
        port = data.draw(st.sampled_from(sorted(self.bound)))
        self.ev.close(port)
        self.bound.discard(port)
        self.pending.discard(port)
        self.masked.discard(port)
        self.sent -= self.unseen.pop(port, 0)  # dropped with the port: never to be delivered

    @invariant()
    def state_matches(self) -> None:
        for port in self.bound:
            assert self.ev.pending(port) == (port in self.pending), f"port {port}: pending bit wrong"
            assert self.ev.masked(port) == (port in self.masked), f"port {port}: mask bit wrong"
        assert self.ev.upcall_pending == self.upcall, "the upcall-pending flag is wrong"

    @invariant()
    def delivered_at_most_once(self) -> None:
        assert self.ev.delivered == self.delivered, f"delivered {self.ev.delivered}, the guest took {self.delivered}"
        assert self.delivered <= self.sent, f"{self.delivered} events delivered of {self.sent} sent"
        for port, count in self.unseen.items():
            if count:
                assert port in self.pending, f"{count} notifies on port {port} are neither pending nor delivered"


class GrantTableMachine(RuleBasedStateMachine):
    """A guest's grant table, used by honest and hostile back ends."""

    table_cls: type[GrantTable] = GrantTable

    @classmethod
    def for_table(cls, table_cls: type[GrantTable]) -> type[GrantTableMachine]:
        return type(f"GrantTableMachine[{table_cls.__name__}]", (cls,), {"table_cls": table_cls})

    @initialize(entries=st.integers(1, 16))
    def make(self, entries: int) -> None:
        self.table = self.table_cls(entries)
        self.entries = entries
        self.grants: dict[int, tuple[int, int, bool]] = {}  # ref -> (ppn, domid, readonly)
        self.maps: Counter[int] = Counter()

    @precondition(lambda self: len(self.grants) < self.entries)
    @rule(ppn=st.integers(0, _PAGES - 1), domid=st.integers(0, _DOMAINS - 1), readonly=st.booleans())
    def grant(self, ppn: int, domid: int, readonly: bool) -> None:
        ref = self.table.grant(ppn, domid, readonly)
        assert ref not in self.grants, f"reference {ref} handed out twice"
        assert 0 <= ref < self.entries, f"reference {ref} outside a {self.entries}-entry table"
        self.grants[ref] = (ppn, domid, readonly)

    @precondition(lambda self: len(self.grants) == self.entries)
    @rule(ppn=st.integers(0, _PAGES - 1))
    def grant_when_full_fails(self, ppn: int) -> None:
        try:
            self.table.grant(ppn, 0, False)
        except GrantError:
            return
        raise AssertionError("a full grant table granted another entry")

    def _allowed(self, ref: object, domid: int, write: bool) -> int | None:
        if not isinstance(ref, int) or ref not in self.grants:
            return None
        ppn, owner, readonly = self.grants[ref]
        return ppn if owner == domid and not (write and readonly) else None

    @rule(
        ref=st.integers(-2, 18) | st.none() | st.just("garbage"),
        domid=st.integers(0, _DOMAINS - 1),
        write=st.booleans(),
    )
    def back_end_maps(self, ref: object, domid: int, write: bool) -> None:
        """Any back end tries any reference: only a granted one, to it, with the access, works."""
        allowed = self._allowed(ref, domid, write)
        try:
            ppn = self.table.map(ref, domid, write)
        except GrantError:
            assert allowed is None, f"map of reference {ref} by domain {domid} (write={write}) was refused"
            return
        assert allowed is not None, f"domain {domid} mapped reference {ref!r} (write={write}) without a grant for it"
        assert ppn == allowed, f"reference {ref} maps page {ppn}, granted page {allowed}"
        assert isinstance(ref, int)
        self.maps[ref] += 1

    @rule(ref=st.integers(-2, 18), domid=st.integers(0, _DOMAINS - 1), write=st.booleans())
    def back_end_copies(self, ref: int, domid: int, write: bool) -> None:
        allowed = self._allowed(ref, domid, write)
        try:
            ppn = self.table.copy(ref, domid, write)
        except GrantError:
            assert allowed is None, f"copy through reference {ref} by domain {domid} was refused"
            return
        assert ppn == allowed, f"domain {domid} copied page {ppn} through reference {ref}, allowed {allowed}"

    @precondition(lambda self: bool(+self.maps))
    @rule(data=st.data())
    def back_end_unmaps(self, data: st.DataObject) -> None:
        ref = data.draw(st.sampled_from(sorted(+self.maps)))
        self.table.unmap(ref)
        self.maps[ref] -= 1

    @precondition(lambda self: bool(self.grants))
    @rule(data=st.data())
    def guest_revokes(self, data: st.DataObject) -> None:
        ref = data.draw(st.sampled_from(sorted(self.grants)))
        try:
            self.table.revoke(ref)
        except GrantError:
            assert self.maps[ref] > 0, f"revoking reference {ref}, not in use, failed"
            return
        assert self.maps[ref] == 0, f"reference {ref} was revoked while mapped {self.maps[ref]} times"
        del self.grants[ref]

    @invariant()
    def pinned_pages_are_the_mapped_ones(self) -> None:
        expect = sorted(self.grants[ref][0] for ref in +self.maps)
        got = sorted(int(p) for p in self.table.mapped_pages())
        assert got == expect, f"pinned pages {got}, mapped entries hold {expect}"
        assert len(self.table) == len(self.grants), f"{len(self.table)} active entries, {len(self.grants)} granted"
