"""Grant tables: how a guest lets another domain reach one of its pages, and nothing else.

A guest that wants a back end to read or write a buffer *grants* each page of it: an entry
(a *grant reference*) names the page (a guest-physical page number, PPN), the domain allowed
to use it, and whether it may write. The back end then *maps* the reference (or copies through
it) by reference, never by address: the table checks the domain and the access, so a back
end, however confused, can reach only pages granted to it, and can write only pages granted
writable. A mapped entry is *in use*: its page is pinned (it must stay where the device's DMA
expects it), and the guest cannot revoke the grant until the back end unmaps it (Xen's
``gnttab_end_foreign_access`` fails while the entry is in use).

Entries live in numpy arrays (one row per reference); a table is small (Xen's default holds a
few thousand entries), sized for the requests a guest keeps in flight.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from vframework.errors import GrantError

__all__ = ["GrantError", "GrantTable"]

_PERMIT, _READONLY = 1, 2


class GrantTable:
    """One guest's grant table: reference -> (PPN, allowed domain, read-only, mappings)."""

    def __init__(self, entries: int = 1024) -> None:
        if entries < 1:
            raise ValueError(f"a grant table needs at least one entry, not {entries}")
        self.entries = entries
        self.frame = np.full(entries, -1, dtype=np.int64)
        self.domid = np.zeros(entries, dtype=np.int32)
        self.flags = np.zeros(entries, dtype=np.uint8)
        #: How many times each entry is mapped now (in use while > 0).
        self.maps = np.zeros(entries, dtype=np.int32)
        # Lowest references handed out first, as a guest's grant allocator does.
        self._free = list(range(entries - 1, -1, -1))
        #: Grant copies made through the table (each a validated one-page access).
        self.copies = 0

    def __len__(self) -> int:
        """Active entries."""
        return self.entries - len(self._free)

    def grant(self, ppn: int, domid: int, readonly: bool) -> int:
        """The guest grants page ``ppn`` to domain ``domid``; returns the reference."""
        if ppn < 0:
            raise GrantError(f"cannot grant page {ppn}")
        if not self._free:
            raise GrantError(f"the grant table is full ({self.entries} entries)")
        ref = self._free.pop()
        self.frame[ref] = ppn
        self.domid[ref] = domid
        self.flags[ref] = _PERMIT | (_READONLY if readonly else 0)
        return ref

    def _entry(self, ref: object, domid: int, write: bool) -> int:
        if not isinstance(ref, (int, np.integer)) or not 0 <= int(ref) < self.entries:
            raise GrantError(f"grant reference {ref!r} is not in the table (0..{self.entries - 1})")
        ref = int(ref)
        flags = int(self.flags[ref])
        if not flags & _PERMIT:
            raise GrantError(f"grant reference {ref} is not granted")
        if int(self.domid[ref]) != domid:
            raise GrantError(f"grant reference {ref} is granted to domain {int(self.domid[ref])}, not {domid}")
        if write and flags & _READONLY:
            raise GrantError(f"grant reference {ref} is read-only")
        return ref

    def map(self, ref: object, domid: int, write: bool) -> int:
        """Domain ``domid`` maps the entry (for writing if ``write``); returns its PPN. The page
        stays pinned until :meth:`unmap`. Raises :class:`GrantError` if not allowed."""
        entry = self._entry(ref, domid, write)
        self.maps[entry] += 1
        return int(self.frame[entry])

    def unmap(self, ref: int) -> None:
        if not 0 <= ref < self.entries or self.maps[ref] <= 0:
            raise GrantError(f"grant reference {ref} is not mapped")
        self.maps[ref] -= 1

    def copy(self, ref: object, domid: int, write: bool) -> int:
        """A grant copy: domain ``domid`` reads (or writes) the page once without mapping it;
        returns its PPN. Checked as :meth:`map` is."""
        entry = self._entry(ref, domid, write)
        self.copies += 1
        return int(self.frame[entry])

    def in_use(self, ref: int) -> bool:
        return bool(self.maps[ref] > 0)

    def revoke(self, ref: int) -> None:
        """The guest ends the grant; raises :class:`GrantError` while the entry is mapped."""
        if not 0 <= ref < self.entries or not self.flags[ref] & _PERMIT:
            raise GrantError(f"grant reference {ref} is not granted")
        if self.maps[ref] > 0:
            raise GrantError(f"grant reference {ref} is in use (mapped {int(self.maps[ref])} times)")
        self.flags[ref] = 0
        self.frame[ref] = -1
        self._free.append(ref)

    def mapped_pages(self) -> npt.NDArray[np.int64]:
        """PPNs of every entry in use (pinned)."""
        return self.frame[self.maps > 0]
