"""The event engine against SimPy on the same model, and against a bare heapq loop.

Model (``timeouts``): ``PROCESSES`` processes, each sleeping through its own list of
pseudo-random integer delays (1..999 ns, one fixed numpy seed, the same lists for every
contender), ``size`` sleeps in total (1,000 x 1,000 = 1,000,000 by default).

* vframework: ``Engine().process(gen)``, ``gen`` yields the int delays.
* SimPy: ``env.process(gen)``, ``gen`` yields ``env.timeout(d)``.
* heapq: the practical limit of a pure-Python event loop: a bare loop popping
  ``(time, seq, proc)`` tuples and pushing the next one, read from the process's delay list
  through a per-process iterator (its delay index). No callbacks, no generators, no
  priorities, no cancellation.

Model (``cancel``): the same, but every sleep is guarded by a watchdog timer armed before it
(at ``d + 1000`` ns, so it would fire after the sleep ends) and cancelled after it: a
retransmission timer, the common use of cancellable events. A *step* is one sleep plus one
scheduled-and-cancelled timer. vframework cancels with ``Engine.cancel``; SimPy cannot take an
event out of its queue, so its timer is cancelled the SimPy way, by clearing the timeout's
callbacks (the event is still popped, with nothing to do); the heapq loop marks the entry dead
(lazy deletion, as the engine does).

* heapq+generators (``timeouts`` only): the same generators resumed by a bare heapq loop over
  event lists shaped like the engine's: the floor for any engine whose processes are
  generators, measured so the distance to the 2x goal can be read against it.

Rows: events (or steps) per second of vframework, with SimPy, heapq and heapq+generators as
baselines; the goal stated for the engine is a ratio of at least 2 against SimPy.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Generator
from typing import Any

import numpy as np
from common import best_of_interleaved, row

from vframework.engine import Engine

#: Number of concurrent processes (the size of the event queue).
PROCESSES = 1000
#: Sleeps in the default run; ``--quick`` runs a tenth.
DEFAULT_SIZE = 1_000_000
QUICK_SIZE = 100_000
#: Small enough for the smoke test.
SMOKE_SIZE = 2_000
#: The seed of the delay lists.
SEED = 20261124
#: The watchdog's extra delay beyond the sleep it guards (> the largest delay: it never fires).
WATCHDOG_NS = 1000

Setup = Callable[[], Callable[[], Any]]


def make_delays(size: int, processes: int = PROCESSES) -> list[list[int]]:
    """``processes`` lists of ``size // processes`` delays in ns, as Python ints (not numpy
    scalars: the engine accepts ``int`` only, and all contenders should see the same objects)."""
    processes = max(1, min(processes, size))
    per_process = max(1, size // processes)
    rng = np.random.default_rng(SEED)
    return rng.integers(1, 1000, size=(processes, per_process), dtype=np.int64).tolist()


# -- timeouts -----------------------------------------------------------------------------------


def vframework_timeouts(delays: list[list[int]]) -> Callable[[], Any]:
    engine = Engine()

    def proc(ds: list[int]) -> Generator[int, Any, None]:
        yield from ds

    for ds in delays:
        engine.process(proc(ds))
    expected = sum(len(ds) for ds in delays)

    def body() -> None:
        engine.run()
        # one start event per process plus one per sleep
        assert engine.events_fired == expected + len(delays), engine.events_fired

    return body


def simpy_timeouts(delays: list[list[int]]) -> Callable[[], Any]:
    import simpy

    env = simpy.Environment()

    def proc(ds: list[int]) -> Generator[Any, Any, None]:
        timeout = env.timeout
        for d in ds:
            yield timeout(d)

    for ds in delays:
        env.process(proc(ds))
    end = max(sum(ds) for ds in delays)

    def body() -> None:
        env.run()
        assert env.now == end, env.now

    return body


def heapq_timeouts(delays: list[list[int]]) -> Callable[[], Any]:
    # Nothing to set up: the loop builds its queue as it runs (microseconds).
    def body() -> None:
        push, pop = heapq.heappush, heapq.heappop
        next_delay = [iter(ds).__next__ for ds in delays]  # each process's position in its delays
        queue = [(0, p, p) for p in range(len(delays))]
        seq = len(queue)
        while queue:
            now, _, p = pop(queue)
            try:
                d = next_delay[p]()
            except StopIteration:
                continue
            seq += 1
            push(queue, (now + d, seq, p))
        assert seq == len(delays) + sum(len(ds) for ds in delays)

    return body


def generator_timeouts(delays: list[list[int]]) -> Callable[[], Any]:
    """The floor for any generator-process engine: the same generators resumed by a bare heapq
    loop over ``[time, order, generator, arg]`` lists (the engine's own event shape), with no
    engine around it: no clock attribute, no process objects, no cancellation checks."""
    def proc(ds: list[int]) -> Generator[int, Any, None]:
        yield from ds

    gens = [proc(ds) for ds in delays]

    def body() -> None:
        push, pop = heapq.heappush, heapq.heappop
        queue = [[0, p, g, None] for p, g in enumerate(gens)]
        seq = len(queue)
        while queue:
            now, _, g, _ = pop(queue)
            try:
                d = g.send(None)
            except StopIteration:
                continue
            seq += 1
            push(queue, [now + d, seq, g, None])
        assert seq == len(delays) + sum(len(ds) for ds in delays)
    return body


# -- schedule + cancel ----------------------------------------------------------------------------


def _never(_: Any) -> None:
    raise AssertionError("a cancelled watchdog fired")


def vframework_cancel(delays: list[list[int]]) -> Callable[[], Any]:
    engine = Engine()
    schedule, cancel = engine.schedule, engine.cancel

    def proc(ds: list[int]) -> Generator[int, Any, None]:
        for d in ds:
            watchdog = schedule(d + WATCHDOG_NS, _never)
            yield d
            cancel(watchdog)

    for ds in delays:
        engine.process(proc(ds))
    expected = sum(len(ds) for ds in delays) + len(delays)

    def body() -> None:
        engine.run()
        assert engine.events_fired == expected, engine.events_fired

    return body


def simpy_cancel(delays: list[list[int]]) -> Callable[[], Any]:
    import simpy

    env = simpy.Environment()

    def proc(ds: list[int]) -> Generator[Any, Any, None]:
        timeout = env.timeout
        for d in ds:
            watchdog = timeout(d + WATCHDOG_NS)
            watchdog.callbacks.append(_never)
            yield timeout(d)
            watchdog.callbacks.clear()  # type: ignore[union-attr]

    for ds in delays:
        env.process(proc(ds))

    return env.run


def heapq_cancel(delays: list[list[int]]) -> Callable[[], Any]:
    def body() -> None:
        push, pop = heapq.heappush, heapq.heappop
        n = len(delays)
        next_delay = [iter(ds).__next__ for ds in delays]
        watchdog: list[list[Any] | None] = [None] * n
        # entries: [time, seq, what]; what = p (wake process p), ~p (p's watchdog), None (cancelled)
        queue = [[0, p, p] for p in range(n)]
        seq = n
        while queue:
            now, _, p = pop(queue)
            if p is None:
                continue
            if p < 0:
                _never(p)
            w = watchdog[p]
            if w is not None:
                w[2] = None  # cancel: lazy deletion
            try:
                d = next_delay[p]()
            except StopIteration:
                continue
            seq += 1
            w = watchdog[p] = [now + d + WATCHDOG_NS, seq, ~p]
            push(queue, w)
            seq += 1
            push(queue, [now + d, seq, p])

    return body


# -- the benchmark --------------------------------------------------------------------------------


def _compare(benchmark: str, unit: str, work: int, setups: dict[str, Setup], repeat: int,
             **extra: Any) -> list[dict[str, Any]]:
    best = best_of_interleaved(setups, repeat)
    rate = {name: work / seconds for name, seconds in best.items()}
    return [
        row(benchmark, "vframework", rate["vframework"], unit, rate[base], base, work=work, repeat=repeat,
            seconds=best["vframework"], baseline_seconds=best[base], **extra)
        for base in setups if base != "vframework"
    ]


def run(quick: bool = False, size: int | None = None, repeat: int | None = None) -> list[dict[str, Any]]:
    """Rows for ``engine.timeouts`` and ``engine.cancel`` (vframework vs SimPy, vs heapq).

    ``size`` is the number of sleeps (default 1,000,000; 100,000 with ``quick``); ``repeat`` the
    number of interleaved rounds whose best is kept (default 5).
    """
    try:
        import simpy  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("bench_engine needs SimPy: pip install simpy (or vframework[bench])") from exc
    size = size or (QUICK_SIZE if quick else DEFAULT_SIZE)
    repeat = repeat or 5
    delays = make_delays(size)
    work = sum(len(ds) for ds in delays)
    shape = {"processes": len(delays)}
    rows = _compare(
        "engine.timeouts", "events/s", work,
        {
            "vframework": lambda: vframework_timeouts(delays),
            "simpy": lambda: simpy_timeouts(delays),
            "heapq": lambda: heapq_timeouts(delays),
            "heapq+generators": lambda: generator_timeouts(delays),
        },
        repeat, **shape,
    )
    rows += _compare(
        "engine.cancel", "steps/s", work,
        {
            "vframework": lambda: vframework_cancel(delays),
            "simpy": lambda: simpy_cancel(delays),
            "heapq": lambda: heapq_cancel(delays),
        },
        repeat, **shape,
    )
    return rows


if __name__ == "__main__":
    import sys

    sys.exit(__import__("run").main(["engine", *sys.argv[1:]]))
