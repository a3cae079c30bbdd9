"""The event engine against SimPy on the same model, and against a bare heapq loop.

Model (``timeouts``): ``PROCESSES`` processes, each sleeping through its own list of
pseudo-random integer delays (1..999 ns, one fixed numpy seed, the same lists for every
contender), ``size`` sleeps in total (1,000 x 1,000 = 1,000,000 by default).

* vframework: ``Engine().process(gen)``, ``gen`` yields the int delays.
* SimPy: ``env.process(gen)``, ``gen`` yields ``env.timeout(d)``.
* heapq: the practical limit of a pure-Python event loop: a bare loop over int keys
  ``time << 20 | proc`` (ints compare fastest; one pending sleep per process, so the process
  number breaks ties and names the process), replacing the head with the process's next
  wake-up, read from its delay list through a per-process iterator. No callbacks, no
  generators, no priorities, no cancellation, no lookup from key to process.

Model (``cancel``): the same, but every sleep is guarded by a watchdog timer armed before it
(at ``d + 1000`` ns, so it would fire after the sleep ends) and cancelled after it: a
retransmission timer, the common use of cancellable events. A *step* is one sleep plus one
scheduled-and-cancelled timer. vframework cancels with ``Engine.cancel``; SimPy cannot take an
event out of its queue, so its timer is cancelled the SimPy way, by clearing the timeout's
callbacks (the event is still popped, with nothing to do); the heapq loop forgets the
watchdog's key and skips it when it surfaces (lazy deletion, as the engine does).

* heapq+generators (``timeouts`` only): the same generators resumed by a bare heapq loop over
  events shaped like the engine's (int keys, a dict from key to generator): the floor for an
  engine whose processes are generators and whose events can be cancelled, measured so the
  distance to the 2x goal can be read against it.

Rows: events (or steps) per second of vframework, with SimPy, heapq and heapq+generators as
baselines; the goal stated for the engine is a ratio of at least 2 against SimPy.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Generator
from typing import Any

import numpy as np
from common import best_of_interleaved, row

from vframework.sim.engine import Engine

#: Number of concurrent processes (the size of the event queue).
PROCESSES = 1000
#: Sleeps in the default run; ``--quick`` runs a tenth.
DEFAULT_SIZE = 1_000_000
QUICK_SIZE = 100_000
#: Small enough for the smoke test.
SMOKE_SIZE = 2_000
#: The seed of the delay lists.
SEED = 20261124
#: The process number's bits in the bare heapq loops' keys (with the event kind in ``cancel``).
_PROCESS_MASK = (1 << 20) - 1
_CANCEL_MASK = (1 << 21) - 1
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
    import simpy  # noqa: PLC0415  (optional: only the SimPy baseline needs it)

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
        pop, replace = heapq.heappop, heapq.heapreplace
        next_delay = [iter(ds).__next__ for ds in delays]  # each process's position in its delays
        # int keys ``time << 20 | p``: one pending sleep per process, so the process number alone
        # breaks ties and no lookup from key to process is needed
        queue = list(range(len(delays)))
        fired = 0
        while queue:
            key = queue[0]
            p = key & _PROCESS_MASK
            try:
                d = next_delay[p]()
            except StopIteration:
                pop(queue)
                continue
            fired += 1
            replace(queue, (((key >> 20) + d) << 20) | p)
        assert fired == sum(len(ds) for ds in delays)

    return body


def generator_timeouts(delays: list[list[int]]) -> Callable[[], Any]:
    """The floor for any generator-process engine: the same generators resumed by a bare heapq
    loop over the engine's own event shape (int keys ``time << 42 | seq``, a dict from key to
    generator), with no engine around it: no clock attribute, no process objects, no checks."""

    def proc(ds: list[int]) -> Generator[int, Any, None]:
        yield from ds

    gens = [proc(ds) for ds in delays]

    def body() -> None:
        pop, replace = heapq.heappop, heapq.heapreplace
        next_seq = itertools.count(1).__next__
        targets = {next_seq(): g for g in gens}
        queue = list(targets)
        take = targets.pop
        while queue:
            key = queue[0]
            g = take(key)
            try:
                d = g.send(None)
            except StopIteration:
                pop(queue)
                continue
            new = (((key >> 42) + d) << 42) | next_seq()
            targets[new] = g
            replace(queue, new)
        assert next_seq() == len(delays) + sum(len(ds) for ds in delays) + 1

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
    import simpy  # noqa: PLC0415  (optional: only the SimPy baseline needs it)

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
        pop, push, replace = heapq.heappop, heapq.heappush, heapq.heapreplace
        n = len(delays)
        next_delay = [iter(ds).__next__ for ds in delays]
        # int keys ``time << 21 | p << 1 | kind`` (kind 0: wake process p, 1: p's watchdog); one
        # of each per process, so the key is unique and names its process. ``armed[p]`` is the
        # key of p's live watchdog; cancelling clears it and the key is skipped when it surfaces
        # (lazy deletion, as the engine does).
        armed: list[int | None] = [None] * n
        queue = [p << 1 for p in range(n)]
        while queue:
            key = queue[0]
            p = (key & _CANCEL_MASK) >> 1
            if key & 1:
                pop(queue)
                if armed[p] == key:
                    _never(p)
                continue
            armed[p] = None  # cancel the watchdog of the sleep that just ended
            try:
                d = next_delay[p]()
            except StopIteration:
                pop(queue)
                continue
            now = key >> 21
            armed[p] = w = ((now + d + WATCHDOG_NS) << 21) | (p << 1) | 1
            push(queue, w)
            replace(queue, ((now + d) << 21) | (p << 1))

    return body


# -- the benchmark --------------------------------------------------------------------------------


def _compare(
    benchmark: str, unit: str, work: int, setups: dict[str, Setup], repeat: int, **extra: Any
) -> list[dict[str, Any]]:
    best = best_of_interleaved(setups, repeat)
    rate = {name: work / seconds for name, seconds in best.items()}
    return [
        row(
            benchmark,
            "vframework",
            rate["vframework"],
            unit,
            rate[base],
            base,
            work=work,
            repeat=repeat,
            seconds=best["vframework"],
            baseline_seconds=best[base],
            **extra,
        )
        for base in setups
        if base != "vframework"
    ]


def run(quick: bool = False, size: int | None = None, repeat: int | None = None) -> list[dict[str, Any]]:
    """Rows for ``engine.timeouts`` and ``engine.cancel`` (vframework vs SimPy, vs heapq).

    ``size`` is the number of sleeps (default 1,000,000; 100,000 with ``quick``); ``repeat`` the
    number of interleaved rounds whose best is kept (default 5).
    """
    try:
        import simpy  # noqa: F401, PLC0415
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("bench_engine needs SimPy: pip install simpy (or vframework[bench])") from exc
    size = size or (QUICK_SIZE if quick else DEFAULT_SIZE)
    repeat = repeat or 5
    delays = make_delays(size)
    work = sum(len(ds) for ds in delays)
    shape = {"processes": len(delays)}
    rows = _compare(
        "engine.timeouts",
        "events/s",
        work,
        {
            "vframework": lambda: vframework_timeouts(delays),
            "simpy": lambda: simpy_timeouts(delays),
            "heapq": lambda: heapq_timeouts(delays),
            "heapq+generators": lambda: generator_timeouts(delays),
        },
        repeat,
        **shape,
    )
    rows += _compare(
        "engine.cancel",
        "steps/s",
        work,
        {
            "vframework": lambda: vframework_cancel(delays),
            "simpy": lambda: simpy_cancel(delays),
            "heapq": lambda: heapq_cancel(delays),
        },
        repeat,
        **shape,
    )
    return rows


if __name__ == "__main__":
    import sys

    sys.exit(__import__("run").main(["engine", *sys.argv[1:]]))
