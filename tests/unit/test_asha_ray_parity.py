"""Our ASHA against Ray Tune's AsyncHyperBandScheduler on identical traces.

Ray's scheduler runs without ray.init: trials are stand-ins with a trial_id,
and the calls follow Ray's TuneController: every result goes through
on_trial_result; a STOP, or the end of the trial, calls on_trial_complete
with the last result; a result marked done skips on_trial_result and only
reaches on_trial_complete.

Parity is promised for one bracket and a finite report at every step. The
tests at the end pin where we differ from Ray on purpose.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

import pytest
from ray.tune.schedulers import AsyncHyperBandScheduler
from ray.tune.schedulers.trial_scheduler import TrialScheduler as RayDecision

from kubetune.schedulers import AsyncHyperBandScheduler as OurASHA
from kubetune.schedulers import Decision

# Typed loosely: the trials handed to Ray are stand-ins, not ray.tune Trial objects.
RayASHA: Any = AsyncHyperBandScheduler

N_TRACES = 1000
METRIC = "score"
TIME = "training_iteration"


@dataclass
class _RayTrial:
    trial_id: str


@dataclass
class _Run:
    """One trial of a trace: its learning curve, how far it goes, how it ends."""

    trial_id: str
    curve: list[float | int]
    length: int
    final_only_in_complete: bool
    step: int = 0


@dataclass
class _Outcome:
    decisions: int = 0
    stops: int = 0
    mismatches: list[str] = field(default_factory=list)


def _curve(rng: random.Random, max_t: int) -> list[float | int]:
    """Values for steps 1..max_t: smooth curves, coarse grids that tie, constants, ints."""
    kind = rng.randrange(5)
    quality = rng.random()
    rate = rng.uniform(0.05, 1.0)
    noise = rng.choice([0.0, 0.01, 0.1, 0.3])
    values: list[float | int] = []
    for step in range(1, max_t + 1):
        smooth = quality * (1 - math.exp(-rate * step)) + rng.gauss(0, noise)
        if kind == 0:
            values.append(smooth)
        elif kind == 1:
            values.append(round(smooth, 1))
        elif kind == 2:
            values.append(rng.choice([0.0, 0.25, 0.5]))
        elif kind == 3:
            values.append(rng.randrange(4))
        else:
            values.append(round(quality, 1))
    return values


def _run_trace(seed: int) -> tuple[dict[str, object], _Outcome]:
    rng = random.Random(seed)
    mode = rng.choice(["min", "max"])
    reduction_factor = rng.choice([3, 3, 4, 4, 2, 2.5, 3.0])
    grace_period = rng.choice([1, 1, 1, 2, 3, 4])
    max_t = rng.choice([9, 16, 27, 30, 64, 81, 100, rng.randint(grace_period, 60)])
    max_t = max(max_t, grace_period)
    workers = rng.randint(1, 8)
    n_trials = rng.randint(4, 24)
    setting = {
        "mode": mode,
        "reduction_factor": reduction_factor,
        "grace_period": grace_period,
        "max_t": max_t,
    }
    ray = RayASHA(time_attr=TIME, metric=METRIC, **setting)
    ours = OurASHA(time_attr=TIME, metric=METRIC, **setting)  # type: ignore[arg-type]
    pending = [
        _Run(
            trial_id=f"trace{seed}-{i}",
            curve=_curve(rng, max_t),
            length=max_t if rng.random() < 0.7 else rng.randint(1, max_t),
            final_only_in_complete=rng.random() < 0.5,
        )
        for i in range(n_trials)
    ]
    handles = {run.trial_id: _RayTrial(run.trial_id) for run in pending}
    running: list[_Run] = []
    outcome = _Outcome()

    def complete(run: _Run) -> None:
        result = {TIME: run.step, METRIC: run.curve[run.step - 1]}
        ray.on_trial_complete(None, handles[run.trial_id], result)
        ours.on_complete(run.trial_id, run.step, run.curve[run.step - 1])
        running.remove(run)

    while pending or running:
        while pending and len(running) < workers:
            run = pending.pop(0)
            ray.on_trial_add(None, handles[run.trial_id])
            running.append(run)
        run = rng.choice(running)
        run.step += 1
        value = run.curve[run.step - 1]
        if run.step == run.length and run.final_only_in_complete:
            complete(run)  # a result marked done: Ray's controller skips on_trial_result
            continue
        ray_decision = ray.on_trial_result(
            None, handles[run.trial_id], {TIME: run.step, METRIC: value}
        )
        verdict = ours.on_result(run.trial_id, run.step, value)
        outcome.decisions += 1
        outcome.stops += verdict.decision is Decision.STOP
        expected = Decision.STOP if ray_decision == RayDecision.STOP else Decision.CONTINUE
        if verdict.decision is not expected:
            outcome.mismatches.append(
                f"seed {seed} {setting} {run.trial_id} step {run.step} value {value!r}: "
                f"ray {ray_decision}, ours {verdict.decision} ({verdict.reason})"
            )
        if ray_decision == RayDecision.STOP or run.step == run.length:
            complete(run)

    _compare_rungs(seed, ray, ours, [h.trial_id for h in handles.values()], outcome)
    return setting, outcome


def _compare_rungs(
    seed: int, ray: Any, ours: OurASHA, trial_ids: list[str], outcome: _Outcome
) -> None:
    """The rung contents (maximise space) and the cutoffs must match exactly too."""
    metric_op = 1.0 if ours.mode == "max" else -1.0
    (bracket,) = ray._brackets
    ray_rungs = {math.ceil(m): dict(recorded) for m, recorded in bracket._rungs}
    our_rungs: dict[int, dict[str, float]] = {m: {} for m in ours.milestones(trial_ids[0])}
    for trial_id in trial_ids:
        for record in ours.records(trial_id):
            our_rungs[record.milestone][trial_id] = metric_op * record.value  # type: ignore[operator]
    if ray_rungs != our_rungs:
        outcome.mismatches.append(f"seed {seed}: rungs differ\nray  {ray_rungs}\nours {our_rungs}")
        return
    ray_cutoffs = {
        math.ceil(m): None if not rec else metric_op * float(bracket.cutoff(rec))
        for m, rec in bracket._rungs
    }
    our_cutoffs = {row.milestone: row.cutoff for row in ours.rung_table()}
    if ray_cutoffs != our_cutoffs:
        outcome.mismatches.append(
            f"seed {seed}: cutoffs differ: ray {ray_cutoffs}, ours {our_cutoffs}"
        )


def test_decisions_match_ray_on_every_step_traces() -> None:
    decisions = 0
    stops = 0
    mismatches: list[str] = []
    covered: set[tuple[str, object]] = set()
    for seed in range(N_TRACES):
        setting, outcome = _run_trace(seed)
        decisions += outcome.decisions
        stops += outcome.stops
        mismatches += outcome.mismatches
        covered.add(("mode", setting["mode"]))
        covered.add(("rf", setting["reduction_factor"]))
    print(
        f"\nASHA parity with Ray: {N_TRACES} traces, {decisions} decisions compared, "
        f"{len(mismatches)} mismatches ({stops} of the decisions were STOP)"
    )
    assert {("mode", "min"), ("mode", "max"), ("rf", 3), ("rf", 4)} <= covered
    assert decisions > 50_000
    assert stops > decisions // 20
    assert mismatches == [], "\n".join(mismatches[:5])


@pytest.mark.parametrize(
    ("grace_period", "max_t", "reduction_factor"),
    [(1, 81, 3), (1, 243, 3), (1, 64, 4), (1, 1000, 10), (2, 100, 4), (1, 10, 2.5), (3, 3, 3)],
)
def test_rung_milestones_are_rays(grace_period: int, max_t: int, reduction_factor: float) -> None:
    ray = RayASHA(
        metric=METRIC,
        mode="max",
        max_t=max_t,
        grace_period=grace_period,
        reduction_factor=reduction_factor,
    )
    ours = OurASHA(
        metric=METRIC,
        mode="max",
        max_t=max_t,
        grace_period=grace_period,
        reduction_factor=reduction_factor,
    )
    assert ours.milestones("t") == sorted(math.ceil(m) for m, _ in ray._brackets[0]._rungs)


# Where we differ on purpose. Each test shows what Ray does, then what we do.


def _pair(**kwargs: object) -> tuple[Any, OurASHA]:
    setting = {
        "metric": METRIC,
        "mode": "max",
        "max_t": 81,
        "grace_period": 1,
        "reduction_factor": 3,
    }
    setting.update(kwargs)
    return RayASHA(**setting), OurASHA(**setting)  # type: ignore[arg-type]


def _feed(ray: Any, ours: OurASHA, trial: str, step: int, value: float) -> tuple[str, Decision]:
    handle = _RayTrial(trial)
    if trial not in ray._trial_info:
        ray.on_trial_add(None, handle)
    ray_decision = ray.on_trial_result(None, handle, {TIME: step, METRIC: value})
    return ray_decision, ours.on_result(trial, step, value).decision


def _ray_rung_of(ray: Any, trial: str) -> dict[int, float]:
    return {m: rec[trial] for m, rec in ray._brackets[0]._rungs if trial in rec}


def test_skipped_milestones_ray_records_highest_rung_we_fill_ascending() -> None:
    ray, ours = _pair()
    for step, value in [(10, 0.1), (20, 0.2), (26, 0.3)]:
        _feed(ray, ours, "a", step, value)
    # Ray: step 10 lands on rung 9; rungs 3 and 1 get the values of steps 20 and 26.
    assert _ray_rung_of(ray, "a") == {9: 0.1, 3: 0.2, 1: 0.3}
    # Ours: step 10 is the first report at or past milestones 1, 3 and 9.
    assert [(r.milestone, r.value, r.step) for r in ours.records("a")] == [
        (1, 0.1, 10),
        (3, 0.1, 10),
        (9, 0.1, 10),
    ]


def test_skipped_milestones_ray_judges_at_highest_rung_we_judge_at_lowest() -> None:
    ray, ours = _pair()
    # Others were strong at rung 1 and weak at rung 9 (fed so that neither is stopped).
    for trial, early, late in [("c", 0.8, 0.1), ("b", 0.9, 0.2)]:
        for step in range(1, 10):
            _feed(ray, ours, trial, step, early if step < 9 else late)
    # "a" is first seen at step 10 with 0.5: below rung 1's cutoff, above rung 9's.
    ray_decision, our_decision = _feed(ray, ours, "a", 10, 0.5)
    assert ray_decision == RayDecision.CONTINUE
    assert our_decision is Decision.STOP
    assert ours.on_result("a", 10, 0.5).rung.milestone == 1  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_value_ray_lets_run_we_stop_at_first_rung(bad: float) -> None:
    ray, ours = _pair(mode="max")
    for trial in ["b", "c"]:
        _feed(ray, ours, trial, 1, 0.5)
    ray_decision, our_decision = _feed(ray, ours, "a", 1, bad)
    assert ray_decision == (RayDecision.STOP if bad == -math.inf else RayDecision.CONTINUE)
    assert our_decision is Decision.STOP
    # Even the first trial at a rung is stopped by a non-finite value; Ray lets NaN run.
    ray2, ours2 = _pair(mode="max")
    assert _feed(ray2, ours2, "z", 1, math.nan) == (RayDecision.CONTINUE, Decision.STOP)
    assert ours2.records("z")[0].value is None


@pytest.mark.filterwarnings("ignore:All-NaN slice encountered")
def test_nan_is_left_out_of_the_cutoff_as_ray_leaves_it_out() -> None:
    ray, ours = _pair(mode="max")
    _feed(ray, ours, "n1", 1, math.nan)
    _feed(ray, ours, "n2", 1, math.nan)
    _feed(ray, ours, "good", 1, 0.9)
    # Both cutoffs are the 67th percentile of [0.9] alone (Ray's nanpercentile drops NaN).
    assert _feed(ray, ours, "a", 1, 0.5) == (RayDecision.STOP, Decision.STOP)
    assert ours.records("a")[0].cutoff == 0.9


def test_stopped_trial_ray_records_final_result_at_skipped_rung_we_do_not() -> None:
    ray, ours = _pair()
    for trial in ["b", "c"]:
        for step in range(1, 12):
            _feed(ray, ours, trial, step, 0.9)
    ray_decision, our_decision = _feed(ray, ours, "a", 11, 0.1)
    assert (ray_decision, our_decision) == (RayDecision.STOP, Decision.STOP)
    ray.on_trial_complete(None, _RayTrial("a"), {TIME: 11, METRIC: 0.1})
    ours.on_complete("a", 11, 0.1)
    assert sorted(_ray_rung_of(ray, "a")) == [3, 9]
    assert [r.milestone for r in ours.records("a")] == [1]
