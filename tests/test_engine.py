"""The discrete-event engine: time order, priorities, ties, cancellation, processes, random streams.

Unit tests first, then the conformance kit's state machines for the kernel (the event engine and
the frame table) run as ordinary pytest tests.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import invariant

from vframework.sim.engine import LATE, NORMAL, URGENT, Engine, Interrupt, Process, Signal, event_time
from vframework.testing import EngineMachine, FrameTableMachine


def recorder(engine: Engine, log: list[Any]) -> Any:
    return lambda arg: log.append((engine.now, arg))


# -- time order, priority, ties -----------------------------------------------------------------


def test_events_fire_in_time_order() -> None:
    engine, log = Engine(), []
    for delay in (30, 10, 20, 0, 10**12):
        engine.schedule(delay, recorder(engine, log), delay)
    engine.run()
    assert log == [(0, 0), (10, 10), (20, 20), (30, 30), (10**12, 10**12)]
    assert engine.now == 10**12
    assert isinstance(engine.now, int)


def test_priority_orders_events_at_the_same_time() -> None:
    engine, log = Engine(), []
    engine.schedule(5, recorder(engine, log), "late", LATE)
    engine.schedule(5, recorder(engine, log), "normal", NORMAL)
    engine.schedule(5, recorder(engine, log), "urgent", URGENT)
    engine.schedule(4, recorder(engine, log), "earlier, late", LATE)
    engine.run()
    assert [arg for _, arg in log] == ["earlier, late", "urgent", "normal", "late"]
    assert URGENT < NORMAL < LATE


def test_ties_fire_in_scheduling_order() -> None:
    engine, log = Engine(), []
    for i in range(50):
        engine.schedule(7, recorder(engine, log), i)
    engine.schedule_at(7, recorder(engine, log), "absolute")
    engine.run()
    assert [arg for _, arg in log] == [*range(50), "absolute"]


@given(st.lists(st.tuples(st.integers(0, 100), st.integers(0, 2)), max_size=40))
def test_order_is_time_priority_then_scheduling(events: list[tuple[int, int]]) -> None:
    engine, log = Engine(), []
    for order, (delay, priority) in enumerate(events):
        engine.schedule(delay, log.append, (delay, priority, order), priority)
    engine.run()
    assert log == sorted(log)
    assert engine.events_fired == len(events)


def test_events_scheduled_while_running_at_the_same_instant() -> None:
    """An event scheduled for 'now' by a firing event fires in this instant, after it, even if its
    priority is more urgent than events that already fired."""
    engine, log = Engine(), []

    def first(_: Any) -> None:
        log.append("first")
        engine.schedule(0, lambda _: log.append("urgent, scheduled later"), priority=URGENT)

    engine.schedule(3, first)
    engine.schedule(3, lambda _: log.append("second"))
    engine.run()
    assert log == ["first", "urgent, scheduled later", "second"]
    assert engine.now == 3


def test_run_until_stops_at_the_limit_and_keeps_later_events() -> None:
    engine, log = Engine(), []
    for delay in (10, 20, 30):
        engine.schedule(delay, recorder(engine, log), delay)
    engine.run(until=20)
    assert log == [(10, 10), (20, 20)], "events at exactly `until` fire"
    assert engine.now == 20
    engine.run(until=25)
    assert engine.now == 25, "the clock ends at `until` even without an event there"
    assert engine.peek() == 30
    engine.run(until=1000)
    assert log[-1] == (30, 30) and engine.now == 1000


def test_run_until_on_an_empty_queue_advances_the_clock() -> None:
    engine = Engine()
    engine.run(until=123)
    assert engine.now == 123
    engine.run()
    assert engine.now == 123


def test_past_events_are_refused() -> None:
    engine = Engine()
    engine.run(until=100)
    with pytest.raises(ValueError, match="past"):
        engine.schedule(-1, print)
    with pytest.raises(ValueError, match="past"):
        engine.schedule_at(99, print)
    event = engine.schedule_at(100, print)
    assert event_time(event) == 100


def test_step() -> None:
    engine, log = Engine(), []
    assert engine.step() is False
    engine.schedule(5, recorder(engine, log), "a")
    cancelled = engine.schedule(1, recorder(engine, log), "cancelled")
    engine.schedule(9, recorder(engine, log), "b")
    engine.cancel(cancelled)
    assert engine.step() is True and log == [(5, "a")] and engine.now == 5
    assert engine.step() is True and log[-1] == (9, "b")
    assert engine.step() is False
    assert engine.events_fired == 2


# -- cancellation -----------------------------------------------------------------------------


def test_cancelled_events_never_fire() -> None:
    engine, log = Engine(), []
    keep = engine.schedule(10, recorder(engine, log), "keep")
    drop = engine.schedule(10, recorder(engine, log), "drop")
    assert engine.is_pending(drop)
    engine.cancel(drop)
    engine.cancel(drop)  # twice is harmless
    assert not engine.is_pending(drop) and engine.is_pending(keep)
    engine.run()
    assert log == [(10, "keep")]
    assert engine.events_fired == 1
    assert not engine.is_pending(keep), "a fired event is no longer pending"
    engine.cancel(keep)  # after it fired: harmless


def test_peek_skips_cancelled_events() -> None:
    engine = Engine()
    first = engine.schedule(1, print)
    engine.schedule(2, print)
    engine.cancel(first)
    assert engine.peek() == 2
    engine.cancel(engine._queue[0])
    assert engine.peek() is None


def test_an_event_can_cancel_a_later_event_at_the_same_instant() -> None:
    engine, log = Engine(), []
    victim = engine.schedule(4, recorder(engine, log), "victim", LATE)
    engine.schedule(4, lambda _: engine.cancel(victim), priority=URGENT)
    engine.run()
    assert log == []


# -- processes --------------------------------------------------------------------------------


def test_process_sleeps_for_int_delays() -> None:
    engine, log = Engine(), []

    def sleeper() -> Any:
        log.append(engine.now)
        yield 10
        log.append(engine.now)
        yield 0
        log.append(engine.now)
        yield 5
        log.append(engine.now)
        return "done"

    proc = engine.process(sleeper(), "sleeper")
    assert isinstance(proc, Process) and proc.name == "sleeper" and not proc.done
    engine.run()
    assert log == [0, 10, 10, 15]
    assert proc.done and proc.value == "done"


def test_process_waits_on_a_signal_and_receives_its_value() -> None:
    engine, log = Engine(), []
    signal = engine.signal()
    assert isinstance(signal, Signal) and not signal.fired

    def waiter(name: str) -> Any:
        value = yield signal
        log.append((name, engine.now, value))

    engine.process(waiter("a"))
    engine.process(waiter("b"))
    engine.schedule(7, lambda _: signal.fire("go"))
    engine.run()
    assert log == [("a", 7, "go"), ("b", 7, "go")], "waiters wake at the fire time, in the order they waited"

    # A signal that already fired wakes a newcomer at once with the same value.
    engine.process(waiter("late"))
    engine.run()
    assert log[-1] == ("late", 7, "go")


def test_process_waits_on_another_process() -> None:
    engine, log = Engine(), []

    def child() -> Any:
        yield 12
        return 42

    def parent(target: Process) -> Any:
        value = yield target
        log.append((engine.now, value))
        value = yield target  # already finished: at once, same value
        log.append((engine.now, value))

    kid = engine.process(child(), "child")
    engine.process(parent(kid), "parent")
    engine.run()
    assert log == [(12, 42), (12, 42)]

    def on_finished() -> Any:  # the signal of a finished process is already fired
        value = yield kid.finished
        log.append((engine.now, value))

    engine.process(on_finished())
    engine.run()
    assert log[-1] == (12, 42)


def test_process_yielding_something_else_is_an_error() -> None:
    engine = Engine()

    def bad() -> Any:
        yield "soon"

    engine.process(bad(), "confused")
    with pytest.raises(TypeError, match="confused"):
        engine.run()


def test_process_yielding_a_negative_delay_is_an_error() -> None:
    engine = Engine()

    def bad() -> Any:
        yield -5

    engine.process(bad(), "backwards")
    with pytest.raises(ValueError, match="backwards"):
        engine.run()


def test_interrupt_a_sleeping_process() -> None:
    engine, log = Engine(), []

    def sleeper() -> Any:
        try:
            yield 100
            log.append(("woke", engine.now))
        except Interrupt as exc:
            log.append(("interrupted", engine.now, exc.cause))
        yield 10
        log.append(("slept", engine.now))

    proc = engine.process(sleeper())
    engine.run(until=30)
    proc.interrupt("preempted")
    engine.run()
    assert log == [("interrupted", 30, "preempted"), ("slept", 40)], "the abandoned sleep must not fire"
    assert proc.done
    proc.interrupt("too late")  # a finished process ignores interrupts
    engine.run()
    assert log[-1] == ("slept", 40)


def test_a_process_interrupting_another_at_its_own_wake_up() -> None:
    """The run loop resumes a process with its key still on the heap; an URGENT event it
    schedules for the same instant is more urgent than that key. Both must fire once, in order,
    and the process's next sleep must still end on time."""
    engine, log = Engine(), []

    def victim() -> Any:
        try:
            yield 1000
        except Interrupt as exc:
            log.append(("interrupted", engine.now, exc.cause))
        yield 5
        log.append(("victim slept", engine.now))

    target = engine.process(victim())

    def attacker() -> Any:
        yield 10
        target.interrupt("now")
        yield 3
        log.append(("attacker slept", engine.now))
        yield 1
        log.append(("attacker slept", engine.now))

    engine.process(attacker())
    engine.run()
    assert log == [("interrupted", 10, "now"), ("attacker slept", 13), ("attacker slept", 14), ("victim slept", 15)]
    assert engine.events_fired == 2 + 3 + 2  # two starts, the attacker's sleeps, throw + sleep


