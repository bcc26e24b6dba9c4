"""Median stopping rule: Ray's semantics, a real median, rebuildable state."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from ray.tune.schedulers import MedianStoppingRule as _RayMedian
from ray.tune.schedulers.trial_scheduler import TrialScheduler as RayDecision

from kubetune.schedulers import Decision, MedianStoppingRule, RungRecord, make_scheduler

MODES = ["max", "min"]

# Typed loosely: the trials and controller handed to Ray are stand-ins.
RayMedian: Any = _RayMedian


def median_rule(mode: str = "max", **kwargs: object) -> MedianStoppingRule:
    setting: dict[str, object] = {"max_t": 20, "grace_period": 1, "min_samples_required": 3}
    setting.update(kwargs)
    return MedianStoppingRule(metric="acc", mode=mode, **setting)  # type: ignore[arg-type]


def signed(mode: str, value: float) -> float:
    return value if mode == "max" else -value


def feed(s: MedianStoppingRule, trial: str, values: list[float], mode: str) -> Decision:
    decision = Decision.CONTINUE
    for step, v in enumerate(values, start=1):
        decision = s.on_result(trial, step, signed(mode, v)).decision
    return decision


@pytest.mark.parametrize("mode", MODES)
def test_trial_whose_best_is_below_median_of_running_means_is_stopped(mode: str) -> None:
    s = median_rule(mode)
    for i, v in enumerate([0.5, 0.6, 0.7]):
        feed(s, f"t{i}", [v, v], mode)
    verdict = s.on_result("low", 1, signed(mode, 0.55))
    assert verdict.decision is Decision.STOP
    assert verdict.rung == RungRecord(
        milestone=1,
        value=signed(mode, 0.55),
        step=1,
        cutoff=signed(mode, 0.6),
        decision=Decision.STOP,
    )
    op = "<" if mode == "max" else ">"
    assert verdict.reason == (
        f"best acc {signed(mode, 0.55)!r} {op} median {signed(mode, 0.6)!r} "
        "of other trials' running means at step 1"
    )


@pytest.mark.parametrize("mode", MODES)
def test_tie_with_the_median_continues(mode: str) -> None:
    s = median_rule(mode)
    for i, v in enumerate([0.5, 0.6, 0.7]):
        feed(s, f"t{i}", [v], mode)
    assert s.on_result("tie", 1, signed(mode, 0.6)).decision is Decision.CONTINUE


@pytest.mark.parametrize("mode", MODES)
def test_median_of_an_even_count_averages_the_two_middle_values(mode: str) -> None:
    def four_others() -> MedianStoppingRule:
        s = median_rule(mode)
        for i, v in enumerate([0.0, 0.4, 0.6, 100.0]):
            feed(s, f"t{i}", [v], mode)
        return s

    # A mean (Katib's "median") would be 25.25; the median is 0.5.
    verdict = four_others().on_result("a", 1, signed(mode, 0.49))
    assert verdict.decision is Decision.STOP
    assert verdict.rung is not None and verdict.rung.cutoff == signed(mode, 0.5)
    assert four_others().on_result("b", 1, signed(mode, 0.5)).decision is Decision.CONTINUE


@pytest.mark.parametrize("mode", MODES)
def test_best_value_so_far_is_compared_not_the_latest(mode: str) -> None:
    s = median_rule(mode)
    for i in range(3):
        feed(s, f"t{i}", [0.5, 0.5, 0.5], mode)
    assert feed(s, "a", [0.9, 0.1, 0.1], mode) is Decision.CONTINUE


@pytest.mark.parametrize("mode", MODES)
def test_others_are_compared_by_their_running_mean_from_grace_period(mode: str) -> None:
    s = median_rule(mode, grace_period=2)
    for i in range(3):
        feed(s, f"t{i}", [100.0, 0.2, 0.8], mode)  # running mean at step 3: 0.5
    assert feed(s, "a", [0.0, 0.3, 0.49], mode) is Decision.STOP
    assert s.records("a")[-1].cutoff == signed(mode, 0.5)


@pytest.mark.parametrize("mode", MODES)
def test_no_stop_within_grace_period(mode: str) -> None:
    s = median_rule(mode, grace_period=3)
    for i in range(3):
        feed(s, f"t{i}", [0.9, 0.9, 0.9], mode)
    assert feed(s, "a", [0.1, 0.1], mode) is Decision.CONTINUE
    assert s.on_result("a", 3, signed(mode, 0.1)).decision is Decision.STOP


@pytest.mark.parametrize("mode", MODES)
def test_fewer_than_min_samples_required_continues(mode: str) -> None:
    s = median_rule(mode, min_samples_required=3)
    for i in range(2):
        feed(s, f"t{i}", [0.9], mode)
    verdict = s.on_result("a", 1, signed(mode, 0.1))
    assert verdict.decision is Decision.CONTINUE
    assert verdict.reason == "acc continues at step 1: fewer than 3 other trials there"


def test_only_trials_that_reached_the_step_count() -> None:
    s = median_rule()
    for i in range(3):
        feed(s, f"t{i}", [0.9], "max")
    assert s.on_result("a", 1, 0.95).rung is None
    verdict = s.on_result("a", 2, 0.95)
    assert verdict.reason == "acc continues at step 2: fewer than 3 other trials there"
    assert s.rung_table()[1].recorded == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_value_stops_the_trial(mode: str, bad: float) -> None:
    s = median_rule(mode)
    verdict = s.on_result("a", 1, bad)
    assert verdict.decision is Decision.STOP
    assert verdict.reason == "acc is not finite at step 1; counted as the worst value"


@pytest.mark.parametrize("mode", MODES)
def test_non_finite_running_means_are_left_out_of_the_median(mode: str) -> None:
    s = median_rule(mode, min_samples_required=2)
    feed(s, "good1", [0.9], mode)
    feed(s, "good2", [0.8], mode)
    s.on_result("diverged1", 1, math.nan)
    s.on_result("diverged2", 1, math.inf)
    # Four running means, two of them -inf: the median of the finite two is 0.85, not -inf.
    assert s.rung_table()[0].cutoff == pytest.approx(signed(mode, 0.85))
    assert s.on_result("bad", 1, signed(mode, 0.1)).decision is Decision.STOP


def test_min_samples_required_counts_only_finite_running_means() -> None:
    s = median_rule(min_samples_required=2)
    feed(s, "good", [0.9], "max")
    s.on_result("diverged", 1, math.nan)
    verdict = s.on_result("a", 1, 0.1)
    assert verdict.decision is Decision.CONTINUE and verdict.rung is None


def test_stopped_trial_stays_stopped_and_repeats_are_idempotent() -> None:
    s = median_rule()
    for i in range(3):
        feed(s, f"t{i}", [0.9], "max")
    stop = s.on_result("a", 1, 0.1)
    assert s.on_result("a", 5, 1.0) == stop
    s.on_complete("a", 5, 1.0)
    assert len(s.records("a")) == 1
    go = s.on_result("t0", 2, 0.9)
    assert s.on_result("t0", 2, 0.9) == go


def test_skipped_steps_are_filled_with_the_first_value_at_or_past_them() -> None:
    s = median_rule()
    s.on_result("a", 4, 0.7)
    assert [(r.milestone, r.value, r.step) for r in s.records("a")] == [
        (m, 0.7, 4) for m in range(1, 5)
    ]


def test_steps_past_max_t_are_not_judged() -> None:
    s = median_rule(max_t=3)
    assert s.milestones("a") == [1, 2, 3]
    for i in range(3):
        feed(s, f"t{i}", [0.9] * 3, "max")
    assert s.on_result("a", 10, 0.1).decision is Decision.STOP
    assert s.records("a")[-1].milestone == 1
    assert s.on_result("t0", 50, 0.0).decision is Decision.CONTINUE


def test_on_complete_records_the_final_value_once_without_judging() -> None:
    s = median_rule()
    for i in range(3):
        feed(s, f"t{i}", [0.9, 0.9], "max")
    s.on_result("a", 1, 0.95)
    s.on_complete("a", 2, 0.1)
    s.on_complete("a", 2, 0.1)
    assert s.records("a")[-1] == RungRecord(
        milestone=2, value=0.1, step=2, cutoff=None, decision=Decision.CONTINUE
    )
    assert s.rung_table()[1].recorded == 4


@pytest.mark.parametrize("mode", MODES)
def test_restore_rebuilds_running_means_and_stopped_trials(mode: str) -> None:
    rng = random.Random(3)
    s = median_rule(mode, grace_period=2)
    for i in range(6):
        feed(s, f"t{i}", [rng.random() for _ in range(rng.randint(1, 8))], mode)
    fresh = median_rule(mode, grace_period=2)
    for i in range(6):
        fresh.restore(f"t{i}", [RungRecord.from_dict(r.to_dict()) for r in s.records(f"t{i}")])
    assert fresh.rung_table() == s.rung_table()
    for i in range(8):
        for step in range(1, 12):
            v = signed(mode, rng.random())
            assert fresh.on_result(f"t{i}", step, v) == s.on_result(f"t{i}", step, v)


def test_restore_rejects_gaps() -> None:
    with pytest.raises(ValueError, match="every step from 1 to max_t=20 without gaps"):
        median_rule().restore(
            "a",
            [RungRecord(milestone=2, value=0.5, step=2, cutoff=None, decision=Decision.CONTINUE)],
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_samples_required": 0}, r"min_samples_required must be an integer >= 1 \(got 0\)"),
        ({"grace_period": 30, "max_t": 20}, r"grace_period must be <= max_t"),
        ({"mode": "up"}, r"mode must be 'min' or 'max' \(got 'up'\)"),
    ],
)
def test_constructor_rejects_invalid_settings(kwargs: dict[str, object], message: str) -> None:
    setting: dict[str, object] = {"metric": "acc", "mode": "max", "max_t": 20}
    setting.update(kwargs)
    with pytest.raises(ValueError, match=message):
        make_scheduler("median", **setting)  # type: ignore[arg-type]


# Against Ray's MedianStoppingRule


class _RayTrial:
    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id


class _NoPendingTrials:
    """The controller Ray asks whether to pause instead: nothing is waiting."""

    def get_live_trials(self) -> list[_RayTrial]:
        return []


def _ray_trace(seed: int) -> tuple[int, list[str]]:
    rng = random.Random(seed)
    mode = rng.choice(MODES)
    grace = rng.choice([1, 2, 3])
    min_samples = rng.choice([1, 2, 3])
    max_t = rng.randint(grace, 25)
    controller = _NoPendingTrials()
    ray = RayMedian(
        time_attr="it", metric="m", mode=mode, grace_period=grace, min_samples_required=min_samples
    )
    ours = MedianStoppingRule(
        time_attr="it", metric="m", mode=mode, max_t=max_t, grace_period=grace,
        min_samples_required=min_samples,
    )  # fmt: skip
    # Multiples of 1/8: every running sum is exact, so numpy's pairwise sum agrees bit for bit.
    trials = {
        f"t{i}": ([rng.randrange(-16, 16) / 8 for _ in range(max_t)], rng.randint(1, max_t))
        for i in range(rng.randint(3, 12))
    }
    handles = {t: _RayTrial(t) for t in trials}
    step = dict.fromkeys(trials, 0)
    running = list(trials)[: rng.randint(1, 6)]
    waiting = list(trials)[len(running) :]
    decisions, mismatches = 0, []
    while running:
        t = rng.choice(running)
        step[t] += 1
        curve, length = trials[t]
        value = curve[step[t] - 1]
        if step[t] == length and rng.random() < 0.3:
            ray.on_trial_complete(controller, handles[t], {"it": step[t], "m": value})
            ours.on_complete(t, step[t], value)
            stop = True
        else:
            r = ray.on_trial_result(controller, handles[t], {"it": step[t], "m": value})
            v = ours.on_result(t, step[t], value)
            decisions += 1
            if (r == RayDecision.STOP) != (v.decision is Decision.STOP):
                mismatches.append(f"seed {seed} {t} step {step[t]}: ray {r}, ours {v}")
            # Ray would call on_trial_complete with this same result again; see the pinned test.
            stop = r == RayDecision.STOP or step[t] == length
        if stop:
            running.remove(t)
            if waiting:
                running.append(waiting.pop(0))
    return decisions, mismatches


def test_decisions_match_rays_median_stopping_rule_on_every_step_traces() -> None:
    decisions, mismatches = 0, []
    for seed in range(400):
        d, m = _ray_trace(seed)
        decisions += d
        mismatches += m
    print(
        f"\nmedian stopping parity with Ray: 400 traces, {decisions} decisions, {len(mismatches)} mismatches"
    )
    assert decisions > 10_000
    assert mismatches == [], "\n".join(mismatches[:5])


def test_ray_counts_the_final_result_twice_we_count_it_once() -> None:
    controller = _NoPendingTrials()
    ray = RayMedian(time_attr="it", metric="m", mode="max", grace_period=1, min_samples_required=1)
    ours = median_rule("max", min_samples_required=1)
    done = _RayTrial("done")
    ray.on_trial_result(controller, done, {"it": 1, "m": 0.0})
    ray.on_trial_result(controller, done, {"it": 2, "m": 1.0})
    ray.on_trial_complete(controller, done, {"it": 2, "m": 1.0})
    ours.on_result("done", 1, 0.0)
    ours.on_result("done", 2, 1.0)
    ours.on_complete("done", 2, 1.0)
    # Running mean of "done" at step 2: Ray (0 + 1 + 1) / 3, ours (0 + 1) / 2.
    a = _RayTrial("a")
    ray.on_trial_result(controller, a, {"it": 1, "m": 0.6})
    ray_decision = ray.on_trial_result(controller, a, {"it": 2, "m": 0.6})
    ours.on_result("a", 1, 0.6)
    assert ray_decision == RayDecision.STOP
    assert ours.on_result("a", 2, 0.6).decision is Decision.CONTINUE
