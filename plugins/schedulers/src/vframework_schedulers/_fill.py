"""Water-filling: divide a capacity in proportion to weights, each share within its own bounds.

Used by ``proportional`` (shares with reservations, limits and the vCPUs a VM can keep busy)
and ``credit`` (each accounting period's credit, no VM above its cap or its vCPUs' peak).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["water_fill"]


def water_fill(
    capacity: float, weights: Sequence[float], lo: Sequence[float], hi: Sequence[float]
) -> tuple[list[float], float]:
    """Shares ``f[i] = clamp(lam * weights[i], lo[i], hi[i])`` summing to ``capacity``; returns
    ``(f, lam)``.

    When even the upper bounds do not fill the capacity, every share is at its upper bound and
    ``lam`` is infinite; when the lower bounds alone exceed it, they are scaled down to fit and
    ``lam`` is 0. Weights must be positive; ``lo[i] <= hi[i]`` is enforced by lowering ``lo``.
    """
    w = np.asarray(weights, dtype=float)
    high = np.asarray(hi, dtype=float)
    low = np.minimum(np.asarray(lo, dtype=float), high)
    if high.sum() <= capacity:
        return high.tolist(), float("inf")
    total_lo = float(low.sum())
    if total_lo >= capacity:
        scale = capacity / total_lo if total_lo > 0 else 0.0
        return (low * scale).tolist(), 0.0
    # Where the filled total changes slope: each share starts rising at lo/w and stops at hi/w.
    starts, stops = low / w, high / w
    points = np.unique(np.concatenate(([0.0], starts, stops)))
    # The last point at which the total is still <= capacity (filled(0) = sum(lo) < capacity).
    a, b = 0, len(points) - 1  # filled(points[a]) <= capacity < filled(points[b])
    while b - a > 1:
        mid = (a + b) // 2
        if np.clip(points[mid] * w, low, high).sum() <= capacity:
            a = mid
        else:
            b = mid
    left, right = points[a], points[b]
    # Compare the breakpoints themselves (the same divisions as above), not hi against
    # left x weight: the rounded product can fall just short and misclassify the share.
    at_high = stops <= left
    at_low = ~at_high & (starts >= right)
    free = float(w[~at_high & ~at_low].sum())
    fixed = float(high[at_high].sum() + low[at_low].sum())
    lam = float(left) if free <= 0 else (capacity - fixed) / free
    return np.clip(lam * w, low, high).tolist(), lam
