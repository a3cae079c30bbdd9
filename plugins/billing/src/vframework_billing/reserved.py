"""``reserved``: reserved capacity against on-demand use. A VM named in ``reservations`` pays
for its reserved vCPUs and memory for every interval, used or not, at a discount; what it uses
beyond the reservation in an interval is billed on demand at the sheet's rate."""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated

from pydantic import BeforeValidator, Field

from vframework.api import PAGE_SIZE, Billing, LedgerLine, Params, parse_size

from .tiered import fraction_0_1


class Reservation(Params):
    vcpus: int = Field(0, ge=0, le=1024, description="vCPUs reserved (CPU time paid for every interval)")
    memory: Annotated[int, BeforeValidator(parse_size)] = Field(
        0, ge=0, description="memory reserved ('2GiB'), paid for every interval"
    )


class ReservedParams(Params):
    reservations: dict[str, Reservation] = Field(
        default_factory=dict, description="VM name -> what it reserves; other VMs pay on demand"
    )
    factor: Annotated[Fraction, BeforeValidator(fraction_0_1)] = Field(
        Fraction(6, 10), description="the fraction of the sheet's rate a reserved unit costs (0 to 1)"
    )


class ReservedPricing(Billing[ReservedParams]):
    """Reserved CPU and memory at ``factor`` x the rate whether used or not; the excess on demand."""

    name = "reserved"
    description = "reserved vCPUs and memory paid every interval at a discount, use beyond them on demand"
    params_model = ReservedParams

    @classmethod
    def kit_params(cls) -> ReservedParams:
        return ReservedParams.model_validate({"reservations": {"vm0": {"vcpus": 1, "memory": "1GiB"}}, "factor": 0.5})

    def charge(self, line: LedgerLine) -> Fraction:
        r = self.params.reservations.get(line.vm)
        length = line.end_ns - line.start_ns
        if r is None or line.resource not in ("cpu", "memory"):
            return line.list_amount
        # cpu is in vCPU-ns, memory in page-ns: the reservation over this interval, in the same unit.
        reserved = r.vcpus * length if line.resource == "cpu" else -(-r.memory // PAGE_SIZE) * length
        excess = max(0, line.quantity - reserved)
        return line.rate * (self.params.factor * reserved + excess)
