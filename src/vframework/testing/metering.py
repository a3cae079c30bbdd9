"""State machine for metering and billing: exact conservation, for any pricing component.

The machine plays a host whose VMs' counters move by random amounts at every sample (CPU time
split at random between the VMs' runs and interrupts, the hypervisor and idle, on every CPU;
disk and network counters; memory gauges), feeds them to the kernel's
:class:`~vframework.hv.meter.Meter`, and prices the intervals with the pricing component under
test through the kernel's :func:`~vframework.run.billing.bill`. It checks:

* every interval: the VMs' CPU plus hypervisor and idle time equals its length x the CPUs;
* every resource of every VM: the intervals' quantities sum to what the model added (counters
  by difference, gauges x the time they were held), in integers;
* the ledger: its quantities per VM and resource equal the meter's totals, each invoice total
  is the sum of its rounded lines, the grand total the sum of the invoices (exact decimals);
* the pricing: each amount is a finite, non-negative Decimal, Fraction or int, the same line
  always costs the same, and a larger quantity never costs less (for random pairs, and along
  quantities growing by a quarter from 1 to 2**70, which cross any tier's threshold).
"""

from __future__ import annotations

import copy
from decimal import Decimal
from fractions import Fraction
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from vframework.api.contract import Billing
from vframework.api.params import Params
from vframework.api.pricing import RESOURCES, LedgerLine, as_amount
from vframework.hv.meter import Meter
from vframework.run.billing import bill
from vframework.run.scenario import BillingConfig

__all__ = ["MeterMachine", "PricingMachine"]

_COUNTERS = (
    "cpu_run_ns",
    "cpu_irq_ns",
    "disk_requests",
    "disk_bytes",
    "net_bytes_sent",
    "net_bytes_received",
)


class _FakeVM:
    def __init__(self, name: str) -> None:
        self.name = name
        self.counters: dict[str, int] = dict.fromkeys((*_COUNTERS, "mem_consumed", "mem_granted"), 0)


class MeterMachine(RuleBasedStateMachine):
    """Random counters through the meter and the pricing under test: conservation holds exactly."""

    billing_cls: Any = None

    @classmethod
    def for_component(cls, billing_cls: type[Billing[Params]]) -> type[MeterMachine]:
        return type(f"{cls.__name__}[{billing_cls.name}]", (cls,), {"billing_cls": billing_cls})

    @initialize(
        vms=st.integers(1, 4),
        cpus=st.integers(1, 4),
        sample_ns=st.sampled_from([1, 7, 1_000, 100_000_000]),
        per_interval=st.integers(1, 4),
        storage=st.lists(st.integers(0, 2**40), min_size=4, max_size=4),
    )
    def start(self, vms: int, cpus: int, sample_ns: int, per_interval: int, storage: list[int]) -> None:
        self.vms = [_FakeVM(f"vm{i}") for i in range(vms)]
        self.cpus = cpus
        self.sample_ns = sample_ns
        self.storage = {vm.name: storage[i] for i, vm in enumerate(self.vms)}
        self.meter = Meter(self.vms, self.storage, sample_ns * per_interval, cpus)
        self.host = {"hypervisor_ns": 0, "idle_ns": 0}
        self.now = 0
        self.expected = {vm.name: dict.fromkeys(RESOURCES, 0) for vm in self.vms}
        self.meter.observe(0, self.host)

    @rule(data=st.data())
    def sample(self, data: st.DataObject) -> None:
        """One sample period: every CPU's time split at random, counters and gauges moved."""
        dt = self.sample_ns
        self.now += dt
        for _ in range(self.cpus):
            # dt split into len(vms) runs + len(vms) interrupts + hypervisor + idle.
            n = 2 * len(self.vms) + 1
            cuts = sorted(data.draw(st.lists(st.integers(0, dt), min_size=n, max_size=n), label="CPU time cuts"))
            parts = [b - a for a, b in zip([0, *cuts], [*cuts, dt], strict=True)]
            for i, vm in enumerate(self.vms):
                vm.counters["cpu_run_ns"] += parts[2 * i]
                vm.counters["cpu_irq_ns"] += parts[2 * i + 1]
                self.expected[vm.name]["cpu"] += parts[2 * i] + parts[2 * i + 1]
            self.host["hypervisor_ns"] += parts[-2]
            self.host["idle_ns"] += parts[-1]
        for vm in self.vms:
            for counter, resource in (
                ("disk_requests", "disk_ops"),
                ("disk_bytes", "disk_bytes"),
                ("net_bytes_sent", "net_sent"),
                ("net_bytes_received", "net_received"),
            ):
                step = data.draw(st.integers(0, 10**6), label=f"{vm.name}.{counter}")
                vm.counters[counter] += step
                self.expected[vm.name][resource] += step
            consumed = data.draw(st.integers(0, 2**20), label=f"{vm.name}.mem_consumed")
            granted = consumed + data.draw(st.integers(0, 2**10), label=f"{vm.name}.shared beyond 1/n")
            vm.counters["mem_consumed"], vm.counters["mem_granted"] = consumed, granted
            self.expected[vm.name]["memory"] += consumed * dt
            self.expected[vm.name]["memory_granted"] += granted * dt
            self.expected[vm.name]["storage"] += self.storage[vm.name] * dt
        self.meter.observe(self.now, self.host)

    @invariant()
    def cpu_is_conserved(self) -> None:
        if not hasattr(self, "meter"):
            return
        for iv in self.meter.intervals:
            total, expected = iv.cpu_balance()
            assert total == expected, (
                f"interval [{iv.start_ns}, {iv.end_ns}): VMs' CPU + hypervisor + idle = {total} ns, "
                f"length x {iv.cpus} CPUs = {expected} ns"
            )

    @rule(
        decimals=st.integers(0, 12),
        prices=st.dictionaries(
            st.sampled_from(sorted(RESOURCES)),
            st.tuples(st.integers(0, 10**6), st.integers(0, 6)),
        ),
    )
    def close_and_bill(self, decimals: int, prices: dict[str, tuple[int, int]]) -> None:
        """End the run here (on a copy: the run may go on): every quantity and amount adds up."""
        meter = copy.deepcopy(self.meter)
        intervals = meter.close(self.now, self.host)
        totals = meter.totals()
        for vm, per in self.expected.items():
            for resource, q in per.items():
                assert totals[vm][resource] == q, f"{vm} {resource}: metered {totals[vm][resource]}, used {q}"
        units = {"time": "vcpu-hour", "bytes-time": "GiB-hour", "bytes": "GiB", "count": "million-requests"}
        sheet = {
            r: f"{Decimal(n).scaleb(-k):f}/{units[RESOURCES[r].dimension]}" for r, (n, k) in sorted(prices.items())
        }
        config = BillingConfig.model_validate({"decimals": decimals, "prices": sheet})
        pricing = self.billing_cls(self.billing_cls.kit_params())
        b = bill(intervals, [vm.name for vm in self.vms], config, pricing, meter.interval_ns)
        ledger_q: dict[tuple[str, str], int] = {}
        ledger_a: dict[str, Decimal] = {}
        for _start, _end, vm, resource, q, unit, _price, amount in b.ledger:
            assert unit == RESOURCES[resource].unit
            assert Decimal(amount) >= 0, f"negative amount {amount} for {vm} {resource}"
            ledger_q[vm, resource] = ledger_q.get((vm, resource), 0) + q
            ledger_a[vm] = ledger_a.get(vm, Decimal(0)) + Decimal(amount)
        for vm, per in totals.items():
            for resource, q in per.items():
                assert ledger_q.get((vm, resource), 0) == q, f"ledger {vm} {resource}: {ledger_q.get((vm, resource))}"
            assert b.vm_total(vm) == ledger_a.get(vm, Decimal(0)), f"invoice of {vm} is not the sum of its lines"
        assert b.total() == sum(ledger_a.values(), Decimal(0))


