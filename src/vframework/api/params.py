"""Parameter models: the base every component's parameters derive from, and the typed units
(sizes, durations) a scenario writes as text (``"4GiB"``, ``"30ms"``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict

from vframework.sim.units import parse_duration, parse_size

__all__ = ["Duration", "Params", "Size", "positive"]


class Params(BaseModel):
    """Base of every component's parameter model: unknown keys are errors, values are typed."""

    model_config = ConfigDict(extra="forbid", frozen=True)


_T = TypeVar("_T")


def positive(parse: Callable[[_T], int], what: str) -> Callable[[_T], int]:
    """A validator: ``parse`` the value, which must then be positive."""

    def check(value: _T) -> int:
        n = parse(value)
        if n <= 0:
            raise ValueError(f"must be a positive {what}, got {value!r}")
        return n

    # The docs' scenario reference shows the field's type as "size" or "duration".
    check.vf_unit = what  # type: ignore[attr-defined]
    return check


#: Bytes, from "4GiB"-style text; must be positive.
Size = Annotated[int, BeforeValidator(positive(parse_size, "size"))]
#: Nanoseconds, from "30ms"-style text; must be positive.
Duration = Annotated[int, BeforeValidator(positive(parse_duration, "duration"))]
