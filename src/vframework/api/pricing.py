"""What is metered and how it is priced: the resources, their units, price sheets and ledger lines.

Every resource is metered in an integer base unit, so that quantities add up exactly: CPU in
nanoseconds of a vCPU on a physical CPU, memory in page-nanoseconds, storage in
byte-nanoseconds, operations and bytes as counts. A price is written with the unit it is quoted
in (``"0.05/vcpu-hour"``, ``"0.01/GiB-hour"``, ``"0.09/GiB"``); :func:`parse_price` turns it into
an exact rate per base unit (a :class:`~fractions.Fraction`), and money is a
:class:`~decimal.Decimal` rounded once per ledger line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from vframework.sim.units import PAGE_SIZE

__all__ = [
    "RESOURCES",
    "LedgerLine",
    "Resource",
    "as_amount",
    "decimal_of",
    "parse_price",
    "parse_quantity",
]

_NS_PER = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 10**9,
    "second": 10**9,
    "sec": 10**9,
    "min": 60 * 10**9,
    "minute": 60 * 10**9,
    "h": 3600 * 10**9,
    "hour": 3600 * 10**9,
    "hr": 3600 * 10**9,
    "day": 86400 * 10**9,
    # A billing month, as cloud providers quote storage: 30 days.
    "month": 30 * 86400 * 10**9,
}
_BYTES = {
    "b": 1,
    "byte": 1,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
    "page": PAGE_SIZE,
}
_COUNT = {"request": 1, "op": 1, "k-requests": 1000, "million-requests": 10**6, "m-requests": 10**6}


@dataclass(frozen=True)
class Resource:
    """One metered resource."""

    name: str
    #: The integer base unit its quantities are in.
    unit: str
    #: What a price is quoted per: "time" (vCPU time), "bytes-time", "bytes", "count".
    dimension: str
    description: str


RESOURCES: dict[str, Resource] = {
    r.name: r
    for r in [
        Resource(
            "cpu",
            "ns",
            "time",
            "CPU time the VM's vCPUs ran plus the time spent on its own interrupts (cpu_run_ns + cpu_irq_ns); "
            "time stolen from it for others' interrupts is not in it",
        ),
        Resource(
            "memory",
            "page-ns",
            "bytes-time",
            "memory consumed over time: private frames plus 1/n of each frame shared n ways (mem_consumed); "
            "ballooned and hypervisor-swapped pages are not resident and not billed",
        ),
        Resource(
            "memory_granted",
            "page-ns",
            "bytes-time",
            "guest-physical pages backed by a machine frame, over time (mem_granted), shared pages counted whole",
        ),
        Resource(
            "storage",
            "byte-ns",
            "bytes-time",
            "provisioned storage over time: each virtual disk's capacity and the guest's swap area",
        ),
        Resource("disk_ops", "requests", "count", "I/O requests to the VM's disk (disk_requests)"),
        Resource("disk_bytes", "bytes", "bytes", "bytes the VM's disk requests read or wrote (disk_bytes)"),
        Resource("net_sent", "bytes", "bytes", "bytes the VM's net device sent (net_bytes_sent)"),
        Resource(
            "net_received", "bytes", "bytes", "bytes delivered into the VM's receive buffers (net_bytes_received)"
        ),
    ]
}

_PRICE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*/\s*([A-Za-z][A-Za-z0-9-]*)\s*$")
_QUANTITY = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z][A-Za-z0-9-]*)\s*$")


def _unit_size(resource: Resource, unit: str) -> Fraction:
    """Base units of ``resource`` in one ``unit`` (``vcpu-hour`` -> 3.6e12 ns)."""
    u = unit.lower()
    dim = resource.dimension
    if dim == "time":
        head, _, tail = u.partition("-")
        if head in ("vcpu", "cpu") and tail in _NS_PER:
            return Fraction(_NS_PER[tail])
        examples = "vcpu-hour, vcpu-second, vcpu-ms"
    elif dim == "bytes-time":
        head, _, tail = u.partition("-")
        if head in _BYTES and tail in _NS_PER:
            per_byte = Fraction(1, PAGE_SIZE) if resource.unit.startswith("page") else Fraction(1)
            return _BYTES[head] * per_byte * _NS_PER[tail]
        examples = "GiB-hour, MiB-second, GiB-month"
    elif dim == "bytes":
        if u in _BYTES:
            return Fraction(_BYTES[u])
        examples = "GiB, MiB, byte"
    else:
        if u in _COUNT or u.rstrip("s") in _COUNT:
            return Fraction(_COUNT.get(u, _COUNT.get(u.rstrip("s"), 1)))
        examples = "request, k-requests, million-requests"
    raise ValueError(f"{unit!r} is not a unit {resource.name} can be priced in; use one of {examples}")


def parse_price(text: str, resource: str) -> Fraction:
    """The exact price per base unit of ``resource`` of a price such as ``"0.05/vcpu-hour"``."""
    res = RESOURCES.get(resource)
    if res is None:
        raise ValueError(f"unknown resource {resource!r}; known: {', '.join(RESOURCES)}")
    if not isinstance(text, str):
        raise ValueError(f"expected a price such as '0.05/vcpu-hour' (a string), got {text!r}")
    m = _PRICE.match(text)
    if not m:
        raise ValueError(f"expected a price such as '0.05/vcpu-hour' (amount/unit, amount >= 0), got {text!r}")
    return Fraction(m.group(1)) / _unit_size(res, m.group(2))


def parse_quantity(text: str, resource: str) -> int:
    """Base units of ``resource`` in a quantity such as ``"2 vcpu-hour"`` (rounded down)."""
    res = RESOURCES.get(resource)
    if res is None:
        raise ValueError(f"unknown resource {resource!r}; known: {', '.join(RESOURCES)}")
    m = _QUANTITY.match(str(text))
    if not m:
        raise ValueError(f"expected a quantity such as '2 vcpu-hour' or '100 GiB-hour', got {text!r}")
    return int(Fraction(m.group(1)) * _unit_size(res, m.group(2)))


def decimal_of(value: Fraction, places: int) -> Decimal:
    """``value`` rounded half-even to ``places`` decimal places, exactly (no float on the way)."""
    scale = 10**places
    n, rem = divmod(value.numerator * scale, value.denominator)
    twice = 2 * rem
    if twice > value.denominator or (twice == value.denominator and n % 2):
        n += 1
    return Decimal(n).scaleb(-places)


def as_amount(value: object, what: str) -> Fraction:
    """A pricing component's amount, exactly, as a Fraction: it must be a finite, non-negative
    Decimal, int or Fraction (ValueError naming ``what`` otherwise; never a float, which would
    bring binary rounding into money)."""
    if isinstance(value, bool) or not isinstance(value, (Decimal, int, Fraction)):
        raise ValueError(f"{what} must be a Decimal, int or Fraction, got {type(value).__name__} {value!r}")
    if isinstance(value, Decimal) and not value.is_finite():
        raise ValueError(f"{what} must be finite, got {value!r}")
    amount = Fraction(value)
    if amount < 0:
        raise ValueError(f"{what} must be >= 0, got {value!r}")
    return amount


@dataclass(frozen=True)
class LedgerLine:
    """One VM's use of one resource over one billing interval, as a pricing component sees it."""

    vm: str
    resource: str
    #: The interval, in simulated ns: [start, end).
    start_ns: int
    end_ns: int
    #: Base units used in the interval (``RESOURCES[resource].unit``).
    quantity: int
    #: Base units this VM used of the resource in earlier intervals (for tiers and reservations).
    used_before: int
    #: The price sheet's rate per base unit (0 when the sheet does not price the resource).
    rate: Fraction

    @property
    def unit(self) -> str:
        return RESOURCES[self.resource].unit

    @property
    def list_amount(self) -> Fraction:
        """Quantity x rate, exactly."""
        return self.quantity * self.rate
