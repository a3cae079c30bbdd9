"""The cost model: what each mechanism costs, in CPU cycles, with the source of every default.

Every simulated step charges cycles from here; :meth:`CostModel.ns` turns cycles into integer
nanoseconds at the host's clock rate. A scenario overrides any field under ``[host.costs]``.

Sources quoted below:

* [AA06] K. Adams, O. Agesen, "A Comparison of Software and Hardware Techniques for x86
  Virtualization", ASPLOS 2006 (Pentium 4 672, 3.8 GHz; microbenchmarks in cycles).
* [BDF03] P. Barham et al., "Xen and the Art of Virtualization", SOSP 2003.
* [HP] Hennessy & Patterson, *Computer Architecture*, memory-hierarchy chapter (typical
  latencies of a DRAM reference and of a TLB miss walk).
* [LMB] lmbench figures for Linux on a ~3 GHz x86 (null syscall, context switch).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from functools import cache
from importlib import resources

__all__ = ["COST_FIELDS", "DEFAULT_PROFILE", "CostModel", "Profile", "profile", "profiles"]

#: A ``fits`` entry: experiment, benchmark, config.
_FIT_PARTS = 3
#: The profile a scenario gets without ``[host] costs``: the defaults below.
DEFAULT_PROFILE = "default"


def _cost(default: int, doc: str) -> int:
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class CostModel:
    """Cycles per mechanism. Every field has a type, a default and a one-line description."""

    clock_hz: int = _cost(3_000_000_000, "host clock rate in Hz; cycles -> ns (3 GHz, a typical server core)")
    instruction: int = _cost(1, "an ordinary instruction executed directly (CPI ~1, [HP])")
    memory_access: int = _cost(4, "a memory reference that hits the TLB and the L1 cache ([HP], ~4 cycles)")
    dram_access: int = _cost(200, "a memory reference served by DRAM, as in a page-walk miss ([HP])")
    page_walk_level: int = _cost(30, "one level of a page-table walk after a TLB miss, cached PTEs ([HP])")
    tlb_flush: int = _cost(100, "flushing a TLB, not counting the misses that follow ([HP])")
    syscall: int = _cost(242, "a native system call round trip into the kernel and back ([AA06] syscall native)")
    context_switch: int = _cost(
        3_000, "not charged: the guest kernel's switch path is its own instructions (accepted for old scenarios)"
    )
    page_fault: int = _cost(1_100, "a native page fault delivered to the kernel and returned ([AA06] pgfault native)")
    page_zero: int = _cost(1_000, "zeroing a 4 KiB page on allocation (~4 bytes/cycle)")
    interrupt: int = _cost(1_000, "delivering an external interrupt to a kernel and returning ([LMB])")
    trap: int = _cost(2_000, "a trap from a deprivileged guest into the hypervisor and back ([AA06], ~2,000)")
    emulate: int = _cost(300, "the hypervisor emulating one trapped instruction against virtual CPU state")
    hypercall: int = _cost(1_000, "an explicit hypercall round trip ([BDF03], cheaper than a trap + decode)")
    vm_exit: int = _cost(4_300, "VM exit + entry round trip, first-generation VT-x (P4: exit ~1,930 + entry ~2,410)")
    exit_emulate: int = _cost(
        300, "the hardware VMM handling one VM exit: reading the exit's state, decoding and emulating what caused it"
    )
    bt_translate: int = _cost(10_000, "binary-translating one guest basic block on first execution ([AA06])")
    bt_inline: int = _cost(4, "CLI, STI, POPF, PUSHF... translated into inline code on the virtual CPU")
    bt_call: int = _cost(40, "a translated callout replacing a sensitive instruction ([AA06], in-TC emulation)")
    bt_indirect: int = _cost(40, "a translated return: its target looked up among translations ([AA06] call/ret +40)")
    shadow_update: int = _cost(390, "updating a shadow page-table entry after a guest PTE write ([AA06] ptemod: 391)")
    pte_validate: int = _cost(40, "the hypervisor validating one page-table update (a page-type check, mmu_update)")
    page_reference: int = _cost(
        0, "the guest kernel's own work per mapped page at fork and again at exit (page count, rmap); 0: not charged"
    )
    shadow_address_space: int = _cost(
        0, "a shadow MMU building and discarding an address space's shadows, beyond faults and traces; 0: not charged"
    )
    pt_pin: int = _cost(
        0, "Xen validating one page-table page's entries as it pins or unpins the table; 0: not charged"
    )
    exec_load: int = _cost(
        0,
        "exec's work to load a program beyond its page faults (ELF mapping, dynamic loading); 0: not charged",
    )
    shell_start: int = _cost(0, "a shell's own start-up before it runs a command (sh -c); 0: not charged")
    page_copy: int = _cost(1_000, "copying a 4 KiB page (a copy-on-write fault, a swap-in)")
    world_switch: int = _cost(8_000, "a hosted VMM switching between the VMM and host OS worlds (~2-3 us)")
    vcpu_switch: int = _cost(2_000, "the hypervisor switching a physical CPU from one vCPU to another")
    cr8_write: int = _cost(150, "a native write of the task-priority register %cr8 ([AA06] cr8wr native 150)")
    call_ret: int = _cost(11, "a native call/return pair to a leaf subroutine ([AA06] call/ret native 11)")
    port_io: int = _cost(3_200, "a real I/O-port access (IN/OUT) reaching a device ([AA06] in: native 3,209)")
    byte_copy: int = _cost(1, "copying one byte of I/O data (~1 byte/cycle with cache misses)")
    io_device: int = _cost(30_000, "the host device servicing one I/O request (fast storage, ~10 us)")

    def ns(self, cycles: int) -> int:
        """Integer nanoseconds taken by ``cycles`` at :attr:`clock_hz` (rounded up, never 0 for >0)."""
        if cycles <= 0:
            return 0
        return -(-cycles * 1_000_000_000 // self.clock_hz)

    def cycles(self, ns: int) -> int:
        """Whole cycles that fit in ``ns`` nanoseconds."""
        return ns * self.clock_hz // 1_000_000_000

    def replace(self, **overrides: int) -> CostModel:
        """A copy with some fields changed; unknown names raise ``ValueError`` listing the known ones."""
        unknown = sorted(set(overrides) - set(COST_FIELDS))
        if unknown:
            raise ValueError(f"unknown cost {unknown[0]!r}; known costs: {', '.join(COST_FIELDS)}")
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(overrides)
        return CostModel(**values)


#: Name -> one-line description of every cost (for docs and validation).
COST_FIELDS: dict[str, str] = {f.name: f.metadata["doc"] for f in fields(CostModel)}


@dataclass(frozen=True)
class Profile:
    """A cost profile: a machine's costs as data (``machine/profiles/<name>.toml``), each value
    with its source. A cost the profile does not set keeps :class:`CostModel`'s default."""

    name: str
    description: str
    #: cost name -> (value, where it comes from)
    values: dict[str, tuple[int, str]]
    #: cost name -> the experiment rows (``experiment:benchmark:config``) it was fitted to:
    #: those rows match by construction; every other row is a prediction.
    fits: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def fitted(self, experiment: str) -> set[tuple[str, str]]:
        """``(benchmark, config)`` rows of ``experiment`` some value of this profile was fitted to."""
        rows = set()
        for names in self.fits.values():
            for name in names:
                exp, bench, config = name.split(":")
                if exp == experiment:
                    rows.add((bench, config))
        return rows

    def model(self) -> CostModel:
        return CostModel().replace(**{k: v for k, (v, _) in self.values.items()})


