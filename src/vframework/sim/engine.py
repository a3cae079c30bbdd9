"""The discrete-event engine: integer nanoseconds, a deterministic queue, generator processes.

Design (after SimPy, made smaller and faster):

* Time is an ``int`` of nanoseconds; there is no floating point anywhere in the clock, so
  accounting identities hold exactly.
* An event *is* an int key, ``time << 42 | priority << 40 | seq``, with ``seq`` counted per
  priority: keys order events by time, then priority, then the order they were scheduled. The
  queue is a binary heap of these keys and a dict maps a live key to what it wakes. Ints compare
  in one C call where lists or tuples compare item by item, and the heap is the hot path of
  every simulation (this layout took the engine from 1.5x to about 2x SimPy's speed; see
  ``benchmarks/README.md``).
* A process's own events map to the process itself, and the run loop resumes it inline: a
  sleep costs one dict pop, one ``send``, one dict store and one ``heapreplace`` (a pop and a
  push in one sift), with no Python-level call in between.
* Cancelling an event removes its key from the dict (lazy deletion: the key stays in the heap
  and is skipped when it surfaces); a cancelled event never fires and costs one pop.
* A process is a generator. It yields an ``int`` (sleep that many ns), a :class:`Signal`
  (wait until it fires; the fired value is sent back) or another :class:`Process` (wait for
  it to finish). :meth:`Process.interrupt` throws :class:`Interrupt` into it.
* Random numbers come only from :meth:`Engine.rng`, one named stream per component, each
  derived from the run's single seed and the stream's name, so adding a component never
  changes another component's stream.

Limits that follow from the key layout: three priorities (0-2; the engine keeps a fourth for
itself) and 2**40 events per priority per run (days of simulation work at the engine's speed).
"""

from __future__ import annotations

import heapq
import itertools
import operator
from collections.abc import Callable, Generator
from typing import Any, SupportsIndex, TypeVar, overload

import numpy as np

__all__ = ["LATE", "NORMAL", "URGENT", "Engine", "Event", "Interrupt", "Process", "Signal"]

#: Priority of events that must precede ordinary ones at the same instant (interrupts).
URGENT = 0
#: Default priority.
NORMAL = 1
#: Priority of observers that must see the state after everything else at an instant (sampling).
LATE = 2
#: Priorities are 0 (most urgent) to ``PRIORITIES - 1``.
PRIORITIES = 3
_T = TypeVar("_T")
#: The engine's own priority, below every other: the event that ends :meth:`Engine.run`.
_STOP = 3
_STOP_RUN = ("stop", None)
#: The time of the stop event of a run without ``until``: after any event.
_END_OF_TIME = 1 << 256
#: Bits of an event key below its time: 2 for the priority, 40 for the sequence number.
_SEQ_BITS = 40
_TIME_SHIFT = _SEQ_BITS + 2


def _seq_base(priority: int) -> int:
    """The low bits of the first key of a priority."""
    return (priority << _SEQ_BITS) | 1


#: A scheduled event: an int key (see the module doc). Treat as opaque; use
#: :meth:`Engine.cancel`, :meth:`Engine.is_pending` and :func:`event_time`.
Event = int


def event_time(event: Event) -> int:
    """The time (ns) at which a scheduled event fires."""
    return event >> _TIME_SHIFT


class Interrupt(Exception):
    """Thrown into a process by :meth:`Process.interrupt`; ``cause`` says why."""

    def __init__(self, cause: object = None) -> None:
        super().__init__(cause)
        self.cause = cause


class Signal:
    """A condition processes can wait on; :meth:`fire` wakes every waiter with a value."""

    __slots__ = ("_waiters", "engine", "fired", "value")

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._waiters: list[Process] = []
        self.fired = False
        self.value: object = None

    def fire(self, value: object = None) -> None:
        """Wake every waiting process now (at the current time, in the order they waited)."""
        self.fired, self.value = True, value
        waiters, self._waiters = self._waiters, []
        for proc in waiters:
            proc._waiting_on = None
            proc._pending = self.engine._wake(0, proc, value)


