"""The sorted multiset each rung keeps of its values, for cutoffs and medians.

Non-finite observations are kept as -inf (the worst value in maximise space), so
they sort first and `non_finite()` counts them in O(log n): a cutoff or median
is taken over the values after them.
"""

from __future__ import annotations

import math

from sortedcontainers import SortedList


class OrderStatistics:
    """Floats kept sorted: O(log n) insert, remove and k-th smallest."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items = SortedList()

    def __len__(self) -> int:
        return len(self._items)

    def add(self, value: float) -> None:
        """Insert one value (duplicates are kept)."""
        self._items.add(value)

    def remove(self, value: float) -> None:
        """Remove one occurrence of `value`; ValueError if there is none."""
        self._items.remove(value)

    def non_finite(self) -> int:
        """How many values are -inf (non-finite observations); they are the smallest."""
        return int(self._items.bisect_right(-math.inf))

    def kth(self, k: int) -> float:
        """The k-th smallest value, 0-based."""
        return float(self._items[k])


def rung_cutoff(rung: OrderStatistics, quantile: float) -> float | None:
    """The rung's cutoff in maximise space: the quantile of its finite values.

    None while the rung holds no finite value. Non-finite values (kept as -inf,
    so they sort first) are skipped, never interpolated.
    """
    skip = rung.non_finite()
    n = len(rung) - skip
    if n == 0:
        return None
    return linear_percentile(rung, skip, n, quantile)


def linear_percentile(values: OrderStatistics, skip: int, n: int, quantile: float) -> float:
    """numpy's quantile(method="linear") on the n sorted values after the first `skip`, bit
    for bit."""
    virtual = (n - 1) * quantile
    if virtual >= n - 1:
        return values.kth(skip + n - 1)
    lower = math.floor(virtual)
    a = values.kth(skip + lower)
    return lerp(a, values.kth(skip + lower + 1), virtual - lower)


def lerp(a: float, b: float, t: float) -> float:
    """numpy's _lerp: the t >= 0.5 branch interpolates from b for monotonicity."""
    diff = b - a
    if t >= 0.5:
        return b - diff * (1 - t)
    return a + diff * t
