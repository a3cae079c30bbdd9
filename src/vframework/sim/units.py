"""Sizes and durations with units, as scenario files write them ("4GiB", "30ms")."""

from __future__ import annotations

import math
import re
import warnings
from fractions import Fraction

from vframework.errors import DecimalUnitWarning

__all__ = ["PAGE_SIZE", "DecimalUnitWarning", "format_duration", "format_size", "parse_duration", "parse_size"]

#: Bytes in one page (and one frame): 4 KiB, the x86 base page.
PAGE_SIZE = 4096

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
    "page": PAGE_SIZE,
    "pages": PAGE_SIZE,
}
_TIME_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "min": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_NUMBER = re.compile(r"^\s*(-?[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Zµ]*)\s*$")


def _parse(text: str | int | float, units: dict[str, int], what: str, example: str) -> int:
    if isinstance(text, bool):
        raise ValueError(f"expected a {what} such as {example!r}, got a boolean")
    # Exact rational arithmetic: "4.1ms" is exactly 4,100,000 ns, and integers beyond 2**53
    # must not be rounded through a float.
    value: Fraction
    if isinstance(text, int):
        value, unit = Fraction(text), ""
    elif isinstance(text, float):
        if not math.isfinite(text):
            raise ValueError(f"expected a {what} such as {example!r}, got {text!r}")
        value, unit = Fraction(repr(text)), ""
    else:
        m = _NUMBER.match(str(text))
        if not m:
            raise ValueError(f"expected a {what} such as {example!r}, got {text!r}")
        value, unit = Fraction(m.group(1)), m.group(2)
    key = unit if unit in units else unit.lower()
    if key not in units:
        raise ValueError(
            f"unknown unit {unit!r} in {text!r}; expected one of {', '.join(sorted(k for k in units if k))}"
        )
    result = value * units[key]
    if result.denominator != 1:
        raise ValueError(f"{text!r} is not a whole number of {'bytes' if what == 'size' else 'ns'}")
    return int(result)


#: Decimal size units (powers of 1000): accepted, with a :class:`DecimalUnitWarning`.
_DECIMAL = {"k": "KiB", "kb": "KiB", "m": "MiB", "mb": "MiB", "g": "GiB", "gb": "GiB", "t": "TiB", "tb": "TiB"}


def parse_size(text: str | int) -> int:
    """Bytes in a size such as ``"4GiB"``, ``"512MiB"``, ``"100pages"`` or a bare integer.

    Decimal units ("4GB", "512MB") mean powers of 1000, as the SI defines them; they are
    accepted with a :class:`DecimalUnitWarning` suggesting the binary unit."""
    n = _parse(text, _SIZE_UNITS, "size", "4GiB")
    if isinstance(text, str):
        m = _NUMBER.match(text)
        unit = m.group(2).lower() if m else ""
        if unit in _DECIMAL:
            binary = f"{m.group(1) if m else text}{_DECIMAL[unit]}"
            try:
                meant = f" for {_parse(binary, _SIZE_UNITS, 'size', '4GiB'):,} bytes"
            except ValueError:  # "4.1GiB" is no whole number of bytes
                meant = ""
            warnings.warn(
                f"size {text!r} is decimal ({n:,} bytes); write {binary!r}{meant}",
                DecimalUnitWarning,
                stacklevel=2,
            )
    return n


def parse_duration(text: str | int) -> int:
    """Nanoseconds in a duration such as ``"30ms"``, ``"10s"`` or a bare integer (ns)."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        text = f"{text}ns"
    return _parse(text, _TIME_UNITS, "duration", "30ms")


def format_size(nbytes: int) -> str:
    """The shortest exact binary-unit spelling of a byte count."""
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if nbytes and nbytes % factor == 0:
            return f"{nbytes // factor}{unit}"
    return f"{nbytes}B"


def format_duration(ns: int) -> str:
    """The shortest exact spelling of a duration in ns."""
    for unit, factor in (("s", 10**9), ("ms", 10**6), ("us", 10**3)):
        if ns and ns % factor == 0:
            return f"{ns // factor}{unit}"
    return f"{ns}ns"
