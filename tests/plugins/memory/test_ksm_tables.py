"""KSM's trees as tables decide exactly what KSM's page-by-page walk decides.

The reference below is the algorithm as ksm.rst describes it and as this plugin first ran it:
each quiet page looked up in turn, a Python dictionary per tree. The plugin decides a scan's
pages together in numpy. Two identical hosts, one per implementation, go through the same scans
and guest writes; after every step their frames, mappings and KSM counters must be equal.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st
from vf_helpers import frames_by_content, guest_step, sharing_host
from vframework_memory import Ksm
from vframework_memory.content import share_checked

from vframework.api import MemoryContext
from vframework.hv.hypervisor import Hypervisor

PAGES = 24


class ReferenceKsm(Ksm):
    """The page-by-page walk, with dictionaries for the trees."""

    def __init__(self, params: Any) -> None:
        super().__init__(params)
        self.stable: dict[int, int] = {}  # type: ignore[assignment]
        self.unstable: dict[int, tuple[int, int, int]] = {}  # type: ignore[assignment]

    def _end_scan(self, memory: MemoryContext) -> None:
        self.unstable.clear()
        memory.counters["full_scans"] += 1

    def _merge(
        self,
        memory: MemoryContext,
        vm_id: int,
        ppns: npt.NDArray[np.int64],
        mpns: npt.NDArray[np.int64],
        tokens: npt.NDArray[np.uint64],
    ) -> None:
        share_ppns: list[int] = []
        sources: list[int] = []
        targets: list[int] = []
        expect: list[int] = []
        for ppn, mpn, token in zip(ppns.tolist(), mpns.tolist(), tokens.tolist(), strict=True):
            stable = self.stable.get(token)
            if stable is not None:
                share_ppns.append(ppn)
                sources.append(mpn)
                targets.append(stable)
                expect.append(token)
                continue
            item = self.unstable.get(token)
            if item is None:
                self.unstable[token] = (vm_id, ppn, mpn)
            elif item[:2] != (vm_id, ppn):
                other_vm, other_ppn, other_mpn = item
                del self.unstable[token]
                if other_vm != vm_id and not any(v.id == other_vm for v in memory.vms):
                    continue
                if int(memory.backing(other_vm, [other_ppn])[0]) != other_mpn:
                    continue
                if int(memory.content([other_mpn])[0]) != token:
                    # Rewritten since it was inserted: memcmp differs, the page goes in instead.
                    self.unstable[token] = (vm_id, ppn, mpn)
                    continue
                share_ppns.append(ppn)
                sources.append(mpn)
                targets.append(other_mpn)
                expect.append(token)
                self.stable[token] = other_mpn
        if not share_ppns:
            return
        ok = share_checked(memory, vm_id, share_ppns, sources, targets, expect)
        for token, mpn, good in zip(expect, targets, ok.tolist(), strict=True):
            if not good and self.stable.get(token) == mpn:
                del self.stable[token]


def _host(contents: list[list[int]]) -> Hypervisor:
    hv: Hypervisor = sharing_host(contents)
    return hv


def _state(hv: Hypervisor, service: Ksm) -> tuple[Any, ...]:
    memory = hv.machine.memory
    counters = {k: hv.counters[k] for k in ("pages_scanned", "pages_unshared", "pages_volatile", "full_scans")}
    return (
        [vm.p2m.tolist() for vm in hv.vms.values()],
        memory.state.tolist(),
        memory.refcount.tolist(),
        memory.content.tolist(),
        counters,
        len(service.stable),
    )


tokens = st.integers(1, 8)  # few contents: pages meet each other often
pages = st.tuples(st.integers(0, 2), st.integers(0, PAGES - 1))
steps = st.lists(
    st.one_of(
        st.tuples(st.just("scan"), st.integers(1, 40)),
        st.tuples(st.just("write"), pages, tokens),
        # A page's frame taken back (a tree page that is no longer where it was inserted)...
        st.tuples(st.just("reclaim"), pages),
        # ... and backed again, on whatever frame is free.
        st.tuples(st.just("grant"), pages),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(contents=st.lists(st.lists(tokens, min_size=PAGES, max_size=PAGES), min_size=3, max_size=3), steps=steps)
def test_the_tables_decide_as_the_page_by_page_walk(contents: list[list[int]], steps: list[tuple[Any, ...]]) -> None:
    _lockstep(contents, steps)


def _unique(vm: int, first: int) -> list[int]:
    """A VM's pages: ``first``, then contents no other page has."""
    return [first] + [1000 * (vm + 1) + i for i in range(1, PAGES)]


