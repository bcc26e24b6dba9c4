"""ASHA: rungs, cutoffs, stopping, records and restore, in both modes."""

from __future__ import annotations

import json
import math
import zlib
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubetune.schedulers import (
    AsyncHyperBandScheduler,
    Decision,
    RungRecord,
    make_scheduler,
)
from kubetune.schedulers._order_statistics import OrderStatistics, lerp, rung_cutoff
from kubetune.schedulers.asha import _bracket_weights

MODES = ["max", "min"]


def asha(mode: str = "max", **kwargs: object) -> AsyncHyperBandScheduler:
    setting: dict[str, object] = {"max_t": 81, "grace_period": 1, "reduction_factor": 3}
    setting.update(kwargs)
    return AsyncHyperBandScheduler(metric="acc", mode=mode, **setting)  # type: ignore[arg-type]


def signed(mode: str, value: float) -> float:
    """A value that is as good in `mode` as `value` is in max mode."""
    return value if mode == "max" else -value


# Rungs


def test_rungs_sit_at_grace_period_times_powers_of_reduction_factor() -> None:
    assert asha(max_t=100, grace_period=1, reduction_factor=4).milestones("t") == [1, 4, 16, 64]
    assert asha(max_t=100, grace_period=2, reduction_factor=3).milestones("t") == [2, 6, 18, 54]


def test_rung_at_max_t_exists_exactly_when_rays_formula_creates_it() -> None:
    # Ray computes int(log(max_t / grace) / log(rf) + 1) in floating point.
    assert asha(max_t=81, reduction_factor=3).milestones("t") == [1, 3, 9, 27, 81]
    assert asha(max_t=243, reduction_factor=3).milestones("t") == [1, 3, 9, 27, 81]
    assert asha(max_t=80, reduction_factor=3).milestones("t") == [1, 3, 9, 27]


def test_fractional_rungs_round_up_to_the_first_integer_step() -> None:
    assert asha(max_t=20, reduction_factor=2.5).milestones("t") == [1, 3, 7, 16]


def test_grace_period_equal_to_max_t_leaves_one_rung_at_max_t() -> None:
    assert asha(max_t=5, grace_period=5).milestones("t") == [5]


# Stopping at a rung


@pytest.mark.parametrize("mode", MODES)
def test_first_trial_at_a_rung_continues(mode: str) -> None:
    s = asha(mode)
    verdict = s.on_result("a", 1, signed(mode, -1e9))
    assert verdict.decision is Decision.CONTINUE
    assert s.records("a") == [
        RungRecord(
            milestone=1, value=signed(mode, -1e9), step=1, cutoff=None, decision=Decision.CONTINUE
        )
    ]


@pytest.mark.parametrize("mode", MODES)
def test_trial_below_rung_cutoff_is_pruned(mode: str) -> None:
    s = asha(mode)
    s.on_result("a", 1, signed(mode, 0.5))
    verdict = s.on_result("b", 1, signed(mode, 0.4))
    assert verdict.decision is Decision.STOP
    assert verdict.rung == RungRecord(
        milestone=1,
        value=signed(mode, 0.4),
        step=1,
        cutoff=signed(mode, 0.5),
        decision=Decision.STOP,
    )


@pytest.mark.parametrize("mode", MODES)
def test_trial_at_or_above_rung_cutoff_continues(mode: str) -> None:
    s = asha(mode)
    s.on_result("a", 1, signed(mode, 0.5))
    assert s.on_result("tie", 1, signed(mode, 0.5)).decision is Decision.CONTINUE
    assert s.on_result("better", 1, signed(mode, 0.6)).decision is Decision.CONTINUE


@pytest.mark.parametrize("mode", MODES)
def test_cutoff_is_the_one_minus_one_over_rf_quantile_of_the_rung(mode: str) -> None:
    s = asha(mode, reduction_factor=4, max_t=64)
    for i, v in enumerate([0.1, 0.2, 0.3, 0.4, 0.5]):
        s.on_result(f"t{i}", 1, signed(mode, v))
    # 75th percentile of 0.1..0.5 is 0.4: 0.39 stops, 0.4 continues.
    assert s.on_result("low", 1, signed(mode, 0.39)).decision is Decision.STOP
    assert s.on_result("tie", 1, signed(mode, 0.4)).decision is Decision.CONTINUE


