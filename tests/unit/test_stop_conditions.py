"""spec.stop and spec.timeBudgetSeconds: Ray's stop rule and time budget, decided by the planner."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from kubetune.api import SpecError, validate_experiment_spec
from kubetune.api.stop import StopSpec, stop_reason
from kubetune.controller.planner import (
    ExperimentView,
    Plan,
    PodView,
    TrialMetrics,
    TrialView,
    plan_tick,
)

pytestmark = pytest.mark.unit

START = "2026-01-01T00:00:00Z"


def spec(**over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "objective": {"metric": "accuracy", "mode": "max"},
        "searchSpace": {"lr": {"loguniform": [1e-4, 1e-1]}},
        "numSamples": 4, "maxConcurrentTrials": 2,
        "trialTemplate": {"spec": {"containers": [{"name": "t", "image": "x"}]}},
    }
    raw.update(over)
    return raw


def experiment(status: dict[str, Any] | None = None, **over: Any) -> ExperimentView:
    return ExperimentView(name="exp", namespace="ns", generation=1,
                          spec=validate_experiment_spec(spec(**over)), status=status or {})


def running(index: int, **status: Any) -> TrialView:
    return TrialView(name=f"exp-{index}", index=index, params={"lr": 0.01},
                     status={"state": "Running", "podName": f"exp-{index}-1", **status})


def pod(index: int, phase: str = "Running") -> PodView:
    return PodView(name=f"exp-{index}-1", trial=f"exp-{index}", attempt=1, phase=phase)


def observed(step: int, **metrics: float) -> TrialMetrics:
    return TrialMetrics(step=step, metrics=dict(metrics))


def patches(plan: Plan) -> dict[str, dict[str, Any]]:
    return {name: status.merge_patch() for name, status in plan.trial_status.items()}


# -- Ray's rule, on Ray's own code -------------------------------------------------------

RESULTS = [
    {"training_iteration": 1, "accuracy": 0.5},
    {"training_iteration": 2, "accuracy": 0.98},   # == threshold: stops (>=)
    {"training_iteration": 2, "accuracy": 0.979},
    {"training_iteration": 5, "accuracy": 0.1},    # iteration bound
    {"training_iteration": 7, "accuracy": float("nan")},
    {"training_iteration": 1, "accuracy": float("inf")},
    {"training_iteration": 1, "loss": 3.0},        # accuracy not reported
    {"training_iteration": 1, "accuracy": -1.0, "loss": 3.0},
]
CRITERIA = [
    {"training_iteration": 5, "accuracy": 0.98},
    {"accuracy": 0.98},
    {"training_iteration": 2},
    {"loss": 2.5},
    {"training_iteration": 100, "loss": 3.0, "accuracy": 1.0},
]


def _ray_should_stop(criteria: dict[str, float], result: dict[str, Any]) -> bool:
    from ray.tune.experiment.trial import Trial

    # Trial.should_stop reads only self.stopping_criterion: Ray's code, no Ray runtime.
    return bool(Trial.should_stop(SimpleNamespace(stopping_criterion=criteria), result))


def _ours(criteria: dict[str, float]) -> StopSpec:
    metrics = {k: v for k, v in criteria.items() if k != "training_iteration"}
    iteration = criteria.get("training_iteration")
    return StopSpec(training_iteration=int(iteration) if iteration else None,
                    metrics=metrics or None)


@pytest.mark.parametrize("criteria", CRITERIA)
@pytest.mark.parametrize("result", RESULTS)
def test_stop_rule_decides_as_rays_trial_should_stop(criteria: dict[str, float],
                                                     result: dict[str, Any]) -> None:
    step = result["training_iteration"]
    metrics = {k: v for k, v in result.items() if k != "training_iteration"}
    ours = stop_reason(_ours(criteria), step, metrics) is not None
    assert ours == _ray_should_stop(criteria, result)


def test_the_reason_names_the_condition_and_the_value() -> None:
    reason = stop_reason(StopSpec(metrics={"accuracy": 0.98}), 3, {"accuracy": 0.99})
    assert reason == "stop condition accuracy >= 0.98 met (accuracy=0.99)"
    assert stop_reason(StopSpec(training_iteration=4), 4, {}) == \
        "stop condition training_iteration >= 4 met (training_iteration=4)"


def test_an_empty_stop_is_refused_with_the_fix() -> None:
    with pytest.raises(SpecError, match="stop needs trainingIteration or at least one"):
        validate_experiment_spec(spec(stop={}))
    with pytest.raises(SpecError, match="timeBudgetSeconds"):
        validate_experiment_spec(spec(timeBudgetSeconds=0))


# -- the planner --------------------------------------------------------------------------

def test_a_trial_meeting_a_metric_threshold_ends_succeeded_and_its_pod_is_ended() -> None:
    exp = experiment(stop={"metrics": {"accuracy": 0.9}}, numSamples=2)
    snap = {"exp-0": observed(3, accuracy=0.93), "exp-1": observed(3, accuracy=0.5)}
    plan = plan_tick(exp, [running(0), running(1)], [pod(0), pod(1)], snap, START)
    patch = patches(plan)["exp-0"]
    assert patch["state"] == "Succeeded" and patch["reason"] == "StopConditionMet"
    assert patch["message"] == "stop condition accuracy >= 0.9 met (accuracy=0.93)"
    assert patch["metrics"] == {"accuracy": 0.93} and patch["step"] == 3
    assert ("exp-0-1", exp.spec.prune_grace_period_seconds) in plan.delete_pods
    assert "exp-1" not in patches(plan) or patches(plan)["exp-1"].get("state") != "Succeeded"
    assert all(p != "exp-1-1" for p, _ in plan.delete_pods)
    assert [(e.name, e.reason) for e in plan.events if e.reason == "TrialStopped"] == \
        [("exp-0", "TrialStopped")]
    assert plan.experiment_status is not None
    assert plan.experiment_status.best_trial is not None
    assert plan.experiment_status.best_trial.name == "exp-0"


def test_an_iteration_bound_ends_the_trial_at_the_first_report_past_it() -> None:
    exp = experiment(stop={"trainingIteration": 5}, numSamples=1)
    before = plan_tick(exp, [running(0)], [pod(0)], {"exp-0": observed(4, accuracy=0.4)}, START)
    assert "state" not in patches(before).get("exp-0", {})
    after = plan_tick(exp, [running(0)], [pod(0)], {"exp-0": observed(6, accuracy=0.6)}, START)
    patch = patches(after)["exp-0"]
    assert patch["state"] == "Succeeded" and patch["reason"] == "StopConditionMet"
    assert "training_iteration >= 5" in patch["message"]
    status = after.experiment_status
    assert status is not None and status.phase.value == "Succeeded"


def test_asha_pruning_at_a_rung_wins_over_a_threshold_met_later() -> None:
    exp = experiment(stop={"metrics": {"accuracy": 0.1}}, numSamples=2,
                     scheduler={"type": "asha", "maxT": 9, "gracePeriod": 1, "reductionFactor": 3})
    rung = [{"milestone": 1, "value": 0.9, "step": 1, "cutoff": None, "decision": "continue"}]
    snap = {"exp-1": TrialMetrics(step=1, metrics={"accuracy": 0.2}, rungs={1: (1, 0.2)})}
    plan = plan_tick(exp, [running(0, rungs=rung, state="Succeeded"), running(1)], [pod(1)],
                     snap, START)
    assert patches(plan)["exp-1"]["state"] == "Pruned"
    assert patches(plan)["exp-1"]["reason"] == "Pruned"


def test_within_the_budget_trials_are_still_created() -> None:
    exp = experiment({"startTime": START}, timeBudgetSeconds=60)
    plan = plan_tick(exp, [], [], None, "2026-01-01T00:00:59Z")
    assert [t.index for t in plan.new_trials] == [0, 1]


def test_an_exhausted_budget_stops_running_trials_creates_none_and_ends_with_the_best() -> None:
    exp = experiment({"startTime": START, "phase": "Running"}, timeBudgetSeconds=60)
    trials = [
        TrialView(name="exp-0", index=0, params={"lr": 0.01},
                  status={"state": "Succeeded", "metrics": {"accuracy": 0.7}, "step": 9}),
        running(1), running(2),
    ]
    snap = {"exp-1": observed(4, accuracy=0.8)}  # exp-2 has reported nothing yet
    plan = plan_tick(exp, trials, [pod(1), pod(2)], snap, "2026-01-01T00:01:00Z")
    assert plan.new_trials == [] and plan.new_pods == []
    p = patches(plan)
    assert p["exp-1"]["state"] == "Succeeded" and p["exp-1"]["reason"] == "TimeBudgetExhausted"
    assert p["exp-1"]["metrics"] == {"accuracy": 0.8}
    assert p["exp-2"]["state"] == "Pruned" and p["exp-2"]["reason"] == "TimeBudgetExhausted"
    assert sorted(name for name, _ in plan.delete_pods) == ["exp-1-1", "exp-2-1"]
    status = plan.experiment_status
    assert status is not None and status.phase.value == "Succeeded"
    assert status.best_trial is not None and status.best_trial.name == "exp-1"
    complete = next(c for c in status.conditions or [] if c.type == "Complete")
    assert complete.reason == "TimeBudgetExhausted" and complete.status.value == "True"
    assert "time budget of 60s" in status.message
    assert [e.reason for e in plan.events if e.kind == "TuneExperiment"].count(
        "TimeBudgetExhausted") == 1


def test_the_deadline_comes_from_the_persisted_start_time_so_a_restart_decides_the_same() -> None:
    exp = experiment({"startTime": START, "phase": "Running"}, timeBudgetSeconds=60)
    ticks = [plan_tick(exp, [running(0)], [pod(0)], {"exp-0": observed(2, accuracy=0.5)},
                       "2026-01-01T00:05:00Z") for _ in range(2)]
    assert patches(ticks[0]) == patches(ticks[1])
    assert ticks[0].experiment_status == ticks[1].experiment_status


def test_a_budget_that_ran_out_before_any_report_fails_the_experiment_with_the_reason() -> None:
    exp = experiment({"startTime": START, "phase": "Running"}, timeBudgetSeconds=10)
    plan = plan_tick(exp, [running(0)], [pod(0)], {}, "2026-01-01T00:00:11Z")
    status = plan.experiment_status
    assert status is not None and status.phase.value == "Failed"
    failed = next(c for c in status.conditions or [] if c.type == "Failed")
    assert failed.reason == "TimeBudgetExhausted"
    assert any(e.type == "Warning" and e.reason == "TimeBudgetExhausted" for e in plan.events)
    assert plan.delete_pods == [("exp-0-1", exp.spec.prune_grace_period_seconds)]


@pytest.mark.parametrize("budget", [1, 10, 61])
def test_the_budget_runs_out_when_rays_timeout_stopper_stops_all(
        budget: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray's TimeoutStopper (created from time_budget_s) counts from its first check, which
    Ray makes as the experiment starts; ours from status.startTime. Same clock, same answer."""
    import ray.tune.stopper.timeout as ray_timeout

    from kubetune.controller.planner.budget import budget_spent

    exp = experiment({"startTime": START}, timeBudgetSeconds=budget)
    clock = {"now": 1_767_225_600.0}  # START as Unix time
    monkeypatch.setattr(ray_timeout.time, "time", lambda: clock["now"])
    stopper = ray_timeout.TimeoutStopper(budget)
    for elapsed in [0, 0.5, budget - 1, budget - 0.001, budget, budget + 0.5, budget + 30]:
        clock["now"] = 1_767_225_600.0 + elapsed
        now = f"2026-01-01T00:{int(elapsed) // 60:02d}:{elapsed % 60:06.3f}Z"
        assert (budget_spent(exp.spec, exp.status, now) is not None) == stopper.stop_all(), \
            elapsed