def test_a_tree_page_that_moved_is_dropped_alike() -> None:
    """VM 0's page enters the unstable tree, loses its frame, and VM 1's equal page meets it."""
    contents = [_unique(0, 7), _unique(1, 7), _unique(2, 9)]
    scan = PAGES  # one VM's pages per scan
    steps = [("scan", 3 * scan), ("scan", scan), ("reclaim", (0, 0)), ("scan", scan), ("scan", 3 * scan)]
    _, services = _lockstep(contents, steps)
    assert len(services[1].stable) == 0, "the moved tree page was merged with"


def test_a_stale_stable_page_leaves_the_tree_alike() -> None:
    """Two pages merge; both are rewritten, so the stable frame holds other content; a third
    page with the old content fails the full comparison, and the stable entry goes."""
    contents = [_unique(0, 7), _unique(1, 7), _unique(2, 9)]
    scan = PAGES
    hosts, services = _lockstep(contents, [("scan", 3 * scan), ("scan", 2 * scan)])
    assert [len(s.stable) for s in services] == [1, 1], "the two pages of content 7 merged"
    later = [("write", (0, 0), 50), ("write", (1, 0), 51), ("write", (2, 0), 7)]
    later += [("scan", scan), ("scan", 3 * scan), ("scan", 3 * scan)]
    _lockstep(contents, later, hosts, services)
    assert [len(s.stable) for s in services] == [0, 0]


def _lockstep(
    contents: list[list[int]],
    steps: list[tuple[Any, ...]],
    hosts: list[Hypervisor] | None = None,
    services: list[Ksm] | None = None,
) -> tuple[list[Hypervisor], list[Ksm]]:
    """Both implementations through ``steps`` on hosts of ``contents`` (or on the hosts given),
    their states compared after every step."""
    hosts = hosts or [_host(contents), _host(contents)]
    services = services or [ReferenceKsm(Ksm.params_model(pages_to_scan=1)), Ksm(Ksm.params_model(pages_to_scan=1))]
    for step in steps:
        for hv, service in zip(hosts, services, strict=True):
            _apply(hv, service, step)
        assert _state(hosts[0], services[0]) == _state(hosts[1], services[1]), step
    return hosts, services


def _apply(hv: Hypervisor, service: Ksm, step: tuple[Any, ...], wake_up: int | None = None) -> None:
    """One step on one host; a scan in wake-ups of at most ``wake_up`` pages if given."""
    kind, *args = step
    if kind == "scan":
        left = args[0]
        while left:
            now = min(left, wake_up or left)
            service.params = service.params.model_copy(update={"pages_to_scan": now})
            service.run(hv.memory, 0)
            left -= now
        return
    (vm_id, ppn), *rest = args
    guest_step(hv, kind, vm_id, ppn, *rest)


def _decisions(hv: Hypervisor, service: Ksm) -> tuple[Any, ...]:
    """What KSM decided, whatever the frames are numbered: the host's pages and frames, the
    counters and the stable tree's size."""
    counters = {k: hv.counters[k] for k in ("pages_scanned", "pages_unshared", "pages_volatile", "full_scans")}
    return frames_by_content(hv), counters, len(service.stable)


@settings(max_examples=300, deadline=None)
@given(
    contents=st.lists(st.lists(tokens, min_size=PAGES, max_size=PAGES), min_size=3, max_size=3),
    steps=steps,
    wake_up=st.integers(1, 5),
)
def test_a_scan_decides_alike_in_wake_ups_of_any_size(
    contents: list[list[int]], steps: list[tuple[Any, ...]], wake_up: int
) -> None:
    """KSM looks pages up one at a time: the same pages scanned in small wake-ups merge the same
    pages, keep the same contents and count the same (the frames freed may be reused in another
    order, so frames are compared by what they hold, not their numbers)."""
    hosts = [_host(contents), _host(contents)]
    services = [Ksm(Ksm.params_model(pages_to_scan=1)), Ksm(Ksm.params_model(pages_to_scan=1))]
    for step in steps:
        _apply(hosts[0], services[0], step, wake_up)
        _apply(hosts[1], services[1], step)
        assert _decisions(hosts[0], services[0]) == _decisions(hosts[1], services[1]), step


def test_a_rewritten_tree_page_is_passed_by() -> None:
    """VM 0's page 0 enters the unstable tree with content 1, then is rewritten (2) in place.
    VM 0's pages 2 and 3 (content 1) must not meet it: as KSM's memcmp would, the first goes into
    the tree and the second merges with it."""
    contents = [[1, 2] + [1] * (PAGES - 2), [1] * PAGES, [1] * PAGES]
    hosts, _ = _lockstep(contents, [("scan", 34), ("scan", 40), ("write", (0, 0), 2), ("scan", 2)])
    hv = hosts[1]
    p2m = hv.vms[0].p2m
    assert p2m[2] == p2m[3], "pages 2 and 3 merged"
    assert int(hv.machine.memory.content[p2m[0]]) == 2
