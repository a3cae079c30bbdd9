"""Sizes and durations as scenario files write them: ``"4GiB"``, ``"30ms"``."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vframework.errors import DecimalUnitWarning
from vframework.sim.units import PAGE_SIZE, format_duration, format_size, parse_duration, parse_size

KiB, MiB, GiB, TiB = 1024, 1024**2, 1024**3, 1024**4


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4GiB", 4 * GiB),
        ("512MiB", 512 * MiB),
        ("1KiB", KiB),
        ("2TiB", 2 * TiB),
        ("4gib", 4 * GiB),
        (" 4 GiB ", 4 * GiB),
        ("1.5KiB", 1536),
        ("0.5MiB", 512 * KiB),
        (".5KiB", 512),
        ("1kb", 1000),
        ("1k", 1000),
        ("1MB", 10**6),
        ("3GB", 3 * 10**9),
        ("1TB", 10**12),
        ("7B", 7),
        ("7b", 7),
        ("100pages", 100 * PAGE_SIZE),
        ("1page", PAGE_SIZE),
        ("4096", 4096),
        ("0", 0),
        (4096, 4096),
        (0, 0),
    ],
)
def test_parse_size(text: str | int, expected: int) -> None:
    value = parse_size(text)
    assert value == expected
    assert type(value) is int


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", ["4GiB"]),
        ("GiB", ["4GiB"]),
        ("four GiB", ["4GiB"]),
        ("4 GiB GiB", ["4GiB"]),
        ("4XB", ["unknown unit", "XB", "gib"]),
        ("4 parsecs", ["unknown unit", "parsecs"]),
        ("1.5", ["whole number", "bytes"]),
        ("0.1KiB", ["whole number"]),
        ("1e3", []),
        ("1_000", []),
        ("--1", []),
        ("4ms", ["unknown unit"]),
        (True, ["boolean"]),
        (False, ["boolean"]),
        (None, []),
    ],
)
def test_parse_size_rejects(text: object, words: list[str]) -> None:
    with pytest.raises(ValueError, match=r"expected a size|not a whole number|unknown unit") as info:
        parse_size(text)  # type: ignore[arg-type]
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30ms", 30_000_000),
        ("10s", 10**10),
        ("1us", 1_000),
        ("1µs", 1_000),
        ("5ns", 5),
        ("1min", 60 * 10**9),
        ("2h", 2 * 3600 * 10**9),
        ("1.5ms", 1_500_000),
        ("0.5s", 500_000_000),
        ("0.3s", 300_000_000),
        (" 2 ms ", 2_000_000),
        ("2MS", 2_000_000),
        ("0s", 0),
        (10, 10),
        (0, 0),
    ],
)
def test_parse_duration(text: str | int, expected: int) -> None:
    value = parse_duration(text)
    assert value == expected
    assert type(value) is int


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("10", ["unknown unit"]),
        ("", ["30ms"]),
        ("ms", ["30ms"]),
        ("1.5ns", ["whole number", "ns"]),
        ("1e3ms", ["30ms"]),
        ("10 fortnights", ["unknown unit", "fortnights", "ms"]),
        ("4GiB", ["unknown unit"]),
        ("1 m", ["unknown unit"]),
        (1.5, ["whole number"]),
        (True, ["boolean"]),
    ],
)
def test_parse_duration_rejects(text: object, words: list[str]) -> None:
    with pytest.raises(ValueError, match=r"expected a duration|not a whole number|unknown unit") as info:
        parse_duration(text)  # type: ignore[arg-type]
    for word in words:
        assert word in str(info.value)


def test_negative_values_parse_and_are_left_to_the_scenario() -> None:
    # The scenario's Size and Duration types refuse them (see tests/run/test_scenario.py).
    assert parse_size("-1GiB") == -GiB
    assert parse_duration("-1s") == -(10**9)


@pytest.mark.parametrize(
    ("nbytes", "text"),
    [
        (4 * GiB, "4GiB"),
        (512 * MiB, "512MiB"),
        (3 * KiB, "3KiB"),
        (2 * TiB, "2TiB"),
        (1000, "1000B"),
        (0, "0B"),
        (1536 * MiB, "1536MiB"),
    ],
)
def test_format_size(nbytes: int, text: str) -> None:
    assert format_size(nbytes) == text


@pytest.mark.parametrize(
    ("ns", "text"),
    [(10**9, "1s"), (30_000_000, "30ms"), (1_500_000, "1500us"), (7, "7ns"), (0, "0ns"), (90 * 10**9, "90s")],
)
def test_format_duration(ns: int, text: str) -> None:
    assert format_duration(ns) == text


@given(st.integers(0, 2**53))
def test_size_round_trip(nbytes: int) -> None:
    assert parse_size(format_size(nbytes)) == nbytes


@given(st.integers(0, 2**53))
def test_duration_round_trip(ns: int) -> None:
    assert parse_duration(format_duration(ns)) == ns


@given(st.integers(1, 10**6), st.sampled_from(["KiB", "MiB", "GiB", "kb", "MB", "pages"]))
def test_whole_units(n: int, unit: str) -> None:
    factor = {"KiB": KiB, "MiB": MiB, "GiB": GiB, "kb": 1000, "MB": 10**6, "pages": PAGE_SIZE}[unit]
    assert parse_size(f"{n}{unit}") == n * factor


@pytest.mark.parametrize(
    ("text", "parse", "expected"),
    [
        ("4.1ms", parse_duration, 4_100_000),
        ("8.2s", parse_duration, 8_200_000_000),
        ("4.1GB", parse_size, 4_100_000_000),
        ("8.3MB", parse_size, 8_300_000),
    ],
)
def test_decimal_values_are_exact(text: str, parse, expected: int) -> None:  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DecimalUnitWarning)
        assert parse(text) == expected


@pytest.mark.parametrize(("text", "hint"), [("4GB", "write '4GiB' for 4,294,967,296 bytes"), ("4.1GB", "'4.1GiB'")])
def test_decimal_size_units_warn_with_the_binary_spelling(text: str, hint: str) -> None:
    with pytest.warns(DecimalUnitWarning, match="is decimal") as caught:
        parse_size(text)
    assert hint in str(caught[0].message)


def test_binary_size_units_do_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DecimalUnitWarning)
        assert parse_size("4GiB") == 4 * GiB


@pytest.mark.parametrize(
    ("value", "parse", "expected"),
    [
        (2**53 + 1, parse_size, 2**53 + 1),
        ("9007199254740993", parse_size, 2**53 + 1),
        ("9007199254740993ns", parse_duration, 2**53 + 1),
        (2**60 + 1, parse_duration, 2**60 + 1),
    ],
)
def test_large_integers_are_exact(value: int | str, parse, expected: int) -> None:  # type: ignore[no-untyped-def]
    assert parse(value) == expected
