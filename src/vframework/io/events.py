"""Event channels: Xen's virtual interrupts, with per-port pending and mask bits.

A VM has a small table of *ports*. A back end (or the hypervisor) *notifies* a port: the port's
pending bit is set, and if the port is not masked and the VM has no upcall pending yet, the VM
gets an *upcall* (one virtual interrupt). The guest's upcall handler takes every pending,
unmasked port at once and clears their bits. So notifications coalesce in two places:

* a notify on a port that is already pending changes nothing (the event is counted as sent,
  but the guest will see it once);
* a notify while an upcall is already pending raises no second upcall; the handler, when it
  runs, finds both ports.

A masked port keeps its pending bit: unmasking it delivers the event once (Xen's
``evtchn_unmask`` re-raises the upcall if the port is pending). ``sent`` counts notifies and
``delivered`` counts ports the handler took, so ``sent - delivered`` is what coalescing saved.
"""

from __future__ import annotations

__all__ = ["EventChannels"]


class EventChannels:
    """One VM's event-channel ports (Xen's two-level ABI, without the selector word)."""

    def __init__(self, ports: int = 64) -> None:
        if ports < 1:
            raise ValueError(f"an event-channel table needs at least one port, not {ports}")
        self.ports = ports
        self._bound = [False] * ports
        self._pending = [False] * ports
        self._masked = [False] * ports
        #: The VM has been sent an upcall its handler has not run for yet.
        self.upcall_pending = False
        #: Notifications made on bound ports.
        self.sent = 0
        #: Pending events the guest's handler took (at most one per notify, fewer when they coalesce).
        self.delivered = 0

    def _check(self, port: int) -> None:
        if not (0 <= port < self.ports) or not self._bound[port]:
            raise ValueError(f"event-channel port {port} is not bound (ports 0..{self.ports - 1})")

    def bind(self) -> int:
        """Allocate a free port (unmasked, not pending); raises ValueError when all are in use."""
        for port, used in enumerate(self._bound):
            if not used:
                self._bound[port] = True
                self._pending[port] = self._masked[port] = False
                return port
        raise ValueError(f"all {self.ports} event-channel ports are bound")

    def close(self, port: int) -> None:
        """Free a port; an event still pending on it is dropped."""
        self._check(port)
        self._bound[port] = self._pending[port] = self._masked[port] = False

    def bound(self, port: int) -> bool:
        return 0 <= port < self.ports and self._bound[port]

    def pending(self, port: int) -> bool:
        self._check(port)
        return self._pending[port]

    def masked(self, port: int) -> bool:
        self._check(port)
        return self._masked[port]

    def notify(self, port: int) -> bool:
        """Send an event on ``port``. Returns True when the VM must get an upcall now: the port
        was not pending, is not masked, and no upcall is already on its way."""
        self._check(port)
        self.sent += 1
        if self._pending[port]:
            return False
        self._pending[port] = True
        return self._raise(port)

    def mask(self, port: int) -> None:
        self._check(port)
        self._masked[port] = True

    def unmask(self, port: int) -> bool:
        """Unmask ``port``. Returns True when the VM must get an upcall now (the port has an
        event pending that no upcall covers)."""
        self._check(port)
        self._masked[port] = False
        return self._pending[port] and self._raise(port)

    def _raise(self, port: int) -> bool:
        if self._masked[port] or self.upcall_pending:
            return False
        self.upcall_pending = True
        return True

    def take(self) -> list[int]:
        """The guest's upcall handler: clear the upcall, take every pending unmasked port (in
        port order) and clear its pending bit. Masked ports stay pending."""
        self.upcall_pending = False
        ports = [p for p in range(self.ports) if self._pending[p] and not self._masked[p]]
        for port in ports:
            self._pending[port] = False
        self.delivered += len(ports)
        return ports
