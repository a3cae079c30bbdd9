"""``tiered``: volume pricing. Each VM pays the sheet's rate up to a threshold of a resource, and
a fraction of it beyond, counted over the whole run (as providers' sustained-use discounts do)."""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated

from pydantic import BeforeValidator, Field, field_validator

from vframework.api import RESOURCES, Billing, LedgerLine, Params, parse_quantity


def fraction_0_1(value: object) -> Fraction:
    """A factor between 0 and 1, exactly (0.8 is 4/5, not the float nearest it)."""
    if isinstance(value, Fraction):
        f = value
    elif isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected a number such as 0.8, got {value!r}")
    else:
        f = Fraction(str(value))
    if not 0 <= f <= 1:
        raise ValueError(f"must be between 0 and 1, got {value!r}")
    return f


class Tier(Params):
    """Beyond ``above`` of ``resource`` (per VM, over the run), the rate is multiplied by ``factor``."""

    resource: str = Field(description="the resource the tier applies to (cpu, memory, storage...)")
    above: str = Field(description="the volume after which the tier starts, with its unit: '1 vcpu-hour'")
    factor: Annotated[Fraction, BeforeValidator(fraction_0_1)] = Field(
        description="the fraction of the sheet's rate charged beyond `above` (0 to 1)"
    )

    @field_validator("resource")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in RESOURCES:
            raise ValueError(f"unknown resource {value!r}; known: {', '.join(RESOURCES)}")
        return value

    @property
    def threshold(self) -> int:
        return parse_quantity(self.above, self.resource)


class TieredParams(Params):
    tiers: list[Tier] = Field(default_factory=list, description="one tier per resource at most")

    @field_validator("tiers")
    @classmethod
    def _one_per_resource(cls, tiers: list[Tier]) -> list[Tier]:
        seen = set()
        for t in tiers:
            if t.resource in seen:
                raise ValueError(f"two tiers for {t.resource!r}; give one per resource")
            seen.add(t.resource)
            t.threshold  # noqa: B018 - parse the quantity now, so a bad unit is a scenario error
        return tiers


class TieredPricing(Billing[TieredParams]):
    """The sheet's rate up to each tier's threshold, ``factor`` x the rate beyond it."""

    name = "tiered"
    description = "volume discount: the sheet's rate up to a per-VM threshold, a fraction of it beyond"
    params_model = TieredParams

    @classmethod
    def kit_params(cls) -> TieredParams:
        return TieredParams.model_validate(
            {
                "tiers": [
                    {"resource": "cpu", "above": "1 vcpu-us", "factor": 0.5},
                    {"resource": "memory", "above": "1 page-ns", "factor": 0},
                ]
            }
        )

    def __init__(self, params: TieredParams) -> None:
        super().__init__(params)
        self._tiers = {t.resource: (t.threshold, t.factor) for t in params.tiers}

    def charge(self, line: LedgerLine) -> Fraction:
        tier = self._tiers.get(line.resource)
        if tier is None:
            return line.list_amount
        threshold, factor = tier
        below = max(0, min(line.quantity, threshold - line.used_before))
        return line.rate * (below + factor * (line.quantity - below))
