"""Billing: the meter's intervals priced by the scenario's pricing component, into a ledger and invoices.

Quantities are the meter's integers; each amount is the pricing component's answer rounded
half-even once to ``billing.decimals`` places, and every total (per VM and resource, per VM,
for the host) is the exact sum of rounded ledger amounts, in :class:`~decimal.Decimal`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

from vframework.api.contract import Billing
from vframework.api.params import Params
from vframework.api.pricing import RESOURCES, LedgerLine, as_amount, decimal_of, parse_price
from vframework.errors import PluginError
from vframework.hv.meter import Interval
from vframework.run.scenario import BillingConfig

__all__ = ["LEDGER_COLUMNS", "Bill", "bill"]

#: Columns of ledger.csv: one row per interval x VM x resource.
LEDGER_COLUMNS = ("interval_start_ns", "interval_end_ns", "vm", "resource", "quantity", "unit", "price", "amount")


def money(value: Decimal) -> str:
    """A Decimal as plain text (never exponent notation)."""
    return format(value, "f")


@dataclass
class Bill:
    """A priced run: the ledger, and what it adds up to."""

    currency: str
    decimals: int
    interval_ns: int
    pricing: str
    prices: dict[str, str]
    ledger: list[tuple[int, int, str, str, int, str, str, str]] = field(default_factory=list)
    #: VM -> resource -> (quantity, amount) over the whole run.
    totals: dict[str, dict[str, tuple[int, Decimal]]] = field(default_factory=dict)

    def vm_total(self, vm: str) -> Decimal:
        return sum((a for _, a in self.totals[vm].values()), Decimal(0))

    def total(self) -> Decimal:
        return sum((self.vm_total(vm) for vm in self.totals), Decimal(0))

    def summary(self) -> dict[str, Any]:
        """The ``billing`` section of summary.json: ``bill_<resource>`` amounts and metered
        quantities per VM, and the host's total (amounts as decimal strings)."""
        vms: dict[str, Any] = {}
        for vm, per in self.totals.items():
            row: dict[str, Any] = {f"bill_{r}": money(a) for r, (_, a) in per.items()}
            row["bill_total"] = money(self.vm_total(vm))
            row["metered"] = {r: q for r, (q, _) in per.items()}
            vms[vm] = row
        return {
            "currency": self.currency,
            "interval_ns": self.interval_ns,
            "pricing": self.pricing,
            "prices": dict(self.prices),
            "units": {r: res.unit for r, res in RESOURCES.items()},
            "vms": vms,
            "bill_total": money(self.total()),
        }

    def invoices(self) -> dict[str, Any]:
        """invoice.json: one invoice per VM, a line per resource, and the grand total."""
        out: dict[str, Any] = {}
        for vm, per in self.totals.items():
            out[vm] = {
                "lines": [
                    {
                        "resource": r,
                        "quantity": q,
                        "unit": RESOURCES[r].unit,
                        "price": self.prices.get(r, ""),
                        "amount": money(a),
                    }
                    for r, (q, a) in per.items()
                ],
                "total": money(self.vm_total(vm)),
            }
        return {
            "currency": self.currency,
            "pricing": self.pricing,
            "interval_ns": self.interval_ns,
            "vms": out,
            "total": money(self.total()),
        }


def bill(
    intervals: Sequence[Interval],
    vms: Sequence[str],
    config: BillingConfig,
    pricing: Billing[Params],
    interval_ns: int,
    provider: str = "",
) -> Bill:
    """Price every interval x VM x resource with ``pricing``; a pricing that raises or returns
    nonsense is a :class:`PluginError` naming it, the method and the line."""
    rates = {r: parse_price(config.prices[r], r) if r in config.prices else Fraction(0) for r in RESOURCES}
    out = Bill(config.currency, config.decimals, interval_ns, pricing.name, dict(config.prices))
    used = {vm: dict.fromkeys(RESOURCES, 0) for vm in vms}
    quantities = {vm: dict.fromkeys(RESOURCES, 0) for vm in vms}
    amounts = {vm: dict.fromkeys(RESOURCES, Decimal(0)) for vm in vms}
    who = f"pricing {pricing.name!r}" + (f" of plugin {provider!r}" if provider else "")
    for iv in intervals:
        for vm in vms:
            use = iv.usage[vm]
            for r in RESOURCES:
                q = use[r]
                line = LedgerLine(vm, r, iv.start_ns, iv.end_ns, q, used[vm][r], rates[r])
                where = f"{r} of VM {vm!r} in [{iv.start_ns}, {iv.end_ns}) ns"
                try:
                    raw = pricing.charge(line)
                except Exception as exc:
                    raise PluginError(f"{who} raised in charge() for {where}: {type(exc).__name__}: {exc}") from exc
                try:
                    amount = decimal_of(as_amount(raw, "the amount"), config.decimals)
                except ValueError as exc:
                    raise PluginError(f"{who} returned nonsense from charge() for {where}: {exc}") from None
                used[vm][r] += q
                quantities[vm][r] += q
                amounts[vm][r] += amount
                out.ledger.append(
                    (iv.start_ns, iv.end_ns, vm, r, q, RESOURCES[r].unit, config.prices.get(r, ""), money(amount))
                )
    out.totals = {vm: {r: (quantities[vm][r], amounts[vm][r]) for r in RESOURCES} for vm in vms}
    return out
