"""The pure reconcile decision: what one tick does for one experiment."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubetune.api import validate_experiment_spec
from kubetune.controller.planner import (
    ExperimentView,
    Plan,
    PodView,
    TrialMetrics,
    TrialView,
    plan_tick,
)

NOW = "2026-01-01T00:00:00Z"


def spec(**over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "objective": {"metric": "accuracy", "mode": "max"},
        "searchSpace": {"lr": {"loguniform": [1e-4, 1e-1]}},
        "numSamples": 6,
        "maxConcurrentTrials": 3,
        "trialRetries": 1,
        "maxFailedTrials": 2,
        "scheduler": {"type": "asha", "maxT": 9, "gracePeriod": 1, "reductionFactor": 3},
        "trialTemplate": {"spec": {"containers": [{"name": "t", "image": "x", "command": ["train"]}]}},
    }
    raw.update(over)
    return raw


def experiment(**over: Any) -> ExperimentView:
    return ExperimentView(name="exp", namespace="ns", generation=1,
                          spec=validate_experiment_spec(spec(**over)), status={})


def trial(index: int, state: str = "Running", rungs: list[dict[str, Any]] | None = None,
          **status: Any) -> TrialView:
    return TrialView(name=f"exp-{index}", index=index, params={"lr": 0.01},
                     status={"state": state, "rungs": rungs or [], "podName": f"exp-{index}-1",
                             **status})


def pod(index: int, phase: str = "Running", attempt: int = 1, message: str = "",
        exit_code: int | None = None) -> PodView:
    return PodView(name=f"exp-{index}-{attempt}", trial=f"exp-{index}", attempt=attempt,
                   phase=phase, exit_code=exit_code, message=message)


def snapshot(**rungs: dict[int, float]) -> dict[str, TrialMetrics]:
    out = {}
    for name, values in rungs.items():
        step = max(values)
        out[name.replace("_", "-")] = TrialMetrics(
            step=step, metrics={"accuracy": values[step]},
            rungs={m: (m, v) for m, v in values.items()})
    return out


def patches(plan: Plan) -> dict[str, dict[str, Any]]:
    """The trial status patches as the operator writes them."""
    return {name: status.merge_patch() for name, status in plan.trial_status.items()}


def experiment_patch(plan: Plan) -> dict[str, Any]:
    assert plan.experiment_status is not None
    return plan.experiment_status.merge_patch()


def test_first_tick_creates_trials_up_to_the_concurrency_cap():
    plan = plan_tick(experiment(), [], [], None, NOW)
    assert [t.index for t in plan.new_trials] == [0, 1, 2]
    assert [(p.trial, p.attempt) for p in plan.new_pods] == [("exp-0", 1), ("exp-1", 1), ("exp-2", 1)]
    assert all(p.milestones == [1, 3, 9] for p in plan.new_pods)
    assert [e.reason for e in plan.events] == ["TrialCreated"] * 3
    assert experiment_patch(plan)["phase"] == "Running"


def test_configs_are_the_same_whenever_they_are_planned():
    first = plan_tick(experiment(), [], [], None, NOW)
    again = plan_tick(experiment(), [], [], None, NOW)
    assert [t.params for t in first.new_trials] == [t.params for t in again.new_trials]
    assert len({json.dumps(t.params) for t in first.new_trials}) == 3


def test_never_more_trials_than_num_samples():
    plan = plan_tick(experiment(numSamples=2, maxConcurrentTrials=5), [], [], None, NOW)
    assert [t.index for t in plan.new_trials] == [0, 1]


def test_pending_pods_count_toward_the_cap():
    trials = [trial(i, "Pending") for i in range(3)]
    pods = [pod(i, "Pending") for i in range(3)]
    plan = plan_tick(experiment(), trials, pods, None, NOW)
    assert plan.new_trials == [] and plan.new_pods == []


def test_a_pod_being_deleted_still_holds_its_slot():
    trials = [trial(0, "Pruned"), trial(1), trial(2)]
    pods = [PodView("exp-0-1", "exp-0", 1, "Running", deleting=True), pod(1), pod(2)]
    plan = plan_tick(experiment(), trials, pods, {}, NOW)
    assert plan.new_trials == []


def test_trial_below_rung_cutoff_is_pruned_and_its_pod_deleted():
    recorded = [{"milestone": 1, "value": 0.9, "step": 1, "cutoff": None, "decision": "continue"}]
    trials = [trial(0, rungs=recorded), trial(1), trial(2)]
    pods = [pod(0), pod(1), pod(2)]
    plan = plan_tick(experiment(), trials, pods, snapshot(exp_1={1: 0.2}), NOW)
    patch = patches(plan)["exp-1"]
    assert patch["state"] == "Pruned"
    assert patch["prunedAt"] == {"milestone": 1, "value": 0.2, "cutoff": 0.9, "step": 1}
    assert ("exp-1-1", 30) in plan.delete_pods
    assert any(e.reason == "TrialPruned" and e.name == "exp-1" for e in plan.events)
    # The freed slot is not reused before the pod is gone.
    assert plan.new_trials == []


@pytest.mark.parametrize("mode", ["min", "max"])
def test_better_value_at_a_rung_continues_and_is_recorded(mode: str):
    first = 0.5
    better = 0.9 if mode == "max" else 0.1
    recorded = [{"milestone": 1, "value": first, "step": 1, "cutoff": None, "decision": "continue"}]
    exp = experiment(objective={"metric": "accuracy", "mode": mode})
    plan = plan_tick(exp, [trial(0, rungs=recorded), trial(1)], [pod(0), pod(1)],
                     snapshot(exp_1={1: better}), NOW)
    patch = patches(plan)["exp-1"]
    assert "state" not in patch or patch["state"] == "Running"
    assert patch["rungs"][0]["decision"] == "continue"
    assert plan.delete_pods == []


def test_without_metrics_nothing_is_pruned_and_the_condition_says_why():
    recorded = [{"milestone": 1, "value": 0.9, "step": 1, "cutoff": None, "decision": "continue"}]
    trials = [trial(0, rungs=recorded), trial(1), trial(2)]
    plan = plan_tick(experiment(), trials, [pod(0), pod(1), pod(2)], None, NOW,
                     metrics_error="Prometheus at http://p is unreachable")
    assert plan.delete_pods == []
    assert all(p.get("state") != "Pruned" for p in patches(plan).values())
    cond = next(c for c in experiment_patch(plan)["conditions"] if c["type"] == "MetricsAvailable")
    assert cond["status"] == "False" and "unreachable" in cond["message"]


def test_a_series_missing_for_one_trial_takes_no_decision_for_it():
    recorded = [{"milestone": 1, "value": 0.9, "step": 1, "cutoff": None, "decision": "continue"}]
    plan = plan_tick(experiment(), [trial(0, rungs=recorded), trial(1)], [pod(0), pod(1)],
                     {}, NOW)
    assert "exp-1" not in patches(plan) and plan.delete_pods == []


def test_finished_trial_takes_its_final_metrics_from_the_termination_message():
    message = json.dumps({"step": 9, "metrics": {"accuracy": 0.93, "loss": 0.2},
                          "rungs": {"1": {"step": 1, "value": 0.5}, "3": {"step": 3, "value": 0.8}},
                          "finished": True})
    plan = plan_tick(experiment(numSamples=1), [trial(0)], [pod(0, "Succeeded", message=message)],
                     None, NOW)
    patch = patches(plan)["exp-0"]
    assert patch["state"] == "Succeeded"
    assert patch["metrics"] == {"accuracy": 0.93, "loss": 0.2} and patch["step"] == 9
    assert [r["milestone"] for r in patch["rungs"]] == [1, 3]
    status = experiment_patch(plan)
    assert status["phase"] == "Succeeded"
    assert status["bestTrial"]["name"] == "exp-0" and status["bestTrial"]["metric"] == 0.93
    assert any(e.reason == "ExperimentSucceeded" for e in plan.events)


def test_a_trial_that_never_reported_the_objective_fails_with_a_reason():
    plan = plan_tick(experiment(numSamples=1), [trial(0)],
                     [pod(0, "Succeeded", message=json.dumps({"metrics": {"loss": 1}}))], None, NOW)
    assert patches(plan)["exp-0"]["state"] == "Failed"
    assert "without reporting 'accuracy'" in patches(plan)["exp-0"]["message"]


def test_a_retried_trial_points_at_its_current_pod():
    plan = plan_tick(experiment(), [trial(0)], [pod(0, "Failed", 1, exit_code=1), pod(0, attempt=2)],
                     {}, NOW)
    assert patches(plan)["exp-0"]["podName"] == "exp-0-2"
    assert patches(plan)["exp-0"]["attempts"] == 2


def test_failed_pod_is_retried_with_a_new_pod_and_the_same_config():
    plan = plan_tick(experiment(), [trial(0)], [pod(0, "Failed", exit_code=3)], None, NOW)
    retry = next(p for p in plan.new_pods if p.trial == "exp-0")
    assert retry.attempt == 2 and retry.params == {"lr": 0.01}
    assert any(e.reason == "TrialRetried" for e in plan.events)


def test_a_trial_out_of_retries_fails_and_too_many_failures_fail_the_experiment():
    trials = [trial(0, "Failed"), trial(1)]
    pods = [pod(0, "Failed", 2, exit_code=3), pod(1, "Failed", 2, exit_code=3), pod(2)]
    plan = plan_tick(experiment(), [*trials, trial(2)], pods, {}, NOW)
    assert patches(plan)["exp-1"]["state"] == "Failed"
    assert "exit code 3" in patches(plan)["exp-1"]["message"]
    status = experiment_patch(plan)
    assert status["phase"] == "Failed" and "maxFailedTrials=2" in status["message"]
    assert plan.new_trials == [] and ("exp-2-1", 30) in plan.delete_pods
    assert patches(plan)["exp-2"]["reason"] == "ExperimentFailed"


def test_a_restarted_operator_rebuilds_the_same_rung_table_from_trial_records():
    recorded = {i: [{"milestone": 1, "value": v, "step": 1, "cutoff": None, "decision": "continue"}]
                for i, v in enumerate([0.9, 0.8, 0.7])}
    trials = [trial(i, rungs=recorded[i]) for i in range(3)]
    plan = plan_tick(experiment(), trials, [pod(i) for i in range(3)], {}, NOW)
    assert experiment_patch(plan)["rungs"][0] == {
        "milestone": 1, "recorded": 3, "bracket": 0,
        "cutoff": pytest.approx(0.8 + (0.9 - 0.8) * (2 / 3 * 2 - 1))}


def test_trial_index_order_waits_for_an_earlier_trial_before_deciding_a_later_one():
    scheduler = {"type": "asha", "maxT": 9, "gracePeriod": 1, "reductionFactor": 3,
                 "decisionOrder": "trialIndex"}
    exp = experiment(scheduler=scheduler)
    # trial 1 reports rung 1 before trial 0 does: ordered decisions wait for trial 0.
    plan = plan_tick(exp, [trial(0), trial(1)], [pod(0), pod(1)], snapshot(exp_1={1: 0.2}), NOW)
    assert "rungs" not in patches(plan).get("exp-1", {})
    plan = plan_tick(exp, [trial(0), trial(1)], [pod(0), pod(1)],
                     snapshot(exp_0={1: 0.9}, exp_1={1: 0.2}), NOW)
    assert patches(plan)["exp-0"]["rungs"][0]["decision"] == "continue"
    assert patches(plan)["exp-1"]["state"] == "Pruned"
