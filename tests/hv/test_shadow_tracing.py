"""Shadow paging traces only the guest page-table pages a shadow is built from."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from vf_helpers import scenario, simulate

from vframework import PluginManager
from vframework.machine.mmu import PT_ENTRIES, ShadowTables


def test_traced_pages_are_those_with_a_valid_shadow_entry() -> None:
    shadows = ShadowTables()
    vpns = np.array([0, 5, PT_ENTRIES, 2 * PT_ENTRIES + 1], dtype=np.int64)
    assert not shadows.traced(7, vpns).any()  # no shadow at all: nothing is write-protected
    table = shadows.table(7, 3 * PT_ENTRIES - 10)  # the last page-table page is partial
    assert not shadows.traced(7, vpns).any()
    table[3] = 42
    table[2 * PT_ENTRIES + 4] = 43
    assert shadows.traced(7, vpns).tolist() == [True, True, False, True]


@pytest.mark.parametrize("mode", ["full", "trap-and-emulate", {"name": "hardware-assisted", "nested_paging": False}])
def test_a_new_childs_page_table_is_written_untraced(plugins: PluginManager, mode: Any) -> None:
    """lmbench's fork: the child never runs user code, so no shadow is built from its tables:
    copying its 256 entries and clearing them at exit trace nothing. Only the parent's entries
    are updated: their dirty bits on its first writes, their write protection at the first fork."""
    forks, pages = 40, 256
    vm = {
        "name": "f",
        "memory": "128MiB",
        "mode": mode,
        "workload": {"name": "lmbench", "test": "fork", "iterations": forks, "fork_pages": pages},
    }
    arch = "classic" if mode == "trap-and-emulate" else "x86-vt"
    sim, _ = simulate(scenario([vm], duration="2s", cpus=1, arch=arch), plugins)
    c = sim.vms[0].counters
    assert c["forks"] == forks
    assert c["shadow_pt_updates"] <= 2 * pages + 8, c["shadow_pt_updates"]  # was 2 * pages more per fork
    assert c["shadow_faults"] >= pages  # the parent's own pages, filled on demand
