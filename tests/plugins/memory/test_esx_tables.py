"""ESX's scanner decides a period's pages together "as if one at a time, in the order they were
drawn": the same pages scanned one per call must decide alike."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from vf_helpers import frames_by_content, guest_step, guest_write, sharing_host
from vframework_memory import EsxSharing

from vframework.hv.hypervisor import Hypervisor

PAGES = 8


def _decisions(hv: Hypervisor, service: EsxSharing) -> tuple[Any, ...]:
    """The host's pages and frames, whatever the frames' numbers, and the tables' sizes."""
    return frames_by_content(hv), len(service.shared), len(service.hints)


tokens = st.integers(1, 4)
page = st.tuples(st.integers(0, 2), st.integers(0, PAGES - 1))
steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("scan"),
            st.integers(0, 2),
            st.lists(st.integers(0, PAGES - 1), min_size=1, max_size=8, unique=True),
        ),
        # Any page written, its frame taken back or granted again: hints and shared frames go
        # stale, and the first page that meets a stale entry must drop it.
        st.tuples(st.sampled_from(["write", "reclaim", "grant"]), page, tokens),
    ),
    min_size=1,
    max_size=30,
)


def _apply(hv: Hypervisor, service: EsxSharing, step: tuple[Any, ...], one_at_a_time: bool) -> int:
    """One step; returns the pages scanned."""
    kind, *args = step
    if kind == "scan":
        vm_id, ppns = args
        batches = [[p] for p in ppns] if one_at_a_time else [ppns]
        return sum(service._scan(hv.memory, vm_id, np.array(batch, dtype=np.int64)) for batch in batches)
    (vm_id, ppn), token = args
    guest_step(hv, kind, vm_id, ppn, token)
    return 0


@settings(max_examples=300, deadline=None)
@given(
    contents=st.lists(st.lists(tokens, min_size=PAGES, max_size=PAGES), min_size=3, max_size=3),
    steps=steps,
    hash_bits=st.sampled_from([64, 1]),
)
def test_a_batch_decides_as_its_pages_one_at_a_time(
    contents: list[list[int]], steps: list[tuple[Any, ...]], hash_bits: int
) -> None:
    """With a 1-bit hash, different contents collide: the full comparison must keep them apart
    alike in a batch and one at a time."""
    hosts = [sharing_host(contents), sharing_host(contents)]
    params = EsxSharing.kit_params().model_copy(update={"hash_bits": hash_bits})
    services = [EsxSharing(params), EsxSharing(params)]
    for step in steps:
        scanned = _apply(hosts[0], services[0], step, one_at_a_time=False)
        assert scanned == _apply(hosts[1], services[1], step, one_at_a_time=True), step
        assert _decisions(hosts[0], services[0]) == _decisions(hosts[1], services[1]), step


def test_a_hint_shared_onto_earlier_in_the_batch_is_no_hint() -> None:
    """VM 0's page 4 is a hint; then pages 0, 1 and 4 (one content) are scanned together. Pages 0
    and 1 share page 4's frame, so page 4 is no longer private at its turn: not scanned, no hint."""
    hv = sharing_host([[1] * PAGES] * 3)
    esx = EsxSharing(EsxSharing.kit_params())
    assert esx._scan(hv.memory, 0, np.array([4])) == 1
    assert esx._scan(hv.memory, 0, np.array([0, 1, 4])) == 2
    assert len(esx.hints) == 0
    assert len(esx.shared) == 1


def test_a_stale_hint_is_dropped_by_the_first_page_that_meets_it() -> None:
    """VM 0's page 0 is a hint; its frame is then taken back, and pages 0 (now unbacked), 1 and 2
    (the hint's content) are scanned. One at a time, page 1 meets the stale hint, which is
    dropped, and page 2 becomes the hint; a batch must do the same (it used to let both pages
    meet the stale hint, so neither became one)."""
    contents = [[1] * PAGES] * 3
    hosts = [sharing_host(contents), sharing_host(contents)]
    services = [EsxSharing(EsxSharing.kit_params()), EsxSharing(EsxSharing.kit_params())]
    for hv, esx, batches in zip(hosts, services, ([[0, 1, 2]], [[0], [1], [2]]), strict=True):
        esx._scan(hv.memory, 0, np.array([0]))
        hv.memory.reclaim(0, [0])
        for batch in batches:
            esx._scan(hv.memory, 0, np.array(batch))
    assert len(services[0].hints) == len(services[1].hints) == 1


def test_a_stale_shared_frame_is_dropped_by_the_first_page_that_meets_it() -> None:
    """VMs 0 and 1 share a frame; both then write their page, so the frame goes and the shared
    table's entry is stale. VM 2's pages 0, 1 and 2 (the old content) are scanned. One at a time,
    page 0 fails the full comparison and the entry goes, page 1 becomes a hint and page 2 shares
    with it; a batch must do the same (it used to fail all three: nothing shared)."""
    contents = [[1] * PAGES] * 3
    got = []
    for batches in ([[0, 1, 2]], [[0], [1], [2]]):
        hv = sharing_host(contents)
        esx = EsxSharing(EsxSharing.kit_params())
        esx._scan(hv.memory, 0, np.array([0]))
        esx._scan(hv.memory, 1, np.array([0]))
        guest_write(hv, 0, 0, 5)
        guest_write(hv, 1, 0, 6)
        for batch in batches:
            esx._scan(hv.memory, 2, np.array(batch))
        got.append(_decisions(hv, esx))
    assert got[0] == got[1]
    assert len(esx.shared) == 1


def test_a_moved_hint_refuses_only_the_pages_that_met_it() -> None:
    """VM 0's page 0 (content 1) is a hint on frame M; it loses M, which VM 1's page 5 gets and
    fills with content 2, and becomes a hint. VM 2's pages 0 (content 1) and 1 (content 2) are
    scanned together: page 0 met the moved hint and is refused; page 1 shares M with VM 1's page 5."""
    contents = [[1] * PAGES, [1] * 5 + [2] + [1] * (PAGES - 6), [1, 2] + [3] * (PAGES - 2)]
    hv = sharing_host(contents)
    esx = EsxSharing(EsxSharing.kit_params())
    esx._scan(hv.memory, 0, np.array([0]))
    frame = int(hv.vms[0].p2m[0])
    hv.memory.reclaim(1, [5])
    hv.memory.reclaim(0, [0])
    hv.memory.grant(1, [5])  # the last frame freed first: M
    assert int(hv.vms[1].p2m[5]) == frame
    guest_write(hv, 1, 5, 2)
    esx._scan(hv.memory, 1, np.array([5]))
    esx._scan(hv.memory, 2, np.array([0, 1]))
    assert int(hv.vms[2].p2m[1]) == frame
    assert int(hv.vms[2].p2m[0]) != frame