class PricingMachine(RuleBasedStateMachine):
    """The pricing under test on random ledger lines: valid, deterministic, monotone amounts."""

    billing_cls: Any = None

    @classmethod
    def for_component(cls, billing_cls: type[Billing[Params]]) -> type[PricingMachine]:
        return type(f"{cls.__name__}[{billing_cls.name}]", (cls,), {"billing_cls": billing_cls})

    @initialize()
    def start(self) -> None:
        self.pricing = self.billing_cls(self.billing_cls.kit_params())

    @rule(
        resource=st.sampled_from(sorted(RESOURCES)),
        start=st.integers(0, 10**12),
        length=st.integers(1, 10**10),
        # Small volumes as often as huge ones: tiers and reservations have thresholds to cross.
        quantity=st.one_of(st.integers(0, 2**12), st.integers(0, 10**7), st.integers(0, 2**70)),
        more=st.one_of(st.integers(1, 2**12), st.integers(1, 10**7), st.integers(1, 2**40)),
        used_before=st.one_of(st.integers(0, 2**12), st.integers(0, 10**7), st.integers(0, 2**70)),
        rate=st.one_of(st.just(Fraction(1)), st.fractions(min_value=0, max_value=1, max_denominator=10**15)),
    )
    def charge(
        self, resource: str, start: int, length: int, quantity: int, more: int, used_before: int, rate: Fraction
    ) -> None:
        line = LedgerLine("vm0", resource, start, start + length, quantity, used_before, rate)
        first = as_amount(self.pricing.charge(line), f"charge({line})")
        again = as_amount(self.pricing.charge(line), f"charge({line})")
        assert first == again, f"the same line cost {first} and then {again}: {line}"
        bigger = LedgerLine("vm0", resource, start, start + length, quantity + more, used_before, rate)
        larger = as_amount(self.pricing.charge(bigger), f"charge({bigger})")
        assert larger >= first, f"{quantity + more} units cost {larger}, less than {quantity} units ({first}): {line}"

    @rule(
        resource=st.sampled_from(sorted(RESOURCES)),
        used_before=st.one_of(st.just(0), st.integers(0, 2**12), st.integers(0, 2**70)),
        rate=st.one_of(st.just(Fraction(1)), st.fractions(min_value=0, max_value=1, max_denominator=10**15)),
    )
    def sweep(self, resource: str, used_before: int, rate: Fraction) -> None:
        """Quantities growing by a quarter from 1 to 2**70: the amount never drops (a tier's
        threshold or a reservation crossed on the way must not make more units cheaper)."""
        previous, q = Fraction(0), 0
        while q < 2**70:
            line = LedgerLine("vm0", resource, 0, 10**9, q, used_before, rate)
            amount = as_amount(self.pricing.charge(line), f"charge({line})")
            assert amount >= previous, f"{q} units cost {amount}, less than fewer units ({previous}): {line}"
            previous, q = amount, max(q + 1, q * 5 // 4)
