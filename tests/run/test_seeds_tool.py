"""The distribution check of ``tests/golden/seeds.py``: what counts as a metric that moved."""

from __future__ import annotations

from golden import seeds  # tests/golden/seeds.py, also run as a script


def test_flatten_takes_every_model_number_and_not_the_simulators_own() -> None:
    summary = {
        "seed": 3,
        "sim_time_ns": 10,
        "host": {"idle_ns": 5, "events_fired": 99},
        "vms": {"web": {"cpu_run_ns": 7}},
        "billing": {"vms": {"web": {"bill_cpu": "0.25"}}, "currency": "USD"},
        "plugins": [{"name": "x", "version": "1"}],
    }
    assert seeds.flatten(summary) == {
        "sim_time_ns": 10.0,
        "host.idle_ns": 5.0,
        "web.cpu_run_ns": 7.0,
        "billing.vms.web.bill_cpu": 0.25,
    }


def test_a_mean_may_move_less_than_the_seed_to_seed_deviation() -> None:
    before = {"a": seeds.stats([10.0, 12.0, 14.0]), "fixed": seeds.stats([5.0, 5.0])}
    assert before["a"]["std"] == 2.0
    inside = {"a": seeds.stats([11.0, 13.0, 14.0]), "fixed": seeds.stats([5.0, 5.0])}
    assert seeds.moved(before, inside) == []
    outside = {"a": seeds.stats([13.0, 14.0, 15.0]), "fixed": seeds.stats([5.0, 5.0])}
    assert [m for m, *_ in seeds.moved(before, outside)] == ["a"]
    # A metric that does not vary with the seed must not move at all; a lost one is reported.
    changed = {"a": before["a"], "fixed": seeds.stats([5.0, 6.0])}
    assert [m for m, *_ in seeds.moved(before, changed)] == ["fixed"]
    assert [m for m, *_ in seeds.moved(before, {"a": before["a"]})] == ["fixed"]
