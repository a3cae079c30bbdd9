"""Standard pricing for vframework's ledger: ``flat`` (the price sheet as it stands), ``tiered``
(a lower price beyond a per-VM volume) and ``reserved`` (capacity paid for up front at a discount,
on-demand price beyond it)."""

from vframework.api import hookimpl

from .flat import FlatPricing
from .reserved import ReservedPricing
from .tiered import TieredPricing

__all__ = ["FlatPricing", "ReservedPricing", "TieredPricing"]


@hookimpl
def register_billing() -> list[type]:
    return [FlatPricing, TieredPricing, ReservedPricing]