def test_a_process_cannot_interrupt_itself() -> None:
    engine = Engine()
    holder: list[Process] = []

    def selfish() -> Any:
        yield 1
        holder[0].interrupt()
        yield 1

    holder.append(engine.process(selfish(), "selfish"))
    with pytest.raises(RuntimeError, match="'selfish' cannot interrupt itself"):
        engine.run()


def test_events_fired_counts_what_fired_even_mid_run() -> None:
    engine, seen = Engine(), []
    drop = engine.schedule(5, lambda _: None)
    engine.schedule(1, lambda _: seen.append(engine.events_fired))  # read during a run
    engine.schedule(2, lambda _: engine.cancel(drop))

    def sleeper() -> Any:
        yield 3
        seen.append(engine.events_fired)

    engine.process(sleeper())
    engine.run(until=2)
    # the event firing counts itself: the process's start (at 0) and the reader
    assert seen == [2] and engine.events_fired == 3
    engine.run()
    assert seen == [2, 4] and engine.events_fired == 4, "a cancelled event is not counted"
    engine.cancel(drop)  # twice: still not counted
    assert engine.events_fired == 4


def test_peek_during_a_run_sees_past_the_runs_end() -> None:
    engine, seen = Engine(), []
    engine.schedule(1, lambda _: seen.append(engine.peek()))
    engine.schedule(10, lambda _: seen.append(engine.peek()))
    engine.run(until=5)
    assert seen == [10], "the next event, not the end of the run"
    engine.run()
    assert seen == [10, None]

    def peeker() -> Any:
        seen.append(engine.peek())  # resumed inline: its own key is no longer an event
        yield 1

    engine.schedule(9, lambda _: None)
    engine.process(peeker())
    engine.run(until=engine.now + 7)
    assert seen[-1] == 19


