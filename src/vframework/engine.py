"""The discrete-event engine: integer nanoseconds, a deterministic queue, generator processes.

Design (after SimPy, made smaller and faster):

* Time is an ``int`` of nanoseconds; there is no floating point anywhere in the clock, so
  accounting identities hold exactly.
* The queue is a binary heap of ``[time, order, callback, arg]`` lists, where ``order`` is
  ``priority << 40 | seq`` and ``seq`` a global counter: two events at the same time fire by
  priority, then in the order they were scheduled. The tie-break is deterministic and never
  compares callbacks (one int comparison, not two).
* A process's own events have the process itself as their callback, and the run loop resumes
  it inline: a process that sleeps costs one heap pop, one ``send`` and one heap push per
  sleep, with no Python-level call in between (the hot path of every simulation).
* Cancelling an event blanks its callback in place (lazy deletion); a cancelled event never
  fires and costs one pop.
* A process is a generator. It yields an ``int`` (sleep that many ns), a :class:`Signal`
  (wait until it fires; the fired value is sent back) or another :class:`Process` (wait for
  it to finish). :meth:`Process.interrupt` throws :class:`Interrupt` into it.
* Random numbers come only from :meth:`Engine.rng`, one named stream per component, each
  derived from the run's single seed and the stream's name, so adding a component never
  changes another component's stream.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Generator
from typing import Any

import numpy as np

__all__ = ["Engine", "Event", "Process", "Signal", "Interrupt", "URGENT", "NORMAL", "LATE"]

#: Priority of events that must precede ordinary ones at the same instant (interrupts).
URGENT = 0
#: Default priority.
NORMAL = 1
#: Priority of observers that must see the state after everything else at an instant (sampling).
LATE = 2
_heappush = heapq.heappush
#: ``order`` of a NORMAL event before its sequence number is or-ed in (2**40 events per run).
_NORMAL_KEY = NORMAL << 40

#: A scheduled event: ``[time, order, callback, arg]``. Treat as opaque; use
#: :meth:`Engine.cancel` and :func:`event_time`.
Event = list


def event_time(event: Event) -> int:
    """The time (ns) at which a scheduled event fires."""
    return int(event[0])


class Interrupt(Exception):  # noqa: N818 - the field's word, like SimPy's
    """Thrown into a process by :meth:`Process.interrupt`; ``cause`` says why."""

    def __init__(self, cause: Any = None) -> None:
        super().__init__(cause)
        self.cause = cause


class Signal:
    """A condition processes can wait on; :meth:`fire` wakes every waiter with a value."""

    __slots__ = ("engine", "_waiters", "fired", "value")

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._waiters: list[Process] = []
        self.fired = False
        self.value: Any = None

    def fire(self, value: Any = None) -> None:
        """Wake every waiting process now (at the current time, in the order they waited)."""
        self.fired, self.value = True, value
        waiters, self._waiters = self._waiters, []
        for proc in waiters:
            proc._waiting_on = None
            proc._pending = self.engine.schedule(0, proc, value)


ProcessGenerator = Generator[Any, Any, Any]


class Process:
    """A generator driven by the engine. Create with :meth:`Engine.process`."""

    __slots__ = ("engine", "gen", "name", "_pending", "done", "value", "_finished", "_waiting_on")

    def __init__(self, engine: Engine, gen: ProcessGenerator, name: str) -> None:
        self.engine = engine
        self.gen = gen
        self.name = name
        self._pending: Event | None = None
        self.done = False
        self.value: Any = None
        self._finished: Signal | None = None
        #: The signal (or another process's finished signal) this process waits on, if any.
        self._waiting_on: Signal | None = None

    def _resume(self, value: Any = None, throw: BaseException | None = None) -> None:
        self._pending = None
        try:
            target = self.gen.throw(throw) if throw is not None else self.gen.send(value)
        except StopIteration as stop:
            self._finish(stop.value)
            return
        self._wait_on(target)

    def _finish(self, value: Any) -> None:
        self.done, self.value = True, value
        if self._finished is not None:
            self._finished.fire(value)

    def _wait_on(self, target: Any) -> None:
        if type(target) is int:
            if target < 0:
                raise ValueError(f"process {self.name!r} yielded a negative delay {target}")
            self._pending = self.engine.schedule(target, self)
        elif isinstance(target, Signal):
            if target.fired:
                self._pending = self.engine.schedule(0, self, target.value)
            else:
                target._waiters.append(self)
                self._waiting_on = target
        elif isinstance(target, Process):
            if target.done:
                self._pending = self.engine.schedule(0, self, target.value)
            else:
                if target._finished is None:
                    target._finished = Signal(self.engine)
                target._finished._waiters.append(self)
                self._waiting_on = target._finished
        else:
            raise TypeError(
                f"process {self.name!r} yielded {target!r}; expected an int delay in ns, "
                "a Signal or a Process"
            )

    @property
    def finished(self) -> Signal:
        """A signal fired with the process's return value when it ends."""
        if self._finished is None:
            self._finished = Signal(self.engine)
            if self.done:
                self._finished.fire(self.value)
        return self._finished

    def interrupt(self, cause: Any = None) -> None:
        """Throw :class:`Interrupt` into the process at the current time, abandoning its wait."""
        if self.done:
            return
        if self._pending is not None:
            self.engine.cancel(self._pending)
        if self._waiting_on is not None:
            # Abandon the wait for good: the signal firing later must not resume us again.
            self._waiting_on._waiters.remove(self)
            self._waiting_on = None
        self._pending = self.engine.schedule(0, self._throw, Interrupt(cause), URGENT)

    __call__ = _resume  # an event whose callback is the process resumes it

    def _throw(self, exc: BaseException) -> None:
        self._resume(None, exc)