def test_rung_cutoff_counts_only_values_recorded_at_that_rung() -> None:
    s = asha()
    for step in range(1, 4):
        s.on_result("a", step, 0.9 if step == 1 else 0.1)
    s.on_result("b", 1, 0.95)
    assert s.on_result("b", 3, 0.2).decision is Decision.CONTINUE


@pytest.mark.parametrize("mode", MODES)
def test_reason_names_metric_value_cutoff_rung_and_step(mode: str) -> None:
    s = asha(mode)
    s.on_result("a", 9, signed(mode, 0.52))
    verdict = s.on_result("b", 9, signed(mode, 0.31))
    op = "<" if mode == "max" else ">"
    a, b = signed(mode, 0.52), signed(mode, 0.31)
    assert verdict.reason == f"acc {b!r} {op} cutoff {a!r} at rung 1 (step 9)"


# max_t


@pytest.mark.parametrize("step", [81, 100])
def test_report_at_or_past_max_t_stops_trial_without_a_rung(step: int) -> None:
    s = asha()
    verdict = s.on_result("a", step, 1.0)
    assert (verdict.decision, verdict.reason, verdict.rung) == (
        Decision.STOP,
        "reached max_t=81",
        None,
    )
    assert s.records("a") == []


def test_trial_that_reached_max_t_records_its_final_value_on_complete() -> None:
    s = asha()
    for step in range(1, 82):
        s.on_result("a", step, 1.0)
    s.on_complete("a", 81, 1.0)
    assert [r.milestone for r in s.records("a")] == [1, 3, 9, 27, 81]
    assert s.records("a")[-1] == RungRecord(
        milestone=81, value=1.0, step=81, cutoff=None, decision=Decision.CONTINUE
    )


# Idempotence and stickiness


@pytest.mark.parametrize("mode", MODES)
def test_repeated_observation_returns_same_verdict_and_records_nothing_new(mode: str) -> None:
    s = asha(mode)
    s.on_result("a", 3, signed(mode, 0.9))
    first = s.on_result("b", 3, signed(mode, 0.95))
    records = s.records("b")
    for _ in range(3):
        assert s.on_result("b", 3, signed(mode, 0.95)) == first
    assert s.records("b") == records
    assert s.rung_table()[0].recorded == 2


def test_recorded_rung_is_never_re_decided_by_a_later_value() -> None:
    s = asha()
    s.on_result("a", 1, 0.9)
    s.on_result("b", 1, 0.95)
    assert s.on_result("b", 2, 0.0).decision is Decision.CONTINUE
    assert s.records("b")[0].value == 0.95


@pytest.mark.parametrize("mode", MODES)
def test_stopped_trial_stays_stopped_and_records_nothing_more(mode: str) -> None:
    s = asha(mode)
    s.on_result("a", 1, signed(mode, 0.9))
    stop = s.on_result("b", 1, signed(mode, 0.1))
    assert stop.decision is Decision.STOP
    assert s.on_result("b", 3, signed(mode, 1.0)) == stop
    s.on_complete("b", 3, signed(mode, 1.0))
    assert [r.milestone for r in s.records("b")] == [1]
    assert s.rung_table()[1].recorded == 0


def test_observation_for_a_completed_trial_is_answered_stop() -> None:
    s = asha()
    s.on_result("a", 1, 0.5)
    s.on_complete("a", 2, 0.5)
    assert s.on_result("a", 2, 0.5).decision is Decision.STOP


# Reports that skip milestones


@pytest.mark.parametrize("mode", MODES)
def test_skipped_milestones_are_filled_in_ascending_order_with_the_observed_step(mode: str) -> None:
    s = asha(mode)
    s.on_result("a", 10, signed(mode, 0.7))
    assert [(r.milestone, r.value, r.step) for r in s.records("a")] == [
        (1, signed(mode, 0.7), 10),
        (3, signed(mode, 0.7), 10),
        (9, signed(mode, 0.7), 10),
    ]


