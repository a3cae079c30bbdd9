"""Water-filling: divide a capacity in proportion to weights, each share within its own bounds.

Used by ``proportional`` (shares with reservations, limits and the vCPUs a VM can keep busy)
and ``credit`` (each accounting period's credit, no VM above its cap or its vCPUs' peak).
"""

from __future__ import annotations

from collections.abc import Sequence

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
    n = len(weights)
    lo = [min(a, b) for a, b in zip(lo, hi, strict=True)]
    if sum(hi) <= capacity:
        return list(hi), float("inf")
    total_lo = sum(lo)
    if total_lo >= capacity:
        scale = capacity / total_lo if total_lo > 0 else 0.0
        return [a * scale for a in lo], 0.0

    def filled(lam: float) -> float:
        return sum(min(max(lam * weights[i], lo[i]), hi[i]) for i in range(n))

    # Where the filled total changes slope: each share starts rising at lo/w and stops at hi/w.
    points = sorted({0.0, *(lo[i] / weights[i] for i in range(n)), *(hi[i] / weights[i] for i in range(n))})
    # The last point at which the total is still <= capacity (filled(0) = sum(lo) < capacity).
    a, b = 0, len(points) - 1  # filled(points[a]) <= capacity < filled(points[b])
    while b - a > 1:
        mid = (a + b) // 2
        if filled(points[mid]) <= capacity:
            a = mid
        else:
            b = mid
    left, right = points[a], points[b]
    fixed = 0.0
    free = 0.0
    for i in range(n):
        # Compare the breakpoints themselves (the same divisions as above), not hi against
        # left x weight: the rounded product can fall just short and misclassify the share.
        if hi[i] / weights[i] <= left:
            fixed += hi[i]
        elif lo[i] / weights[i] >= right:
            fixed += lo[i]
        else:
            free += weights[i]
    lam = left if free <= 0 else (capacity - fixed) / free
    return [min(max(lam * weights[i], lo[i]), hi[i]) for i in range(n)], lam
