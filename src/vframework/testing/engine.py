"""State machine for the event engine: time order, deterministic ties, cancellation, processes."""

from __future__ import annotations

from collections.abc import Generator

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from vframework.sim.engine import Engine, Event

__all__ = ["EngineMachine"]


class EngineMachine(RuleBasedStateMachine):
    """Events fire in (time, priority, scheduling order); cancelled events never fire; processes
    wake exactly when they asked to. Parametrize with :meth:`for_component` to check another
    engine class with the same interface."""

    engine_cls: type[Engine] = Engine

    @classmethod
    def for_component(cls, engine_cls: type[Engine]) -> type[EngineMachine]:
        return type(f"{cls.__name__}[{engine_cls.__name__}]", (cls,), {"engine_cls": engine_cls})

    def __init__(self) -> None:
        super().__init__()
        self.engine = self.engine_cls(seed=0)
        self.fired: list[tuple[int, int, int]] = []  # (time, priority, order scheduled)
        self.pending: dict[int, Event] = {}  # order -> event
        self.keys: dict[int, tuple[int, int, int]] = {}  # order -> (time, priority, order) not yet fired
        self.cancelled: set[int] = set()
        self.order = 0
        self.wakes: list[tuple[int, int]] = []  # (expected, actual) for process wake-ups

    def _fire(self, key: tuple[int, int, int]) -> None:
        assert key[2] not in self.cancelled, "a cancelled event fired"
        assert self.engine.now == key[0], "event fired at the wrong time"
        # The event firing must be the most urgent of those still waiting. (The whole history
        # need not be sorted: an event scheduled for "now" after a less urgent one fired at
        # this instant rightly fires after it.)
        self.keys.pop(key[2], None)
        earlier = [k for k in self.keys.values() if k < key]
        assert not earlier, f"event {key} fired before the more urgent {min(earlier)} (time, priority, order)"
        self.fired.append(key)
        self.pending.pop(key[2], None)

    @rule(delay=st.integers(0, 50), priority=st.integers(0, 2))
    def schedule(self, delay: int, priority: int) -> None:
        self.order += 1
        key = (self.engine.now + delay, priority, self.order)
        event = self.engine.schedule(delay, self._fire, key, priority)
        self.pending[self.order] = event
        self.keys[self.order] = key

    @precondition(lambda self: bool(self.pending))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        order = data.draw(st.sampled_from(sorted(self.pending)))
        self.engine.cancel(self.pending.pop(order))
        self.keys.pop(order, None)
        self.cancelled.add(order)

    @rule(delays=st.lists(st.integers(0, 30), min_size=1, max_size=4))
    def spawn_process(self, delays: list[int]) -> None:
        engine = self.engine

        def sleeper() -> Generator[int, None, None]:
            expected = engine.now
            for d in delays:
                yield d
                expected += d
                self.wakes.append((expected, engine.now))

        engine.process(sleeper(), "sleeper")

    @rule(span=st.integers(0, 60))
    def run_for(self, span: int) -> None:
        before = self.engine.now
        self.engine.run(until=before + span)
        assert self.engine.now == before + span

    @rule()
    def step(self) -> None:
        before = self.engine.now
        self.engine.step()
        assert self.engine.now >= before

    @invariant()
    def fired_in_order(self) -> None:
        times = [k[0] for k in self.fired]
        assert times == sorted(times), "events fired out of time order"

    @invariant()
    def nothing_due_is_left(self) -> None:
        for order, key in self.keys.items():
            assert self.engine.is_pending(self.pending[order]), f"event {key} vanished without firing"
            assert key[0] >= self.engine.now, f"the past event {key} was skipped"

    @invariant()
    def processes_wake_on_time(self) -> None:
        for expected, actual in self.wakes:
            assert expected == actual, f"process woke at {actual}, asked for {expected}"