@pytest.mark.parametrize("mode", MODES)
def test_skip_stops_at_first_rung_that_says_stop(mode: str) -> None:
    s = asha(mode)
    for step in range(1, 10):
        s.on_result("a", step, signed(mode, 0.1 if step < 3 else 0.9))
    verdict = s.on_result("b", 10, signed(mode, 0.5))
    assert verdict.decision is Decision.STOP
    assert verdict.rung is not None and verdict.rung.milestone == 3
    assert [(r.milestone, r.decision) for r in s.records("b")] == [
        (1, Decision.CONTINUE),
        (3, Decision.STOP),
    ]


# Non-finite values


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_value_stops_trial_even_first_at_the_rung(mode: str, bad: float) -> None:
    s = asha(mode)
    verdict = s.on_result("a", 1, bad)
    assert verdict.decision is Decision.STOP
    assert verdict.rung == RungRecord(
        milestone=1, value=None, step=1, cutoff=None, decision=Decision.STOP
    )
    assert verdict.reason == "acc is not finite at rung 1 (step 1); counted as the worst value"


@pytest.mark.parametrize("mode", MODES)
def test_non_finite_values_are_left_out_of_the_cutoff(mode: str) -> None:
    s = asha(mode)
    s.on_result("n1", 1, math.nan)
    s.on_result("n2", 1, math.inf)
    s.on_result("good", 1, signed(mode, 0.9))
    # The cutoff is the quantile of the finite values alone: 0.9, which 0.5 does not beat.
    verdict = s.on_result("a", 1, signed(mode, 0.5))
    assert verdict.decision is Decision.STOP
    assert s.records("a")[0].cutoff == signed(mode, 0.9)
    assert s.rung_table()[0].recorded == 4


@pytest.mark.parametrize("mode", MODES)
def test_one_nan_among_two_values_does_not_let_a_bad_trial_through(mode: str) -> None:
    s = asha(mode)
    s.on_result("good", 1, signed(mode, 0.9))
    s.on_result("diverged", 1, math.nan)
    assert s.rung_table()[0].cutoff == signed(mode, 0.9)
    assert s.on_result("bad", 1, signed(mode, 0.1)).decision is Decision.STOP


@pytest.mark.parametrize("mode", MODES)
def test_a_rung_of_only_non_finite_values_has_no_cutoff(mode: str) -> None:
    s = asha(mode)
    s.on_result("n1", 1, math.nan)
    assert s.rung_table()[0].cutoff is None
    verdict = s.on_result("a", 1, signed(mode, 0.1))
    assert verdict.decision is Decision.CONTINUE
    assert verdict.reason.endswith("no finite cutoff there yet")


# on_complete


def test_on_complete_records_final_value_at_the_highest_milestone_it_reached() -> None:
    s = asha()
    for step in range(1, 9):
        s.on_result("a", step, 0.5)
    s.on_complete("a", 9, 0.6)
    assert s.records("a")[-1] == RungRecord(
        milestone=9, value=0.6, step=9, cutoff=None, decision=Decision.CONTINUE
    )


def test_on_complete_is_idempotent_and_ignores_missing_values() -> None:
    s = asha()
    s.on_result("a", 1, 0.5)
    s.on_complete("a", 10, 0.6)
    s.on_complete("a", 10, 0.6)
    assert [r.milestone for r in s.records("a")] == [1, 9]
    s.on_complete("b", 10, None)
    assert s.records("b") == []


# Records and restore


def test_rung_record_round_trips_through_json() -> None:
    for record in [
        RungRecord(milestone=9, value=0.31, step=10, cutoff=0.52, decision=Decision.STOP),
        RungRecord(milestone=1, value=None, step=1, cutoff=None, decision=Decision.CONTINUE),
    ]:
        d = json.loads(json.dumps(record.to_dict()))
        assert d.keys() == {"milestone", "value", "step", "cutoff", "decision"}
        assert RungRecord.from_dict(d) == record


