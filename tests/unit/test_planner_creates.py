"""The planner bounds the pods one tick creates (plan.CREATES_PER_TICK) and says when it
left free slots to the next tick; the next tick, fed what the first one wrote, goes on
where it stopped, so the order and the configs of the trials are those of one long tick."""

from __future__ import annotations

from typing import Any

import pytest

from kubetune.controller.planner import Plan, PodView, TrialView, plan_tick
from kubetune.controller.planner.plan import CREATES_PER_TICK
from tests.unit.test_planner_pods import NOW, experiment, pod, terminated, trial

pytestmark = pytest.mark.unit


def created(plan: Plan) -> tuple[list[TrialView], list[PodView]]:
    """What the apiserver holds once `plan`'s creates are written: Pending trials, new pods."""
    trials = [TrialView(name=f"exp-{t.index}", index=t.index, params=t.params, status={},
                        uid=f"uid-{t.index}") for t in plan.new_trials]
    pods = [pod(p.index, p.attempt, "Pending") for p in plan.new_pods]
    return trials, pods


def test_a_large_start_is_spread_over_bounded_ticks_in_index_order() -> None:
    exp = experiment(numSamples=100, maxConcurrentTrials=80)
    trials: list[TrialView] = []
    pods: list[PodView] = []
    per_tick: list[list[int]] = []
    more: list[bool] = []
    for _ in range(4):
        plan = plan_tick(exp, trials, pods, {}, NOW, creates=30)
        per_tick.append([p.index for p in plan.new_pods])
        more.append(plan.more_to_create)
        assert [t.index for t in plan.new_trials] == per_tick[-1]
        new_trials, new_pods = created(plan)
        trials, pods = trials + new_trials, pods + new_pods
    assert per_tick == [list(range(0, 30)), list(range(30, 60)), list(range(60, 80)), []]
    assert more == [True, True, False, False], "the cap, not maxConcurrentTrials, stopped it"


def test_the_configs_of_bounded_ticks_are_those_of_one_unbounded_tick() -> None:
    exp = experiment(numSamples=50, maxConcurrentTrials=50)
    whole = plan_tick(exp, [], [], {}, NOW, creates=1000)
    first = plan_tick(exp, [], [], {}, NOW, creates=20)
    trials, pods = created(first)
    second = plan_tick(exp, trials, pods, {}, NOW, creates=1000)
    assert [(t.index, t.params) for t in first.new_trials + second.new_trials] == \
        [(t.index, t.params) for t in whole.new_trials]
    assert not whole.more_to_create and first.more_to_create and not second.more_to_create


def test_retries_come_before_new_trials_and_a_capped_retry_is_made_next_tick() -> None:
    exp = experiment(numSamples=6, maxConcurrentTrials=6, trialRetries=1)
    failed = [pod(i, 1, "Failed", statuses=[terminated(code=1, reason="Error")])
              for i in range(3)]
    plan = plan_tick(exp, [trial(i) for i in range(3)], failed, {}, NOW, creates=2)
    assert [(p.trial, p.attempt) for p in plan.new_pods] == [("exp-0", 2), ("exp-1", 2)]
    assert plan.new_trials == [] and plan.more_to_create
    assert all(plan.trial_status[f"exp-{i}"].attempts == 2 for i in range(3)), \
        "every retry is decided now, whether or not its pod is made this tick"
    # The next tick reads the decided trials and the two new pods: it makes exp-2's pod,
    # without charging it again, then the new trials.
    decided = [trial(i, "Pending", attempts=2, podName=f"exp-{i}-1") for i in range(3)]
    again = plan_tick(exp, decided, [*failed, pod(0, 2, "Pending"), pod(1, 2, "Pending")],
                      {}, NOW, creates=2)
    assert [(p.trial, p.attempt) for p in again.new_pods] == [("exp-2", 2), ("exp-3", 1)]
    assert "exp-2" not in again.trial_status


def test_the_default_bound_applies_and_a_tick_under_it_leaves_nothing() -> None:
    big = plan_tick(experiment(numSamples=500, maxConcurrentTrials=500), [], [], {}, NOW)
    assert len(big.new_pods) == CREATES_PER_TICK and big.more_to_create
    small = plan_tick(experiment(numSamples=3, maxConcurrentTrials=3), [], [], {}, NOW)
    assert len(small.new_pods) == 3 and not small.more_to_create
    status: Any = big.experiment_status
    assert status.trials.created == CREATES_PER_TICK, "the status counts what was created"
