"""FIFO: no early stopping, as Ray Tune's FIFOScheduler."""

from __future__ import annotations

import math

import pytest

from kubetune.schedulers import Decision, FIFOScheduler, RungRecord, make_scheduler


@pytest.mark.parametrize("mode", ["max", "min"])
@pytest.mark.parametrize("value", [0.0, -1e9, 1e9, math.nan, math.inf])
def test_fifo_never_stops_a_trial_not_even_past_max_t(mode: str, value: float) -> None:
    s = make_scheduler("fifo", metric="acc", mode=mode, max_t=10)
    for step in (1, 3, 10, 11, 1000):
        verdict = s.on_result("a", step, value)
        assert (verdict.decision, verdict.rung) == (Decision.CONTINUE, None)


def test_fifo_has_no_milestones_records_or_rungs() -> None:
    s = make_scheduler("fifo", metric="acc", mode="max")
    assert isinstance(s, FIFOScheduler)
    s.on_result("a", 5, 0.3)
    s.on_complete("a", 6, 0.4)
    assert (s.milestones("a"), s.records("a"), s.rung_table()) == ([], [], [])


def test_fifo_restore_accepts_nothing_and_rejects_foreign_records() -> None:
    s = make_scheduler("fifo", metric="acc", mode="max")
    s.restore("a", [])
    with pytest.raises(ValueError, match="FIFO scheduler keeps none"):
        s.restore(
            "a",
            [RungRecord(milestone=1, value=0.5, step=1, cutoff=None, decision=Decision.CONTINUE)],
        )


def test_fifo_validates_metric_and_mode() -> None:
    with pytest.raises(ValueError, match=r"mode must be 'min' or 'max' \(got 'best'\)"):
        make_scheduler("fifo", metric="acc", mode="best")
