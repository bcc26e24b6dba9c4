"""The sorted multiset each rung keeps of its values, for cutoffs and medians."""

from __future__ import annotations

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

    def kth(self, k: int) -> float:
        """The k-th smallest value, 0-based."""
        return float(self._items[k])