@pytest.mark.parametrize(
    ("d", "message"),
    [
        ({"milestone": 1, "value": 1.0, "step": 1, "cutoff": None}, "decision: is required"),
        ({"milestone": 1, "value": 1.0, "step": 1, "cutoff": None, "decision": "pause"}, "'pause'"),
        (
            {"milestone": "1", "value": 1.0, "step": 1, "cutoff": None, "decision": "stop"},
            "milestone",
        ),
        ({"milestone": 1, "value": "x", "step": 1, "cutoff": None, "decision": "stop"}, "value"),
    ],
)
def test_rung_record_from_dict_rejects_malformed_input(d: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RungRecord.from_dict(d)


@pytest.mark.parametrize("mode", MODES)
def test_restore_rebuilds_rungs_and_stopped_trials(mode: str) -> None:
    s = asha(mode)
    for i, v in enumerate([0.9, 0.1, 0.5, math.nan]):
        for step in (1, 2, 3):
            s.on_result(f"t{i}", step, signed(mode, v))
    fresh = asha(mode)
    for i in range(4):
        fresh.restore(f"t{i}", [RungRecord.from_dict(r.to_dict()) for r in s.records(f"t{i}")])
    assert fresh.rung_table() == s.rung_table()
    for i in range(4):
        assert fresh.on_result(f"t{i}", 3, signed(mode, 0.5)) == s.on_result(
            f"t{i}", 3, signed(mode, 0.5)
        )
    assert fresh.on_result("new", 3, signed(mode, 0.6)) == s.on_result("new", 3, signed(mode, 0.6))


def test_restore_twice_replaces_the_trials_values() -> None:
    s = asha()
    s.on_result("a", 1, 0.5)
    records = s.records("a")
    s.restore("a", records)
    s.restore("a", records)
    assert s.rung_table()[0].recorded == 1


@pytest.mark.parametrize(
    ("records", "message"),
    [
        (
            [RungRecord(milestone=2, value=0.5, step=2, cutoff=None, decision=Decision.CONTINUE)],
            "milestone 2, which is not one of its rungs",
        ),
        (
            [RungRecord(milestone=1, value=0.5, step=1, cutoff=None, decision=Decision.CONTINUE)]
            * 2,
            "two records at milestone 1",
        ),
        (
            [
                RungRecord(milestone=1, value=0.5, step=1, cutoff=0.6, decision=Decision.STOP),
                RungRecord(milestone=3, value=0.5, step=3, cutoff=None, decision=Decision.CONTINUE),
            ],
            "stopped at milestone 1 but has records at higher milestones",
        ),
    ],
)
def test_restore_rejects_records_that_cannot_come_from_this_scheduler(
    records: list[RungRecord], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        asha().restore("a", records)


# Brackets


def test_bracket_follows_from_trial_id_alone() -> None:
    a, b = asha(brackets=3), asha(brackets=3)
    for i in range(50):
        assert a.milestones(f"exp-{i}") == b.milestones(f"exp-{i}")


def test_brackets_are_weighted_like_hyperband() -> None:
    s = asha(brackets=3, max_t=81, reduction_factor=3)
    weights = _bracket_weights(3, 3)
    assert weights == (9, 5, 3)
    counts = Counter(len(s.milestones(f"exp-{i}")) for i in range(17_000))
    # Bracket s starts at rf**s: 5, 4 and 3 rungs. crc32 spreads ids close to the weights.
    for rungs, weight in zip([5, 4, 3], weights, strict=True):
        assert counts[rungs] == pytest.approx(1000 * weight, rel=0.05)
    h = zlib.crc32(b"exp-0") % 17
    assert len(s.milestones("exp-0")) == (5 if h < 9 else 4 if h < 14 else 3)


def test_brackets_compare_only_within_the_bracket() -> None:
    s = asha(brackets=2)
    ids = {len(s.milestones(f"e-{i}")): f"e-{i}" for i in range(40)}
    low, high = ids[5], ids[4]  # rungs from 1 and from 3
    s.on_result(low, 3, 0.9)
    assert s.on_result(high, 3, 0.1).decision is Decision.CONTINUE
    assert {(row.bracket, row.milestone) for row in s.rung_table() if row.recorded} == {
        (0, 1),
        (0, 3),
        (1, 3),
    }


# Constructor


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "maximize"}, r"mode must be 'min' or 'max' \(got 'maximize'\)"),
        ({"metric": ""}, "metric must be a non-empty string"),
        ({"max_t": 0}, r"max_t must be an integer >= 1 \(got 0\)"),
        ({"max_t": 8.5}, r"max_t must be an integer >= 1 \(got 8.5\)"),
        ({"grace_period": 0}, r"grace_period must be an integer >= 1 \(got 0\)"),
        (
            {"grace_period": 10, "max_t": 9},
            r"grace_period must be <= max_t \(got grace_period=10, max_t=9\)",
        ),
        ({"reduction_factor": 1}, r"reduction_factor must be a number > 1 \(got 1\)"),
        ({"reduction_factor": math.nan}, "reduction_factor must be a number > 1"),
        ({"reduction_factor": 1.0001}, r"at most 1000 rungs .* \(got 1.0001, which makes 43947\)"),
        ({"brackets": 0}, r"brackets must be an integer >= 1 \(got 0\)"),
        ({"brackets": 6}, r"brackets must be <= 5, the number of rungs .* \(got 6\)"),
    ],
)
def test_constructor_rejects_invalid_settings_naming_value_and_rule(
    kwargs: dict[str, object], message: str
) -> None:
    setting: dict[str, object] = {
        "metric": "acc",
        "mode": "max",
        "max_t": 81,
        "reduction_factor": 3,
    }
    setting.update(kwargs)
    with pytest.raises(ValueError, match=message):
        make_scheduler("asha", **setting)  # type: ignore[arg-type]


