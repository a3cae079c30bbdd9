"""Metering and billing on real runs: exact conservation, the ledger, invoices and pricing."""

from __future__ import annotations

import csv
import itertools
import json
import re
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vf_helpers import scenario, simulate, summary_of

from vframework import PluginManager
from vframework.api.pricing import RESOURCES, LedgerLine, decimal_of, parse_price, parse_quantity
from vframework.errors import PluginError, ScenarioError
from vframework.run.scenario import parse_scenario

# -- prices and quantities ------------------------------------------------------------------


def test_prices_are_exact_rates_per_base_unit() -> None:
    assert parse_price("0.05/vcpu-hour", "cpu") == Fraction(5, 100) / (3600 * 10**9)
    assert parse_price("0.01/GiB-hour", "memory") == Fraction(1, 100) / (2**18 * 3600 * 10**9)
    assert parse_price("0.10/GiB-month", "storage") == Fraction(1, 10) / (2**30 * 30 * 86400 * 10**9)
    assert parse_price("0.09/GiB", "net_sent") == Fraction(9, 100) / 2**30
    assert parse_price("0.05/million-requests", "disk_ops") == Fraction(5, 100) / 10**6
    assert parse_quantity("2 vcpu-hour", "cpu") == 2 * 3600 * 10**9


@pytest.mark.parametrize(
    ("price", "resource", "says"),
    [
        ("0.05/GiB", "cpu", "'GiB' is not a unit cpu can be priced in"),
        ("0.05/vcpu-hour", "memory", "is not a unit memory can be priced in"),
        ("-1/GiB", "net_sent", "amount/unit"),
        ("cheap", "cpu", "expected a price such as"),
        ("1/GiB", "bandwidth", "unknown resource 'bandwidth'"),
    ],
)
def test_bad_prices_say_why(price: str, resource: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        parse_price(price, resource)


def test_amounts_round_half_even_exactly() -> None:
    assert decimal_of(Fraction(5, 1000), 2) == Decimal("0.00")
    assert decimal_of(Fraction(15, 1000), 2) == Decimal("0.02")
    assert decimal_of(Fraction(1, 3), 4) == Decimal("0.3333")
    assert str(decimal_of(Fraction(1, 10**9), 9)) in ("1E-9", "0.000000001")


# -- the scenario's [billing] table ----------------------------------------------------------


def test_billing_table_errors_name_the_key(plugins: PluginManager) -> None:
    data = scenario(sample_interval="30ms")
    data["billing"] = {"interval": "100ms", "prices": {"cpu": "0.05/GiB"}, "pricing": "bogus"}
    with pytest.raises(ScenarioError) as err:
        parse_scenario(data, "s.toml", plugins)
    text = str(err.value)
    assert "billing.prices" in text
    assert "'GiB' is not a unit cpu can be priced in" in text
    data["billing"] = {"interval": "100ms"}
    with pytest.raises(ScenarioError) as err:
        parse_scenario(data, "s.toml", plugins)
    assert "billing.interval (100ms) must be a multiple of sample_interval (30ms)" in str(err.value)


def test_unknown_pricing_is_named(plugins: PluginManager) -> None:
    data = scenario()
    data["billing"] = {"pricing": "bogus"}
    with pytest.raises(ScenarioError) as err:
        parse_scenario(data, "s.toml", plugins)
    assert "billing.pricing" in str(err.value)
    assert "unknown billing 'bogus'" in str(err.value)


def test_default_interval_is_one_second_rounded_up_to_samples(plugins: PluginManager) -> None:
    spec = parse_scenario(scenario(sample_interval="300ms"), "s.toml", plugins)
    assert spec.config.billing_interval == 1_200_000_000
    # A long run: about a hundred intervals, not one per second.
    spec = parse_scenario(scenario(duration="1h", sample_interval="1s"), "s.toml", plugins)
    assert spec.config.billing_interval == 36_000_000_000


def test_billing_can_be_turned_off(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cli(["run", "--set", "duration=200ms", "--set", "billing.enabled=false", "--out", out, "-q", "--no-plot"])
    assert "billing" not in summary_of(out)
    assert not (out / "ledger.csv").exists()
    assert not (out / "invoice.json").exists()


# -- conservation on real runs ----------------------------------------------------------------

_WORKLOADS = [
    "cpu",
    "idle",
    {"name": "io", "compute": "100us", "nbytes": "4KiB"},
    {"name": "memory", "working_set": "8MiB", "batch": 256},
]


def _check_conservation(sim: Any, summary: dict[str, Any]) -> None:
    intervals = sim.meter.intervals
    assert intervals, "no interval was metered"
    assert intervals[0].start_ns == 0
    assert intervals[-1].end_ns == summary["sim_time_ns"]
    for a, b in itertools.pairwise(intervals):
        assert a.end_ns == b.start_ns, "intervals must tile the run"
    for iv in intervals:
        total, expected = iv.cpu_balance()
        assert total == expected, f"[{iv.start_ns}, {iv.end_ns}): {total} != {expected}"
    ledger: dict[tuple[str, str], int] = {}
    amounts: dict[str, Decimal] = {}
    for _s, _e, vm, resource, q, _u, _p, amount in sim.bill.ledger:
        ledger[vm, resource] = ledger.get((vm, resource), 0) + q
        amounts[vm] = amounts.get(vm, Decimal(0)) + Decimal(amount)
    billing = summary["billing"]
    for vm, counters in summary["vms"].items():
        metered = billing["vms"][vm]["metered"]
        assert metered["cpu"] == counters["cpu_run_ns"] + counters["cpu_irq_ns"]
        assert metered["disk_ops"] == counters["disk_requests"]
        assert metered["net_sent"] == counters["net_bytes_sent"]
        for resource in RESOURCES:
            assert ledger[vm, resource] == metered[resource], (vm, resource)
        assert Decimal(billing["vms"][vm]["bill_total"]) == amounts[vm]
    host = summary["host"]
    cpu = sum(billing["vms"][vm]["metered"]["cpu"] for vm in summary["vms"])
    assert cpu + host["hypervisor_ns"] + host["idle_ns"] == summary["sim_time_ns"] * len(sim.machine.cpus)
    assert Decimal(billing["bill_total"]) == sum(amounts.values(), Decimal(0))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    vms=st.lists(
        st.tuples(st.sampled_from(range(len(_WORKLOADS))), st.sampled_from(["bare-metal", "hardware-assisted"])),
        min_size=1,
        max_size=3,
    ),
    cpus=st.integers(1, 3),
    samples_per_interval=st.integers(1, 4),
    duration_ms=st.integers(20, 90),
)
def test_conservation_under_random_scenarios(
    plugins: PluginManager, vms: list[tuple[int, str]], cpus: int, samples_per_interval: int, duration_ms: int
) -> None:
    data = scenario(
        [
            {"name": f"v{i}", "memory": "64MiB", "mode": mode, "workload": _WORKLOADS[w]}
            for i, (w, mode) in enumerate(vms)
        ],
        duration=f"{duration_ms}ms",
        sample_interval="10ms",
        cpus=cpus,
    )
    data["billing"] = {"interval": f"{10 * samples_per_interval}ms", "decimals": 12}
    sim, summary = simulate(data, plugins)
    _check_conservation(sim, summary)


def test_default_scenario_ledger_and_invoice(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cli(["run", "--set", "duration=2s", "--out", out, "-q", "--no-plot"])
    summary = summary_of(out)
    with (out / "ledger.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        "interval_start_ns",
        "interval_end_ns",
        "vm",
        "resource",
        "quantity",
        "unit",
        "price",
        "amount",
    ]
    # 2 intervals of 1 s x 5 VMs x every resource.
    assert len(rows) == 2 * len(summary["vms"]) * len(RESOURCES)
    invoice = json.loads((out / "invoice.json").read_text(encoding="utf-8"))
    assert invoice["total"] == summary["billing"]["bill_total"]
    for vm, inv in invoice["vms"].items():
        lines = sum((Decimal(line["amount"]) for line in inv["lines"]), Decimal(0))
        assert lines == Decimal(inv["total"]) == Decimal(summary["billing"]["vms"][vm]["bill_total"])
        ledger = sum((Decimal(r["amount"]) for r in rows if r["vm"] == vm), Decimal(0))
        assert ledger == lines
    # The web VM's 64 GiB ring disk is storage, billed; the CPU-bound batch VM pays for CPU.
    assert summary["billing"]["vms"]["web"]["metered"]["storage"] == 64 * 2**30 * 2 * 10**9
    assert Decimal(summary["billing"]["vms"]["batch"]["bill_cpu"]) > 0


def test_ballooned_pages_are_not_billed_as_resident(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cli(["run", "--out", out, "-q", "--no-plot"])
    summary = summary_of(out)
    for vm, c in summary["vms"].items():
        if c["mem_balloon"]:
            # What is billed is at most what was backed by frames, never the configured size.
            metered = summary["billing"]["vms"][vm]["metered"]["memory_granted"]
            assert metered <= (c["mem_granted"] + c["mem_balloon"]) * summary["sim_time_ns"]
            assert c["mem_granted"] + c["mem_balloon"] + c["mem_swapped"] <= 1024 * 256 * 2


# -- pricing components -------------------------------------------------------------------------


def _line(resource: str, quantity: int, used_before: int = 0, rate: Fraction = Fraction(1)) -> LedgerLine:
    return LedgerLine("vm0", resource, 0, 10**9, quantity, used_before, rate)


def test_tiered_pricing_discounts_beyond_the_threshold(plugins: PluginManager) -> None:
    cls = plugins.get("billing", "tiered")
    pricing = cls(cls.params_model.model_validate({"tiers": [{"resource": "cpu", "above": "1 vcpu-s", "factor": 0.5}]}))
    second = 10**9
    assert pricing.charge(_line("cpu", second)) == second
    # Half of this line is below the threshold, half beyond it.
    assert pricing.charge(_line("cpu", second, used_before=second // 2)) == second // 2 + second // 4
    assert pricing.charge(_line("cpu", second, used_before=2 * second)) == second // 2
    assert pricing.charge(_line("memory", 7)) == 7


def test_tiered_pricing_refuses_bad_tiers(plugins: PluginManager) -> None:
    data = scenario()
    data["billing"] = {"pricing": {"name": "tiered", "tiers": [{"resource": "cpu", "above": "1 GiB", "factor": 2}]}}
    with pytest.raises(ScenarioError) as err:
        parse_scenario(data, "s.toml", plugins)
    assert "billing.pricing" in str(err.value)
    assert "between 0 and 1" in str(err.value)


def test_reserved_pricing_bills_the_reservation_used_or_not(plugins: PluginManager) -> None:
    cls = plugins.get("billing", "reserved")
    pricing = cls(cls.params_model.model_validate({"reservations": {"vm0": {"vcpus": 1}}, "factor": 0.5}))
    second = 10**9
    assert pricing.charge(_line("cpu", 0)) == second // 2  # idle, but reserved
    assert pricing.charge(_line("cpu", 3 * second)) == second // 2 + 2 * second  # one reserved, two on demand
    other = LedgerLine("vm1", "cpu", 0, second, 5, 0, Fraction(1))
    assert pricing.charge(other) == 5


def test_a_pricing_that_raises_or_returns_a_float_is_named(plugins: PluginManager, make_dist: Any) -> None:
    make_dist(
        "acme-pricing",
        """
        from vframework import Billing, Params, hookimpl

        class Broken(Billing[Params]):
            name = "acme-broken"
            def charge(self, line):
                if line.resource == "storage":
                    raise ZeroDivisionError("no storage price")
                return 0

        class Floaty(Billing[Params]):
            name = "acme-float"
            def charge(self, line):
                return 0.1

        @hookimpl
        def register_billing():
            return [Broken, Floaty]
        """,
    )
    pm = PluginManager(autoload=True)
    for name, says in (("acme-broken", "raised in charge()"), ("acme-float", "returned nonsense from charge()")):
        data = scenario(duration="20ms")
        data["billing"] = {"pricing": name}
        with pytest.raises(PluginError) as err:
            simulate(data, pm)
        assert f"pricing {name!r} of plugin 'acme-pricing'" in str(err.value)
        assert says in str(err.value)
