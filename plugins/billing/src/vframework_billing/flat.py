"""``flat``: every unit at the price sheet's rate."""

from __future__ import annotations

from fractions import Fraction

from vframework.api import Billing, LedgerLine, Params


class FlatPricing(Billing[Params]):
    """Quantity x the price sheet's rate, for every line (on-demand list price)."""

    name = "flat"
    description = "the price sheet's rate for every unit (on-demand list price)"

    def charge(self, line: LedgerLine) -> Fraction:
        return line.list_amount