def test_make_scheduler_builds_asha_with_rays_defaults() -> None:
    s = make_scheduler("asha", metric="acc", mode="max")
    assert isinstance(s, AsyncHyperBandScheduler)
    assert (s.max_t, s.grace_period, s.reduction_factor, s.time_attr) == (
        100,
        1,
        4,
        "training_iteration",
    )
    assert s.milestones("t") == [1, 4, 16, 64]


def test_make_scheduler_rejects_unknown_type() -> None:
    with pytest.raises(ValueError, match=r"one of asha, fifo, median \(got 'hyperband'\)"):
        make_scheduler("hyperband", metric="acc", mode="max")


# The cutoff arithmetic


def _rung_of(values: list[float]) -> OrderStatistics:
    rung = OrderStatistics()
    for v in values:
        rung.add(v)
    return rung


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(
        st.one_of(
            st.floats(
                allow_nan=False, allow_infinity=False, width=64, min_value=-1e300, max_value=1e300
            ),
            st.sampled_from([0.0, 0.1, 0.5, 1.0, -0.0]),
        ),
        min_size=1,
        max_size=40,
    ),
    rf=st.sampled_from([2, 2.5, 3, 4, 6, 12, 3.7]),
)
def test_cutoff_equals_numpy_nanpercentile_bit_for_bit(values: list[float], rf: float) -> None:
    quantile = asha(reduction_factor=rf, max_t=200)._quantile
    ours = rung_cutoff(_rung_of(values), quantile)
    theirs = float(np.nanpercentile(values, (1 - 1 / rf) * 100))
    assert ours == theirs


def test_lerp_uses_numpys_upper_branch_from_t_one_half() -> None:
    a, b, t = 0.1, 0.7, 0.7
    assert lerp(a, b, t) == b - (b - a) * (1 - t)
    assert lerp(a, b, t) != a + (b - a) * t
    assert lerp(a, b, 0.25) == a + (b - a) * 0.25


def test_cutoff_of_an_empty_rung_is_none() -> None:
    assert rung_cutoff(OrderStatistics(), 0.75) is None
