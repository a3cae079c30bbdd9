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
            st.lists(st.integers(0, PAGES - 1), min_size=1, max_size=PAGES, unique=True),
        ),
        # Any page written, its frame taken back or granted again: hints and shared frames go
        # stale, and the first page that meets a stale entry must drop it. A write of the
        # content a page already holds only breaks its sharing (a shared frame left with one
        # mapping turns private, content and all).
        st.tuples(st.sampled_from(["write", "reclaim", "grant", "same"]), page, tokens),
        # A page gets another page's frame, freed for it, and new content: a frame number
        # that a table entry still names now holds another key's page.
        st.tuples(st.just("steal"), page, page, tokens),
    ),
    min_size=1,
    max_size=40,
)


def _apply(hv: Hypervisor, service: EsxSharing, step: tuple[Any, ...], one_at_a_time: bool) -> int:
    """One step; returns the pages scanned."""
    kind, *args = step
    if kind == "scan":
        vm_id, ppns = args
        batches = [[p] for p in ppns] if one_at_a_time else [ppns]
        return sum(service._scan(hv.memory, vm_id, np.array(batch, dtype=np.int64)) for batch in batches)
    if kind == "steal":
        (vm_from, ppn_from), (vm_id, ppn), token = args
        if (vm_from, ppn_from) != (vm_id, ppn):
            hv.memory.reclaim(vm_id, [ppn])
            hv.memory.reclaim(vm_from, [ppn_from])
            hv.memory.grant(vm_id, [ppn])  # the last frame freed first: the other page's
            guest_write(hv, vm_id, ppn, token)
        return 0
    (vm_id, ppn), token = args
    if kind == "same":
        mpn = int(hv.vms[vm_id].p2m[ppn])
        if mpn >= 0:
            guest_write(hv, vm_id, ppn, int(hv.machine.memory.content[mpn]))
        return 0
    guest_step(hv, kind, vm_id, ppn, token)
    return 0


@settings(max_examples=300, deadline=None)
@given(
    contents=st.lists(st.lists(tokens, min_size=PAGES, max_size=PAGES), min_size=3, max_size=3),
    steps=steps,
    hash_bits=st.sampled_from([64, 1, 2]),
)
def test_a_batch_decides_as_its_pages_one_at_a_time(
    contents: list[list[int]], steps: list[tuple[Any, ...]], hash_bits: int
) -> None:
    """With a 1- or 2-bit hash, different contents collide: the full comparison must keep them
    apart alike in a batch and one at a time."""
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


def _both(contents: list[list[int]], prepare: Any, vm_id: int, batch: list[int]) -> list[tuple[Any, ...]]:
    """(pages scanned, host, tables) after ``batch`` is scanned at once and one page at a time."""
    got = []
    for batches in ([batch], [[p] for p in batch]):
        hv = sharing_host(contents)
        esx = EsxSharing(EsxSharing.kit_params())
        prepare(hv, esx)
        scanned = sum(esx._scan(hv.memory, vm_id, np.array(b)) for b in batches)
        got.append((scanned, *_decisions(hv, esx)))
    return got


def test_a_stale_hint_is_dropped_by_the_first_page_that_meets_it() -> None:
    """VM 0's page 0 is a hint; its frame is then taken back, and pages 0 (now unbacked), 1 and 2
    (the hint's content) are scanned. One at a time, page 1 meets the stale hint, which is
    dropped, and page 2 becomes the hint; a batch must do the same (it used to let both pages
    meet the stale hint, so neither became one)."""

    def hint_taken_back(hv: Hypervisor, esx: EsxSharing) -> None:
        esx._scan(hv.memory, 0, np.array([0]))
        hv.memory.reclaim(0, [0])

    got = _both([[1] * PAGES] * 3, hint_taken_back, 0, [0, 1, 2])
    assert got[0][3] == got[1][3] == 1  # one hint


def test_a_stale_shared_frame_is_dropped_by_the_first_page_that_meets_it() -> None:
    """VMs 0 and 1 share a frame; both then write their page, so the frame goes and the shared
    table's entry is stale. VM 2's pages 0, 1 and 2 (the old content) are scanned. One at a time,
    page 0 fails the full comparison and the entry goes, page 1 becomes a hint and page 2 shares
    with it; a batch must do the same (it used to fail all three: nothing shared)."""

    def shared_frame_freed(hv: Hypervisor, esx: EsxSharing) -> None:
        esx._scan(hv.memory, 0, np.array([0]))
        esx._scan(hv.memory, 1, np.array([0]))
        guest_write(hv, 0, 0, 5)
        guest_write(hv, 1, 0, 6)

    got = _both([[1] * PAGES] * 3, shared_frame_freed, 2, [0, 1, 2])
    assert got[0][1:] == got[1][1:]
    assert got[0][2] == 1  # one shared entry


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
    # Page 0's failure drops only the hint it met: the frame's shared entry, now for content 2,
    # stays (it used to be deleted by frame number).
    assert len(esx.shared) == 1


def _entry_on_own_frame(hv: Hypervisor, esx: EsxSharing) -> None:
    """VMs 0 and 1 share frame F; VM 1's page leaves it and VM 0 writes the content its page
    already holds: F turns private, still holding that content, and the shared entry names it."""
    esx._scan(hv.memory, 0, np.array([0]))
    esx._scan(hv.memory, 1, np.array([0]))
    hv.memory.reclaim(1, [0])
    guest_write(hv, 0, 0, 1)


def test_an_entry_on_the_pages_own_frame_fails_that_page_only() -> None:
    """Page 0 is on the entry's frame: scanned first, it fails and drops the entry, and page 1
    becomes a hint; scanned after page 1, which shares the frame, it is no longer private and
    is not scanned. A batch used to fail both pages either way."""
    contents = [[1] * PAGES] * 3
    first = _both(contents, _entry_on_own_frame, 0, [0, 1])
    assert first[0] == first[1]
    assert first[0][0] == 2
    assert first[0][2:] == (0, 1)  # no shared entry, one hint
    second = _both(contents, _entry_on_own_frame, 0, [1, 0])
    assert second[0] == second[1]
    assert second[0][0] == 1
    assert second[0][2:] == (1, 0)


def _stale_hint_on_a_hints_frame(hv: Hypervisor, esx: EsxSharing) -> None:
    """VM 0's page 0 is the hint for content 2 on frame F, then is rewritten to 1 and becomes
    the hint for content 1, on F too; VM 1's page 0 now holds 2."""
    esx._scan(hv.memory, 0, np.array([0]))
    guest_write(hv, 0, 0, 1)
    guest_write(hv, 1, 0, 2)
    esx._scan(hv.memory, 0, np.array([0]))


def test_a_page_that_failed_does_not_win_its_frame() -> None:
    """VM 1's page 0 (content 2) meets the stale hint for 2 and fails; page 1 (content 1) shares
    F with VM 0's page 0. F is content 1's shared frame: the failed page used to put an entry
    for content 2 on F too, and the failure then deleted every entry on F."""
    contents = [[2] + [1] * (PAGES - 1), [1] * PAGES, [1] * PAGES]
    got = _both(contents, _stale_hint_on_a_hints_frame, 1, [0, 1])
    assert got[0] == got[1]
    assert got[0][2:] == (1, 0)  # one shared entry (content 1), no hint
