"""``memory``: touches a working set with a sequential, uniform random or zipf access pattern."""

from __future__ import annotations

import functools
from collections.abc import Generator
from typing import Annotated, Literal

import numpy as np
from pydantic import BeforeValidator, Field, model_validator

from vframework import parse_duration
from vframework.api import (
    PAGE_SIZE,
    Compute,
    ContentLayout,
    KernelCall,
    Operation,
    Params,
    Size,
    Sleep,
    Touch,
    Workload,
    format_size,
)


class MemoryParams(Params):
    working_set: Size = Field(64 * 1024**2, description="bytes of memory the guest keeps touching")
    pattern: Literal["sequential", "random", "zipf"] = Field("random", description="which pages each batch touches")
    batch: int = Field(256, gt=0, le=1_000_000, description="pages referenced per operation")
    write_ratio: float = Field(0.3, ge=0.0, le=1.0, description="fraction of batches that write")
    zipf_alpha: float = Field(1.1, gt=0.0, description="skew of the zipf pattern (higher: hotter hot pages)")
    compute_per_page: int = Field(200, ge=0, description="cycles of work per page referenced")
    switch_every: int = Field(0, ge=0, description="context-switch the guest every this many batches (0: never)")
    batches: int = Field(0, ge=0, description="stop after this many batches (0: run forever)")
    start_after: Annotated[int, BeforeValidator(parse_duration)] = Field(
        0, ge=0, description="time to sleep before the first batch (a VM that becomes busy later)"
    )
    image_fraction: float = Field(
        0.0, ge=0.0, le=1.0, description="share of the working set read from the VM's image (never written)"
    )
    zero_fraction: float = Field(0.0, ge=0.0, le=1.0, description="share of the working set that stays zero")
    private_fraction: float = Field(
        0.0, ge=0.0, le=1.0, description="share of the working set holding private data written once"
    )

    @model_validator(mode="after")
    def _fractions(self) -> MemoryParams:
        total = self.image_fraction + self.zero_fraction + self.private_fraction
        if total > 1.0:
            raise ValueError(
                f"image_fraction + zero_fraction + private_fraction is {total:g}; at most 1 "
                "(the rest of the working set is volatile: the pages the workload keeps writing)"
            )
        return self


class MemoryWorkload(Workload[MemoryParams]):
    """A working set referenced in batches; the batch's pages are drawn from the pattern."""

    name = "memory"
    description = "touches a working set (sequential, random or zipf)"
    params_model = MemoryParams

    @classmethod
    def check(cls, params: Params, vm_memory_pages: int, swap_pages: int = 0) -> list[tuple[str, str]]:
        assert isinstance(params, MemoryParams)  # the scenario validated it with params_model
        p: MemoryParams = params
        if p.working_set // PAGE_SIZE > vm_memory_pages + swap_pages:
            return [
                (
                    "working_set",
                    f"{format_size(p.working_set)} is larger than one vCPU's share of the VM's "
                    f"memory ({format_size(vm_memory_pages * PAGE_SIZE)}) plus swap "
                    f"({format_size(swap_pages * PAGE_SIZE)}); each vCPU runs its own process",
                )
            ]
        return []

    def address_space_pages(self) -> int:
        return max(1, self.params.working_set // PAGE_SIZE)

    def content_layout(self) -> ContentLayout | None:
        p: MemoryParams = self.params
        if not (p.image_fraction or p.zero_fraction or p.private_fraction):
            return None  # every page starts zero and any may be written
        pages = self.address_space_pages()
        image = int(pages * p.image_fraction)
        zero = int(pages * p.zero_fraction)
        private = min(int(pages * p.private_fraction), pages - image - zero)
        return ContentLayout(image=image, zero=zero, private=private)

    def run(self) -> Generator[Operation, None, None]:
        p: MemoryParams = self.params
        rng = self.context.rng
        pages = self.address_space_pages()
        layout = self.content_layout()
        # Writes land on the volatile pages only (image, zero and private pages are read).
        volatile_start = 0 if layout is None else layout.volatile_start
        volatile = pages - volatile_start
        batch = min(p.batch, pages) if p.pattern == "sequential" else p.batch
        if p.pattern == "zipf":
            prob, alias = _zipf_alias_table(pages, p.zipf_alpha)
            # Hot pages are scattered over the working set, not the lowest VPNs.
            rank_to_vpn = rng.permutation(pages).astype(np.int64)
        cursor = 0
        done = 0
        if p.start_after:
            yield Sleep(p.start_after)
        # Draw many batches per call into numpy: per-call overhead dominates small batches.
        chunk = max(1, 65536 // batch)
        while not p.batches or done < p.batches:
            if p.pattern == "sequential":
                flat = (cursor + np.arange(batch * chunk, dtype=np.int64)) % pages
                cursor = int((cursor + batch * chunk) % pages)
            elif p.pattern == "random":
                flat = rng.integers(0, pages, size=batch * chunk, dtype=np.int64)
            else:
                # Walker's alias method: O(1) per draw (a CDF search misses the cache 16 times).
                cols = rng.integers(0, pages, size=batch * chunk)
                ranks = np.where(rng.random(batch * chunk) < prob[cols], cols, alias[cols])
                flat = rank_to_vpn[ranks]
            writes = rng.random(chunk) < p.write_ratio
            for i in range(chunk):
                if p.batches and done >= p.batches:
                    return
                vpns = flat[i * batch : (i + 1) * batch]
                write = bool(writes[i]) and volatile > 0
                if write and volatile_start:
                    vpns = volatile_start + vpns % volatile
                yield Touch(vpns, write)
                done += 1
                if p.compute_per_page:
                    yield Compute(p.compute_per_page * batch)
                if p.switch_every and done % p.switch_every == 0:
                    yield KernelCall("context_switch", 1)


@functools.lru_cache(maxsize=16)
def _zipf_alias_table(pages: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """The alias table of zipf(``alpha``) over ``pages`` ranks, built once per shape: every VM
    with the same working set and skew shares it (read-only)."""
    weights = 1.0 / np.arange(1, pages + 1, dtype=np.float64) ** alpha
    prob, alias = _alias_table(weights / weights.sum())
    prob.flags.writeable = False
    alias.flags.writeable = False
    return prob, alias


def _alias_table(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vose's alias table for the distribution ``p`` (sums to 1)."""
    n = p.size
    scaled = p * n
    prob = np.ones(n)
    alias = np.arange(n, dtype=np.int64)
    small = [int(i) for i in np.flatnonzero(scaled < 1.0)]
    large = [int(i) for i in np.flatnonzero(scaled >= 1.0)]
    while small and large:
        s, g = small.pop(), large.pop()
        prob[s], alias[s] = scaled[s], g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    return prob, alias
