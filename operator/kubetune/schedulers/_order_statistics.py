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