def test_run_and_step_cannot_be_nested() -> None:
    engine, errors = Engine(), []

    def nested(call: Any) -> None:
        try:
            call()
        except RuntimeError as exc:
            errors.append(str(exc))

    engine.schedule(1, lambda _: nested(engine.run))
    engine.schedule(2, lambda _: nested(engine.step))
    engine.schedule(3, lambda _: None)
    engine.run(until=5)
    assert len(errors) == 2 and all("inside a run" in e for e in errors)
    assert engine.now == 5 and engine.events_fired == 3, "the outer run goes on unharmed"
    assert engine.step() is False  # outside a run, step works


def test_process_subclasses_and_the_first_key() -> None:
    class Traced(Process):
        __slots__ = ()

    engine, log = Engine(), []

    def sleeper() -> Any:
        yield 3
        log.append(engine.now)

    proc = Traced(engine, sleeper(), "traced")
    proc._pending = engine.schedule(0, proc)
    first = engine.schedule(0, lambda _: None, priority=URGENT)
    assert first, "no event key is 0 (falsy)"
    engine.run()
    assert log == [3] and proc.done


def test_bad_delays_and_priorities_are_refused() -> None:
    engine = Engine()
    with pytest.raises(TypeError, match="whole nanoseconds"):
        engine.schedule(1.5, lambda _: None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="priority must be 0..2"):
        engine.schedule(1, lambda _: None, priority=3)
    event = engine.schedule(np.int64(7), lambda _: None)  # type: ignore[arg-type]
    assert event_time(event) == 7 and type(event) is int
    later = engine.schedule_at(np.int64(2) ** 40, lambda _: None)  # type: ignore[arg-type]
    assert event_time(later) == 2**40, "a numpy time past 2**21 ns must not overflow the key"


