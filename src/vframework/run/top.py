"""``vframework top``: an esxtop/xentop-like table of a running simulation, one row per VM.

Rates (%RUN, %RDY, %STEAL, IO/s, NET) are over the time since the previous refresh (simulated
time); sizes are the gauges in MiB. The table is drawn from the run's own time-series samples,
never from live objects, so watching a run cannot change its results.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rich.table import Table

from vframework.api.views import VMView

__all__ = ["COLUMNS", "TopView"]

_MIB = 4096 / 2**20


@dataclass(frozen=True)
class Column:
    title: str
    description: str
    #: Digits after the point.
    digits: int = 1


#: The columns, in order (sortable by title with ``--sort``, or live by a key: :data:`KEYS`).
COLUMNS: dict[str, Column] = {
    c.title: c
    for c in [
        Column("%RUN", "CPU time run over the last refresh, in % of one CPU"),
        Column("%RDY", "time runnable but waiting for a CPU, in % of one CPU"),
        Column("%STEAL", "time taken from the VM for others' interrupts, in % of one CPU"),
        Column("MEMSZ", "guest-physical memory configured, MiB", 0),
        Column("GRANT", "guest pages backed by a machine frame, MiB"),
        Column("SHRD", "pages backed by a shared copy-on-write frame, MiB"),
        Column("MCTLSZ", "pages held by the balloon driver, MiB"),
        Column("SWAPPED", "pages the hypervisor swapped out, MiB"),
        Column("IO/s", "I/O requests submitted per simulated second", 0),
        Column("NET", "bytes sent and received per simulated second, KiB/s"),
    ]
}


#: Keys that sort the live table (as esxtop's and xentop's single-letter commands do).
KEYS: dict[str, str] = {
    "v": "VM",
    "r": "%RUN",
    "d": "%RDY",
    "s": "%STEAL",
    "m": "MEMSZ",
    "g": "GRANT",
    "h": "SHRD",
    "b": "MCTLSZ",
    "w": "SWAPPED",
    "i": "IO/s",
    "n": "NET",
}


class TopView:
    """Per-VM rates and levels of a running simulation, refreshed by :meth:`update`."""

    def __init__(self, title: str, vms: Sequence[VMView], sort: str = "%RUN", limit: int | None = None) -> None:
        if sort not in COLUMNS and sort != "VM":
            raise ValueError(f"cannot sort by {sort!r}; columns: VM, {', '.join(COLUMNS)}")
        self.title = title
        self.vms = list(vms)
        self.sort = sort
        self.limit = limit
        self.rows: dict[str, dict[str, float]] = {}
        #: Whether keys sort the table (the caption then lists them).
        self.interactive = False
        self.sim_ns = 0
        self._wall0 = time.perf_counter()
        self._last_ns = 0
        self._last: dict[str, tuple[int, ...]] = {vm.name: (0, 0, 0, 0, 0) for vm in self.vms}

    def update(self, now_ns: int, samples: Mapping[str, Mapping[str, int]]) -> None:
        """Recompute every row from one sample: VM name -> counters at simulated time ``now_ns``."""
        dt = now_ns - self._last_ns
        # Built aside and swapped in: the live display may draw from another thread meanwhile.
        rows = dict(self.rows)
        for vm in self.vms:
            c = samples.get(vm.name)
            if c is None:
                continue
            cur = (
                c["cpu_run_ns"],
                c["cpu_ready_ns"],
                c["cpu_stolen_ns"],
                c["io_requests"],
                c["net_bytes_sent"] + c["net_bytes_received"],
            )
            if dt > 0:
                d = [a - b for a, b in zip(cur, self._last[vm.name], strict=True)]
                rates = {
                    "%RUN": 100 * d[0] / dt,
                    "%RDY": 100 * d[1] / dt,
                    "%STEAL": 100 * d[2] / dt,
                    "IO/s": d[3] * 1e9 / dt,
                    "NET": d[4] * 1e9 / dt / 1024,
                }
            else:
                rates = dict.fromkeys(("%RUN", "%RDY", "%STEAL", "IO/s", "NET"), 0.0)
            self._last[vm.name] = cur
            rows[vm.name] = {
                **rates,
                "MEMSZ": vm.memory_pages * _MIB,
                "GRANT": c["mem_granted"] * _MIB,
                "SHRD": c["mem_shared"] * _MIB,
                "MCTLSZ": c["mem_balloon"] * _MIB,
                "SWAPPED": c["mem_swapped"] * _MIB,
            }
        self.rows = rows
        self._last_ns = self.sim_ns = now_ns

    def press(self, key: str) -> bool:
        """Sort by the column ``key`` stands for (:data:`KEYS`); False for any other key."""
        column = KEYS.get(key.lower())
        if column is None:
            return False
        self.sort = column
        return True

    def ratio(self) -> float:
        """Simulated seconds per wall second so far."""
        wall = time.perf_counter() - self._wall0
        return self.sim_ns / 1e9 / wall if wall > 0 else 0.0

    def ordered(self) -> list[str]:
        """VM names in display order: by the sort column, largest first (by name for ``VM``)."""
        if self.sort == "VM":
            return sorted(self.rows)
        return sorted(self.rows, key=lambda n: (-self.rows[n][self.sort], n))

    def table(self) -> Table:
        """The current table (rich)."""
        secs = self.sim_ns / 1e9
        t = Table(title=f"{self.title} — {secs:.2f} s simulated, {self.ratio():.2f} simulated s per wall s")
        t.add_column("VM", no_wrap=True)
        for title in COLUMNS:
            t.add_column(title + (" ▼" if title == self.sort else ""), justify="right", no_wrap=True)
        names = self.ordered()
        for name in names[: self.limit] if self.limit else names:
            row = self.rows[name]
            t.add_row(name, *(f"{row[k]:.{col.digits}f}" for k, col in COLUMNS.items()))
        more = f"{len(names) - self.limit} more VMs (--limit); " if self.limit and len(names) > self.limit else ""
        keys = " ".join(f"{k}:{c}" for k, c in KEYS.items())
        t.caption = f"{more}sort: {keys}" if self.interactive else more.rstrip("; ") or None
        return t
