"""The meter: each VM's use of every billable resource, per billing interval, in integer base units.

It reads the counters the hypervisor already keeps, at the sampler's instants (no engine event
of its own, so metering changes no result): counters by difference, gauges (memory, storage) by
holding each sample's level over the sample period that ends at it. Every quantity is an
integer, so the intervals of a resource add up exactly to its total, and CPU time is conserved:
for every interval, the VMs' CPU plus the host's hypervisor and idle time equals the interval's
length times the physical CPUs (:meth:`Interval.cpu_balance`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from vframework.api.pricing import RESOURCES

__all__ = ["Interval", "Meter", "Metered"]


class Metered(Protocol):
    """What the meter reads of a VM: its name and counters."""

    name: str
    counters: dict[str, int]


#: Counters metered by difference: resource -> the counters it adds up.
_COUNTED: dict[str, tuple[str, ...]] = {
    "cpu": ("cpu_run_ns", "cpu_irq_ns"),
    "disk_ops": ("disk_requests",),
    "disk_bytes": ("disk_bytes",),
    "net_sent": ("net_bytes_sent",),
    "net_received": ("net_bytes_received",),
}
#: Gauges metered over time: resource -> the gauge (in pages).
_HELD_PAGES: dict[str, str] = {"memory": "mem_consumed", "memory_granted": "mem_granted"}


@dataclass
class Interval:
    """One billing interval: what each VM used, and where the rest of the CPUs' time went."""

    start_ns: int
    end_ns: int
    cpus: int
    #: VM name -> resource -> base units.
    usage: dict[str, dict[str, int]] = field(default_factory=dict)
    hypervisor_ns: int = 0
    idle_ns: int = 0

    def cpu_balance(self) -> tuple[int, int]:
        """(VMs' CPU + hypervisor + idle, length x CPUs): equal for a correct meter."""
        charged = sum(u["cpu"] for u in self.usage.values())
        return charged + self.hypervisor_ns + self.idle_ns, (self.end_ns - self.start_ns) * self.cpus


class Meter:
    """Meters ``vms`` in intervals of ``interval_ns``; call :meth:`observe` at every sample.

    ``storage_bytes`` is each VM's provisioned storage by name (disks and swap), held for the
    whole run.
    """

    def __init__(self, vms: Sequence[Metered], storage_bytes: Mapping[str, int], interval_ns: int, cpus: int) -> None:
        if interval_ns <= 0:
            raise ValueError(f"the billing interval must be positive, got {interval_ns} ns")
        self.vms = list(vms)
        self.interval_ns = interval_ns
        self.cpus = cpus
        self._storage = dict(storage_bytes)
        self.intervals: list[Interval] = []
        self._last_ns = 0
        self._last_counts = {vm.name: dict.fromkeys(_COUNTED, 0) for vm in self.vms}
        self._last_host = (0, 0)
        self._open: Interval | None = None

    def _interval(self) -> Interval:
        if self._open is None:
            start = self._last_ns
            self._open = Interval(start, start, self.cpus, {vm.name: dict.fromkeys(RESOURCES, 0) for vm in self.vms})
        return self._open

    def observe(self, now: int, host: Mapping[str, int]) -> None:
        """Add the use since the previous observation (counters must be synced to ``now``).

        An interval closes when ``now`` reaches a multiple of the billing interval; the meter
        is observed at least at every such instant (the scenario makes the billing interval a
        multiple of the sample interval).
        """
        dt = now - self._last_ns
        if dt < 0:
            raise ValueError(f"the meter was observed at {now} ns, before its previous observation {self._last_ns}")
        if dt == 0 and self._open is None and now:
            return
        iv = self._interval()
        for vm in self.vms:
            use = iv.usage[vm.name]
            c = vm.counters
            last = self._last_counts[vm.name]
            for resource, names in _COUNTED.items():
                value = sum(c[n] for n in names)
                use[resource] += value - last[resource]
                last[resource] = value
            for resource, gauge in _HELD_PAGES.items():
                use[resource] += c[gauge] * dt
            use["storage"] += self._storage.get(vm.name, 0) * dt
        hyp, idle = host["hypervisor_ns"], host["idle_ns"]
        iv.hypervisor_ns += hyp - self._last_host[0]
        iv.idle_ns += idle - self._last_host[1]
        self._last_host = (hyp, idle)
        self._last_ns = iv.end_ns = now
        if now % self.interval_ns == 0 and now > iv.start_ns:
            self.intervals.append(iv)
            self._open = None

    def close(self, now: int, host: Mapping[str, int]) -> list[Interval]:
        """Observe ``now`` and close the last, possibly short, interval; returns every interval."""
        if now != self._last_ns or self._open is not None:
            self.observe(now, host)
        if self._open is not None and self._open.end_ns > self._open.start_ns:
            self.intervals.append(self._open)
        self._open = None
        return self.intervals

    def totals(self) -> dict[str, dict[str, int]]:
        """VM -> resource -> base units over every closed interval."""
        out = {vm.name: dict.fromkeys(RESOURCES, 0) for vm in self.vms}
        for iv in self.intervals:
            for name, use in iv.usage.items():
                for resource, q in use.items():
                    out[name][resource] += q
        return out