def test_interrupt_comes_before_ordinary_events_of_the_instant() -> None:
    engine, log = Engine(), []

    def sleeper() -> Any:
        try:
            yield 1000
        except Interrupt:
            log.append("interrupt")

    proc = engine.process(sleeper())
    engine.run(until=5)
    engine.schedule(0, lambda _: log.append("normal"))
    proc.interrupt()
    engine.run()
    assert log == ["interrupt", "normal"]


def test_uncaught_interrupt_propagates() -> None:
    engine = Engine()

    def sleeper() -> Any:
        yield 1000

    proc = engine.process(sleeper())
    engine.run(until=1)
    proc.interrupt("stop")
    with pytest.raises(Interrupt):
        engine.run()


def test_interrupt_abandons_a_signal_wait() -> None:
    engine, log = Engine(), []
    signal = engine.signal()

    def waiter() -> Any:
        try:
            yield signal
            log.append(("signalled", engine.now))
        except Interrupt:
            log.append(("interrupted", engine.now))
        yield 100
        log.append(("slept", engine.now))

    proc = engine.process(waiter())
    engine.run(until=5)
    proc.interrupt()
    engine.schedule(10, lambda _: signal.fire("late"))
    engine.run()
    assert log == [("interrupted", 5), ("slept", 105)]


def test_interrupt_abandons_a_process_wait() -> None:
    engine, log = Engine(), []

    def child() -> Any:
        yield 20
        return "child done"

    def parent(target: Process) -> Any:
        try:
            yield target
        except Interrupt:
            log.append(("interrupted", engine.now))
        yield 100
        log.append(("slept", engine.now))

    kid = engine.process(child())
    proc = engine.process(parent(kid))
    engine.run(until=5)
    proc.interrupt()
    engine.run()
    assert log == [("interrupted", 5), ("slept", 105)]


# -- random streams -------------------------------------------------------------------------------


def draw(engine: Engine, name: str, n: int = 8) -> list[int]:
    return engine.rng(name).integers(0, 2**62, n).tolist()


