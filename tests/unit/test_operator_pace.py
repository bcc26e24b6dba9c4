"""Count-only status writes are paced per experiment; any other change goes out at once."""

from __future__ import annotations

import pytest

from kubetune.controller.pace import StatusPace
from kubetune.controller.reconcile import counts_only

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_counts_only_changes_wait_other_changes_do_not() -> None:
    clock = Clock()
    pace = StatusPace(clock=clock, seconds=5)
    assert pace.due("a", counts_only=True)  # the first write of an experiment
    clock.t += 1
    assert not pace.due("a", counts_only=True)
    assert pace.due("b", counts_only=True), "per experiment"
    assert pace.due("a", counts_only=False), "a phase or best-trial change is not held back"
    clock.t += 4
    assert not pace.due("a", counts_only=True), "counted from the last write, whatever it was"
    clock.t += 1.5
    assert pace.due("a", counts_only=True)
    pace.forget("a")
    assert pace.due("a", counts_only=True)


def test_a_patch_is_counts_only_when_nothing_but_the_counts_changes() -> None:
    stored = {"phase": "Running", "trials": {"running": 3, "pending": 1},
              "bestTrial": {"name": "e-1", "value": 0.5}}
    assert counts_only(stored, {"phase": "Running", "trials": {"running": 4, "pending": 0},
                                "bestTrial": {"name": "e-1", "value": 0.5}})
    assert not counts_only(stored, {"phase": "Succeeded", "trials": {"running": 0}})
    assert not counts_only(stored, {"trials": {"running": 3},
                                    "bestTrial": {"name": "e-2", "value": 0.7}})
