"""Test tiers follow the directory: tests/unit is `unit`, tests/integration is
`integration`, tests/e2e is `e2e`, so `pytest -m unit` runs the fast tier alone."""

from __future__ import annotations

from pathlib import Path

import pytest

_TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        for tier in _TIERS:
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))