def test_same_seed_and_name_give_the_same_stream() -> None:
    assert draw(Engine(7), "workload:web:0") == draw(Engine(7), "workload:web:0")
    engine = Engine(7)
    assert engine.rng("x") is engine.rng("x"), "one stream per name, continued, not restarted"
    first, then = draw(engine, "x", 4), draw(engine, "x", 4)
    assert first + then == draw(Engine(7), "x", 8)


def test_adding_a_stream_does_not_change_another() -> None:
    alone = Engine(3)
    expected = draw(alone, "workload:db:0", 16)
    crowded = Engine(3)
    for name in ("scheduler", "workload:web:0", "workload:db:1", "", "ζ", "workload:db:00"):
        draw(crowded, name)
    assert draw(crowded, "workload:db:0", 16) == expected


def test_different_names_give_different_streams() -> None:
    engine = Engine(3)
    names = ["a", "b", "ab", "ba", "workload:web:0", "workload:web:1", "workload:0:web", "", " "]
    streams = {name: tuple(draw(engine, name)) for name in names}
    assert len(set(streams.values())) == len(names)


def test_different_seeds_give_different_streams() -> None:
    assert len({tuple(draw(Engine(seed), "workload:web:0")) for seed in range(20)}) == 20
    assert draw(Engine(0), "x") != draw(Engine(2**40), "x")


def test_negative_seed_is_refused() -> None:
    with pytest.raises(ValueError, match="seed"):
        Engine(-1)


def test_names_with_colliding_crc32_give_different_streams() -> None:
    a, b = "workload:uablaijhsa:0", "workload:pfcxpytzcn:0"
    assert a != b and len(a) == len(b) and zlib.crc32(a.encode()) == zlib.crc32(b.encode())
    engine = Engine(3)
    assert draw(engine, a) != draw(engine, b)


# -- the conformance kit's kernel state machines ----------------------------------------------------


@pytest.mark.invariants
class TestFrameTableMachine(FrameTableMachine.TestCase):  # type: ignore[name-defined, misc]
    pass


class EngineOrderMachine(EngineMachine):
    """The kit's engine machine with the ordering invariant stated exactly: when an event fires,
    no other live event has an earlier (time, priority, scheduling order), and time never goes back.
    (Events scheduled at the current instant after others fired may be more urgent than those.)
    The engine's events are int keys that order exactly so."""

    def _fire(self, key: tuple[int, int, int]) -> None:
        event = self.pending.get(key[2])
        if event is not None:
            for other in self.pending.values():
                if other != event and self.engine.is_pending(other):
                    assert other > event, "an event fired before an earlier one"
        super()._fire(key)

    @invariant()
    def fired_in_order(self) -> None:
        times = [time for time, _, _ in self.fired]
        assert times == sorted(times), "time went backwards"


@pytest.mark.invariants
class TestEngineOrderMachine(EngineOrderMachine.TestCase):  # type: ignore[name-defined, misc]
    pass


class TestEngineMachine(EngineMachine.TestCase):  # type: ignore[name-defined, misc]
    """The kit's own machine, as shipped."""


def test_kit_engine_machine_accepts_a_more_urgent_event_scheduled_after_one_fired() -> None:
    """The falsifying example Hypothesis finds, replayed step by step."""
    machine = EngineMachine()
    machine.schedule(delay=0, priority=1)
    machine.step()
    machine.schedule(delay=0, priority=0)
    machine.step()
    machine.fired_in_order()
    machine.teardown()


def test_engine_is_deterministic_under_processes_and_streams() -> None:
    def world(seed: int) -> list[Any]:
        engine, log = Engine(seed), []

        def worker(name: str) -> Any:
            rng = engine.rng(f"worker:{name}")
            for _ in range(20):
                yield int(rng.integers(0, 50))
                log.append((engine.now, name, int(rng.integers(0, 1000))))

        for name in ("a", "b", "c"):
            engine.process(worker(name), name)
        engine.run()
        return log

    assert world(1) == world(1)
    assert world(1) != world(2)
    assert np.all(np.diff([t for t, _, _ in world(1)]) >= 0)