#: A process: it yields delays (int ns), signals and processes to wait on; what it is sent back
#: depends on what it yielded (None after a delay, the value a signal fired with, the return
#: value of a process), hence Any; what it returns becomes :attr:`Process.value`.
ProcessGenerator = Generator["int | Signal | Process", Any, object]


class Process:
    """A generator driven by the engine. Create with :meth:`Engine.process`."""

    __slots__ = ("_finished", "_pending", "_waiting_on", "done", "engine", "gen", "name", "value")

    def __init__(self, engine: Engine, gen: ProcessGenerator, name: str) -> None:
        self.engine = engine
        self.gen = gen
        self.name = name
        self._pending: Event | None = None
        self.done = False
        self.value: object = None
        self._finished: Signal | None = None
        #: The signal (or another process's finished signal) this process waits on, if any.
        self._waiting_on: Signal | None = None

    def _resume(self, value: object = None, throw: BaseException | None = None) -> None:
        self._pending = None
        try:
            target = self.gen.throw(throw) if throw is not None else self.gen.send(value)
        except StopIteration as stop:
            self._finish(stop.value)
            return
        self._wait_on(target)

    def _finish(self, value: object) -> None:
        self.done, self.value = True, value
        if self._finished is not None:
            self._finished.fire(value)

    def _wait_on(self, target: object) -> None:
        if type(target) is int:
            if target < 0:
                raise ValueError(f"process {self.name!r} yielded a negative delay {target}")
            self._pending = self.engine._wake(target, self)
        elif isinstance(target, Signal):
            if target.fired:
                self._pending = self.engine._wake(0, self, target.value)
            else:
                target._waiters.append(self)
                self._waiting_on = target
        elif isinstance(target, Process):
            if target.done:
                self._pending = self.engine._wake(0, self, target.value)
            else:
                if target._finished is None:
                    target._finished = Signal(self.engine)
                target._finished._waiters.append(self)
                self._waiting_on = target._finished
        else:
            raise TypeError(
                f"process {self.name!r} yielded {target!r}; expected an int delay in ns, a Signal or a Process"
            )

    @property
    def finished(self) -> Signal:
        """A signal fired with the process's return value when it ends."""
        if self._finished is None:
            self._finished = Signal(self.engine)
            if self.done:
                self._finished.fire(self.value)
        return self._finished

    def interrupt(self, cause: object = None) -> None:
        """Throw :class:`Interrupt` into the process at the current time, abandoning its wait."""
        if self.done:
            return
        if getattr(self.gen, "gi_running", False):
            # Its pending wake-up is set only after it yields: the throw would come on top of it.
            raise RuntimeError(f"process {self.name!r} cannot interrupt itself")
        if self._pending is not None:
            self.engine.cancel(self._pending)
        if self._waiting_on is not None:
            # Abandon the wait for good: the signal firing later must not resume us again.
            self._waiting_on._waiters.remove(self)
            self._waiting_on = None
        self._pending = self.engine.schedule(0, self._throw, Interrupt(cause), URGENT)

    __call__ = _resume  # an event that carries a value to the process resumes it with the value

    def _throw(self, exc: BaseException) -> None:
        self._resume(None, exc)