class Engine:
    """The simulation clock and event queue. One per run; no global state."""

    def __init__(self, seed: int = 0) -> None:
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.seed = seed
        self.now = 0
        self._queue: list[Event] = []
        self._counter = itertools.count(1)
        self._streams: dict[str, np.random.Generator] = {}
        #: Number of events fired so far (cancelled ones are not counted).
        self.events_fired = 0

    # -- scheduling -----------------------------------------------------------------
    def schedule(
        self, delay: int, callback: Callable[[Any], Any], arg: Any = None, priority: int = NORMAL
    ) -> Event:
        """Call ``callback(arg)`` after ``delay`` ns; returns the event, for :meth:`cancel`."""
        if delay < 0:
            raise ValueError(f"cannot schedule an event in the past (delay {delay} ns)")
        event = [self.now + delay, (priority << 40) | next(self._counter), callback, arg]
        _heappush(self._queue, event)
        return event

    def schedule_at(
        self, time: int, callback: Callable[[Any], Any], arg: Any = None, priority: int = NORMAL
    ) -> Event:
        """Call ``callback(arg)`` at absolute time ``time`` (ns)."""
        return self.schedule(time - self.now, callback, arg, priority)

    @staticmethod
    def cancel(event: Event) -> None:
        """Make a scheduled event never fire. Cancelling twice, or after it fired, is harmless."""
        event[2] = None

    @staticmethod
    def is_pending(event: Event) -> bool:
        """Whether the event is still to fire (not cancelled, not yet fired)."""
        return event[2] is not None

    def process(self, gen: ProcessGenerator, name: str = "process") -> Process:
        """Start a generator as a process at the current time."""
        proc = Process(self, gen, name)
        proc._pending = self.schedule(0, proc)
        return proc

    def signal(self) -> Signal:
        """A new :class:`Signal` on this engine."""
        return Signal(self)

    def peek(self) -> int | None:
        """Time of the next live event, or None when the queue is empty."""
        queue = self._queue
        while queue and queue[0][2] is None:
            heapq.heappop(queue)
        return queue[0][0] if queue else None

    # -- running --------------------------------------------------------------------
    def run(self, until: int | None = None) -> None:
        """Fire events in (time, priority, seq) order, up to and including time ``until``.

        With ``until`` the clock ends exactly at ``until`` even if the queue empties first.
        """
        queue = self._queue
        pop, push = heapq.heappop, heapq.heappush
        next_seq = self._counter.__next__
        fired = 0
        limit = until if until is not None else float("inf")
        try:
            while queue:
                event = queue[0]
                if event[0] > limit:
                    break
                pop(queue)
                callback = event[2]
                if callback is None:
                    continue
                event[2] = None  # fired events count as no longer pending
                self.now = now = event[0]
                fired += 1
                if type(callback) is not Process:
                    callback(event[3])
                    continue
                # A process resumes: the hot path (a sleep ends), inlined.
                try:
                    target = callback.gen.send(event[3])
                except StopIteration as stop:
                    callback._pending = None
                    callback._finish(stop.value)
                    continue
                if type(target) is int and target >= 0:
                    callback._pending = event = [now + target, _NORMAL_KEY | next_seq(), callback, None]
                    push(queue, event)
                else:
                    callback._pending = None
                    callback._wait_on(target)
        finally:
            self.events_fired += fired
        if until is not None and until > self.now:
            self.now = until

    def step(self) -> bool:
        """Fire the next live event; False when there is none."""
        when = self.peek()
        if when is None:
            return False
        event = heapq.heappop(self._queue)
        callback = event[2]
        event[2] = None
        self.now = event[0]
        self.events_fired += 1
        callback(event[3])
        return True

    # -- randomness -----------------------------------------------------------------
    def rng(self, name: str) -> np.random.Generator:
        """The random stream called ``name``: the same seed and name always give the same stream."""
        stream = self._streams.get(name)
        if stream is None:
            # The whole name is the key (a hash of it could collide: two VMs sharing a stream).
            seq = np.random.SeedSequence(entropy=self.seed, spawn_key=tuple(name.encode("utf-8")))
            stream = self._streams[name] = np.random.Generator(np.random.PCG64(seq))
        return stream