@cache
def profiles() -> dict[str, Profile]:
    """Every profile shipped in the package, by name (``default``: the cost model's defaults)."""
    found = {DEFAULT_PROFILE: Profile(DEFAULT_PROFILE, "the cost model's defaults (a ~3 GHz server core)", {})}
    for entry in sorted(resources.files("vframework.machine").joinpath("profiles").iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".toml"):
            continue
        data = tomllib.loads(entry.read_text(encoding="utf-8"))
        values = {}
        fits: dict[str, tuple[str, ...]] = {}
        for key, item in data.get("costs", {}).items():
            if key not in COST_FIELDS:
                raise ValueError(f"profile {entry.name}: unknown cost {key!r}")
            if not isinstance(item.get("value"), int) or not str(item.get("source", "")).strip():
                raise ValueError(f"profile {entry.name}: cost {key!r} needs an integer `value` and a `source`")
            values[key] = (item["value"], item["source"])
            rows = item.get("fits", [])
            if not isinstance(rows, list) or not all(
                isinstance(r, str) and len(r.split(":")) == _FIT_PARTS for r in rows
            ):
                raise ValueError(f"profile {entry.name}: cost {key!r}: `fits` lists 'experiment:benchmark:config'")
            if rows:
                fits[key] = tuple(rows)
        found[data["name"]] = Profile(data["name"], data.get("description", ""), values, fits)
    return found


def profile(name: str) -> CostModel:
    """The cost model of profile ``name``; KeyError lists the profiles."""
    known = profiles()
    if name not in known:
        raise KeyError(f"unknown cost profile {name!r}; profiles: {', '.join(known)}")
    return known[name].model()