class Engine:
    """The simulation clock and event queue. One per run; no global state."""

    __slots__ = ("_cancelled", "_queue", "_seq", "_seq_reads", "_stopping", "_streams", "_targets", "now", "seed")

    def __init__(self, seed: int = 0) -> None:
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.seed = seed
        self.now = 0
        #: Heap of event keys, live or cancelled.
        self._queue: list[Event] = []
        #: Live key -> a Process (resume it) or a ``(callback, arg)`` pair (call it); Any because
        #: the run loop tells them apart with ``type(target) is Process`` through local aliases
        #: (its hot path), which no type checker follows.
        self._targets: dict[Event, Any] = {}
        # One counter per priority, starting at the priority's bits: next() gives the low bits
        # of a key directly. Counting from 1 keeps every key truthy (0 would be a trap).
        self._seq = [itertools.count(_seq_base(p)).__next__ for p in range(_STOP + 1)]
        self._seq_reads = 0  # times events_fired read the counters (each read uses a number)
        self._cancelled = 0  # events cancelled before they fired
        self._stopping = False  # a run's stop event is in ``_targets``
        self._streams: dict[str, np.random.Generator] = {}

    # -- scheduling -----------------------------------------------------------------
    @overload
    def schedule(
        self, delay: int, callback: Callable[[None], object], arg: None = None, priority: int = NORMAL
    ) -> Event: ...
    @overload
    def schedule(self, delay: int, callback: Callable[[_T], object], arg: _T, priority: int = NORMAL) -> Event: ...
    def schedule(self, delay: int, callback: Callable[[Any], object], arg: Any = None, priority: int = NORMAL) -> Event:
        """Call ``callback(arg)`` after ``delay`` ns; returns the event, for :meth:`cancel`."""
        if type(delay) is not int:
            delay = self._as_ns(delay)
        if delay < 0:
            raise ValueError(f"cannot schedule an event in the past (delay {delay} ns)")
        if not 0 <= priority < PRIORITIES:
            raise ValueError(f"priority must be 0..{PRIORITIES - 1}, got {priority!r}")
        key = ((self.now + delay) << _TIME_SHIFT) | self._seq[priority]()
        self._targets[key] = (callback, arg)
        heapq.heappush(self._queue, key)
        return key

    @overload
    def schedule_at(
        self, time: int, callback: Callable[[None], object], arg: None = None, priority: int = NORMAL
    ) -> Event: ...
    @overload
    def schedule_at(self, time: int, callback: Callable[[_T], object], arg: _T, priority: int = NORMAL) -> Event: ...
    def schedule_at(
        self, time: int, callback: Callable[[Any], object], arg: Any = None, priority: int = NORMAL
    ) -> Event:
        """Call ``callback(arg)`` at absolute time ``time`` (ns)."""
        if type(time) is not int:
            time = self._as_ns(time)
        return self.schedule(time - self.now, callback, arg, priority)

    @staticmethod
    def _as_ns(value: SupportsIndex) -> int:
        try:
            return operator.index(value)  # numpy integers are fine; floats are not
        except TypeError:
            raise TypeError(f"event times are whole nanoseconds (int), got {value!r}") from None

    def _wake(self, delay: int, proc: Process, value: object = None) -> Event:
        """Schedule ``proc`` to resume with ``value`` after ``delay`` ns (NORMAL priority)."""
        key = ((self.now + delay) << _TIME_SHIFT) | self._seq[NORMAL]()
        # Only a plain Process takes the run loop's inline path; a subclass is called instead.
        self._targets[key] = proc if value is None and type(proc) is Process else (proc, value)
        heapq.heappush(self._queue, key)
        return key

    def cancel(self, event: Event) -> None:
        """Make a scheduled event never fire. Cancelling twice, or after it fired, is harmless."""
        if self._targets.pop(event, None) is not None:
            self._cancelled += 1

    @property
    def events_fired(self) -> int:
        """Number of events fired so far (cancelled ones are not counted).

        Derived, not counted: every event scheduled is fired, cancelled or still pending, and
        the sequence counters know how many were scheduled. This keeps a counter increment off
        the run loop's hot path. Read from inside an event, it counts that event."""
        reads = self._seq_reads
        self._seq_reads = reads + 1
        scheduled = sum(self._seq[p]() - _seq_base(p) - reads for p in range(PRIORITIES))
        return scheduled - self._cancelled - len(self._targets) + self._stopping

    def is_pending(self, event: Event) -> bool:
        """Whether the event is still to fire (not cancelled, not yet fired)."""
        return event in self._targets

    def process(self, gen: ProcessGenerator, name: str = "process") -> Process:
        """Start a generator as a process at the current time."""
        proc = Process(self, gen, name)
        proc._pending = self._wake(0, proc)
        return proc

    def signal(self) -> Signal:
        """A new :class:`Signal` on this engine."""
        return Signal(self)

    def peek(self) -> int | None:
        """Time of the next live event, or None when the queue is empty."""
        queue, targets = self._queue, self._targets
        while queue:
            key = queue[0]
            target = targets.get(key)
            if target is None:
                heapq.heappop(queue)  # cancelled, fired, or the key of a process running now
            elif target is _STOP_RUN:
                # Called during a run with nothing due before the run ends: look past its end.
                later = [k for k in queue if k != key and k in targets]
                return min(later) >> _TIME_SHIFT if later else None
            else:
                return key >> _TIME_SHIFT
        return None

    # -- running --------------------------------------------------------------------
    def run(self, until: int | None = None) -> None:
        """Fire events in (time, priority, seq) order, up to and including time ``until``.

        With ``until`` the clock ends exactly at ``until`` even if the queue empties first.
        """
        self._refuse_nesting("run")
        if until is not None and type(until) is not int:
            until = self._as_ns(until)
        queue, targets = self._queue, self._targets
        take = targets.pop
        pop, push, replace = heapq.heappop, heapq.heappush, heapq.heapreplace
        next_seq = self._seq[NORMAL]
        shift = _TIME_SHIFT
        kind, process, whole = type, Process, int  # locals: the hot path looks them up per event
        # The run ends when a stop event surfaces: at ``until`` after every other event of that
        # instant (its priority is below every user's), or after the last event. One key the
        # loop meets anyway costs less than comparing every key against a limit.
        stop = (until if until is not None else _END_OF_TIME) << shift | self._seq[_STOP]()
        targets[stop] = _STOP_RUN
        push(queue, stop)
        self._stopping = True
        try:
            while True:
                key = queue[0]
                target = take(key, None)
                if kind(target) is process:
                    # A process resumes: the hot path (a sleep ends), inlined. Its key stays on
                    # top of the heap while it runs unless it schedules something more urgent;
                    # then the key, no longer in ``targets``, is skipped when it surfaces.
                    self.now = now = key >> shift
                    try:
                        delay = target.gen.send(None)
                    except StopIteration as stop_iteration:
                        if queue[0] is key:
                            pop(queue)
                        target._pending = None
                        target._finish(stop_iteration.value)
                        continue
                    if kind(delay) is whole and delay >= 0:
                        target._pending = new = ((now + delay) << shift) | next_seq()
                        targets[new] = target
                        if queue[0] is key:
                            replace(queue, new)
                        else:
                            push(queue, new)
                    else:
                        if queue[0] is key:
                            pop(queue)
                        target._pending = None
                        target._wait_on(delay)
                    continue
                pop(queue)
                if target is None:  # cancelled
                    continue
                if target is _STOP_RUN:
                    break
                self.now = key >> shift
                target[0](target[1])
        finally:
            targets.pop(stop, None)  # left in the heap if the run ended early; skipped there
            self._stopping = False
        if until is not None and until > self.now:
            self.now = until

    def _refuse_nesting(self, what: str) -> None:
        if self._stopping:
            # The queue holds the outer run's stop event; an inner loop would consume it.
            raise RuntimeError(
                f"Engine.{what}() called from inside a run (from a callback or a process); schedule an event instead"
            )

    def step(self) -> bool:
        """Fire the next live event; False when there is none."""
        self._refuse_nesting("step")
        if self.peek() is None:
            return False
        key = heapq.heappop(self._queue)
        target = self._targets.pop(key)
        self.now = key >> _TIME_SHIFT
        if type(target) is Process:
            target._resume()
        else:
            target[0](target[1])
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
