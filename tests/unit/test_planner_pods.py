"""The planner on pods that cannot run, disruptions, deleted TuneTrials and non-finite metrics.

Pods are read from raw Pod JSON as the apiserver lists them (`PodView.from_body`), so
these tests also pin which fields of a Pod each decision reads.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from kubetune.api import validate_experiment_spec
from kubetune.controller.pace import without_nulls
from kubetune.controller.planner import (
    ExperimentView,
    Plan,
    PodView,
    TrialMetrics,
    TrialView,
    plan_tick,
)
from tests.unit.test_status_schema import EXPERIMENT_STATUS, TRIAL_STATUS, assert_valid

NOW = "2026-01-01T00:10:00Z"
EARLIER = "2026-01-01T00:00:00Z"


def spec(**over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "objective": {"metric": "accuracy", "mode": "max"},
        "searchSpace": {"lr": {"loguniform": [1e-4, 1e-1]}},
        "numSamples": 3,
        "maxConcurrentTrials": 3,
        "trialRetries": 0,
        "maxFailedTrials": 0,
        "scheduler": {"type": "asha", "maxT": 9, "gracePeriod": 1, "reductionFactor": 3},
        "trialTemplate": {"spec": {"containers": [{"name": "t", "image": "x", "command": ["t"]}]}},
    }
    raw.update(over)
    return raw


def experiment(status: dict[str, Any] | None = None, **over: Any) -> ExperimentView:
    return ExperimentView(name="exp", namespace="ns", generation=1,
                          spec=validate_experiment_spec(spec(**over)), status=status or {})


def trial(index: int, state: str = "Running", **status: Any) -> TrialView:
    base = {"state": state, "podName": f"exp-{index}-1", "attempts": 1,
            "startTime": EARLIER} if state != "Pending" else {}
    return TrialView(name=f"exp-{index}", index=index, params={"lr": 0.01},
                     status={**base, **status}, uid=f"uid-{index}")


def pod_body(index: int, attempt: int = 1, phase: str = "Running", *,
             owner: str | None = None, containers: list[dict[str, Any]] | None = None,
             statuses: list[dict[str, Any]] | None = None, **status: Any) -> dict[str, Any]:
    spec_containers = containers or [{"name": "t", "image": "registry.example/train:1"}]
    return {
        "metadata": {"name": f"exp-{index}-{attempt}", "creationTimestamp": EARLIER,
                     "labels": {"kubetune.io/trial": f"exp-{index}",
                                "kubetune.io/attempt": str(attempt)},
                     "ownerReferences": [{"kind": "TuneTrial", "name": f"exp-{index}",
                                          "uid": owner or f"uid-{index}"}]},
        "spec": {"containers": spec_containers},
        "status": {"phase": phase, "startTime": EARLIER, "containerStatuses": statuses or [],
                   **status},
    }


def pod(index: int, attempt: int = 1, phase: str = "Running", **kw: Any) -> PodView:
    return PodView.from_body(pod_body(index, attempt, phase, **kw))


def running(name: str = "t", started: str = EARLIER) -> dict[str, Any]:
    return {"name": name, "state": {"running": {"startedAt": started}}}


def terminated(name: str = "t", code: int = 0, reason: str = "Completed",
               message: str = "") -> dict[str, Any]:
    return {"name": name, "state": {"terminated": {"exitCode": code, "reason": reason,
                                                   "message": message}}}


def waiting(reason: str, message: str = "", name: str = "t") -> dict[str, Any]:
    return {"name": name, "image": "registry.example/train:1",
            "state": {"waiting": {"reason": reason, "message": message}}}


def patches(plan: Plan) -> dict[str, dict[str, Any]]:
    """The trial status patches, each checked against the CRD schema and for bare NaN."""
    out = {name: status.merge_patch() for name, status in plan.trial_status.items()}
    for patch in out.values():
        json.dumps(patch, allow_nan=False)
        assert_valid(TRIAL_STATUS, without_nulls(patch))
    return out


def conditions(plan: Plan) -> dict[str, dict[str, Any]]:
    assert plan.experiment_status is not None
    patch = plan.experiment_status.merge_patch()
    json.dumps(patch, allow_nan=False)
    assert_valid(EXPERIMENT_STATUS, without_nulls(patch))
    return {c["type"]: c for c in patch["conditions"]}


def final(accuracy: float, **metrics: float) -> str:
    return json.dumps({"step": 9, "metrics": {"accuracy": accuracy, **metrics},
                       "rungs": {}, "finished": True})


# -- disruptions -------------------------------------------------------------------------


def test_a_vanished_running_pod_is_a_disruption_with_a_new_uncharged_attempt() -> None:
    plan = plan_tick(experiment(), [trial(0), trial(1), trial(2)],
                     [pod(1, statuses=[running()]), pod(2, statuses=[running()])], {}, NOW)
    patch = patches(plan)["exp-0"]
    assert patch["state"] == "Pending" and patch["attempts"] == 2 and patch["disruptions"] == 1
    assert patch["reason"] == "Disrupted" and "not counted against trialRetries" in patch["message"]
    assert [(p.trial, p.attempt) for p in plan.new_pods] == [("exp-0", 2)]
    assert any(e.reason == "TrialDisrupted" and e.name == "exp-0" for e in plan.events)
    assert plan.experiment_status is not None and plan.experiment_status.trials is not None
    assert plan.experiment_status.trials.disruptions == 1


def test_an_evicted_pod_is_not_charged_even_with_no_retries_left() -> None:
    evicted = pod(0, 2, "Failed", reason="Evicted",
                  message="The node was low on resource: memory.",
                  statuses=[terminated(code=137, reason="Error")])
    plan = plan_tick(experiment(numSamples=1), [trial(0, attempts=2, disruptions=1)], [evicted], {}, NOW)
    patch = patches(plan)["exp-0"]
    assert patch["state"] == "Pending" and patch["disruptions"] == 2 and patch["attempts"] == 3
    assert "Evicted" in patch["message"]
    assert [(p.trial, p.attempt) for p in plan.new_pods] == [("exp-0", 3)]


def test_a_disruption_target_condition_makes_a_failed_pod_a_disruption() -> None:
    preempted = pod(0, 1, "Failed", statuses=[terminated(code=143, reason="Error")],
                    conditions=[{"type": "DisruptionTarget", "status": "True",
                                 "reason": "PreemptionByScheduler", "message": "preempted"}])
    patch = patches(plan_tick(experiment(), [trial(0)], [preempted], {}, NOW))["exp-0"]
    assert patch["disruptions"] == 1 and "PreemptionByScheduler" in patch["message"]


def test_a_pod_being_deleted_by_someone_else_is_waited_for_then_replaced() -> None:
    deleting = pod_body(0, statuses=[running()])
    deleting["metadata"]["deletionTimestamp"] = NOW
    plan = plan_tick(experiment(numSamples=1), [trial(0)], [PodView.from_body(deleting)], {}, NOW)
    assert plan.new_pods == [] and "exp-0" not in patches(plan)


def test_a_decided_attempt_whose_pod_was_never_made_is_made_without_counting_again() -> None:
    decided = trial(0, "Pending", attempts=2, disruptions=1, podName="exp-0-1")
    plan = plan_tick(experiment(numSamples=1), [decided], [], {}, NOW)
    assert [(p.trial, p.attempt) for p in plan.new_pods] == [("exp-0", 2)]
    assert "exp-0" not in patches(plan)


def test_a_failure_after_disruptions_is_charged_only_for_itself() -> None:
    failed = pod(0, 3, "Failed", statuses=[terminated(code=1, reason="Error")])
    plan = plan_tick(experiment(numSamples=1, trialRetries=1),
                     [trial(0, attempts=3, disruptions=2)], [failed], {}, NOW)
    patch = patches(plan)["exp-0"]
    assert patch["state"] == "Pending" and patch["attempts"] == 4
    assert [(p.trial, p.attempt) for p in plan.new_pods] == [("exp-0", 4)]


# -- pods that cannot run ----------------------------------------------------------------


def test_unschedulable_pods_put_the_schedulers_message_and_count_on_the_experiment() -> None:
    message = "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."
    stuck = [pod(i, phase="Pending", conditions=[
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": message}]) for i in range(2)]
    plan = plan_tick(experiment(numSamples=2), [trial(0, "Pending"), trial(1, "Pending")],
                     stuck, {}, NOW)
    cond = conditions(plan)["TrialsUnschedulable"]
    assert cond["status"] == "True" and cond["reason"] == "Unschedulable"
    assert "2 trial pod(s) cannot be scheduled" in cond["message"]
    assert "Insufficient nvidia.com/gpu" in cond["message"]
    assert plan.experiment_status is not None and plan.experiment_status.phase == "Running"
    assert plan.delete_pods == [] and plan.new_pods == []
    assert [e.reason for e in plan.events] == ["TrialsUnschedulable"]
    # The Event is posted once, when the condition turns True.
    again = plan_tick(experiment(plan.experiment_status.merge_patch(), numSamples=2),
                      [trial(0, "Pending"), trial(1, "Pending")], stuck, {}, NOW)
    assert [e.reason for e in again.events] == []


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff",
                                    "CreateContainerConfigError"])
def test_a_pod_waiting_on_its_image_fails_its_attempt_after_the_bound(reason: str) -> None:
    stuck = pod(0, phase="Pending", statuses=[waiting(reason, "not found")])
    within = plan_tick(experiment(numSamples=1, trialStartTimeoutSeconds=900),
                       [trial(0, "Pending")], [stuck], {}, NOW)
    assert within.delete_pods == [] and "exp-0" not in patches(within)
    plan = plan_tick(experiment(numSamples=1, trialStartTimeoutSeconds=60),
                     [trial(0, "Pending")], [stuck], {}, NOW)
    patch = patches(plan)["exp-0"]
    assert ("exp-0-1", 0) in plan.delete_pods
    assert patch["state"] == "Failed" and reason in patch["message"]
    assert 'image "registry.example/train:1"' in patch["message"]


def test_when_no_trial_ever_ran_an_image_that_cannot_be_pulled_fails_the_experiment() -> None:
    stuck = [pod(i, phase="Pending", statuses=[waiting("ImagePullBackOff", "Back-off")])
             for i in range(3)]
    plan = plan_tick(experiment(trialRetries=2, trialStartTimeoutSeconds=60),
                     [trial(i, "Pending") for i in range(3)], stuck, {}, NOW)
    assert plan.experiment_status is not None
    status = plan.experiment_status.merge_patch()
    assert status["phase"] == "Failed"
    assert 'image "registry.example/train:1" cannot be pulled' in status["message"]
    assert "every trial started so far failed this way" in status["message"]
    assert plan.new_pods == [] and plan.new_trials == []
    assert any(e.reason == "ExperimentFailed" for e in plan.events)


def test_an_image_failure_does_not_fail_the_experiment_once_a_trial_has_run() -> None:
    stuck = pod(1, phase="Pending", statuses=[waiting("ErrImagePull")])
    plan = plan_tick(experiment(trialRetries=1, trialStartTimeoutSeconds=60),
                     [trial(0), trial(1, "Pending")], [pod(0, statuses=[running()]), stuck],
                     {}, NOW)
    assert plan.experiment_status is not None and plan.experiment_status.phase == "Running"
    assert patches(plan)["exp-1"]["reason"] == "ErrImagePull"
    assert any(p.trial == "exp-1" and p.attempt == 2 for p in plan.new_pods)


def test_an_invalid_image_name_fails_the_attempt_at_once() -> None:
    bad = pod(0, phase="Pending", statuses=[waiting("InvalidImageName", "invalid reference")])
    plan = plan_tick(experiment(numSamples=1), [trial(0, "Pending")], [bad], {}, EARLIER)
    assert patches(plan)["exp-0"]["reason"] == "InvalidImageName"


def test_an_oom_killed_trial_is_named_with_its_memory_limit() -> None:
    containers = [{"name": "t", "image": "x", "resources": {"limits": {"memory": "512Mi"}}}]
    killed = pod(0, phase="Failed", containers=containers,
                 statuses=[terminated(code=137, reason="OOMKilled")])
    patch = patches(plan_tick(experiment(numSamples=1), [trial(0)], [killed], {}, NOW))["exp-0"]
    assert patch["state"] == "Failed" and patch["reason"] == "OOMKilled"
    assert "memory limit 512Mi" in patch["message"]


def test_a_trial_ends_when_its_main_container_exits_though_a_sidecar_runs() -> None:
    containers = [{"name": "train", "image": "x"}, {"name": "agent", "image": "y"}]
    # The kubelet lists container statuses by name: the sidecar comes first here.
    statuses = [running("agent"), terminated("train", message=final(0.9, loss=0.1))]
    sidecar = pod(0, phase="Running", containers=containers, statuses=statuses)
    plan = plan_tick(experiment(numSamples=1), [trial(0)], [sidecar], {}, NOW)
    assert patches(plan)["exp-0"]["state"] == "Succeeded"
    assert ("exp-0-1", 30) in plan.delete_pods
    assert plan.experiment_status is not None and plan.experiment_status.phase == "Succeeded"


def test_a_running_trial_that_never_reported_is_flagged_once() -> None:
    exp = experiment(numSamples=1, trialReportTimeoutSeconds=120)
    plan = plan_tick(exp, [trial(0)], [pod(0, statuses=[running()])], {}, NOW)
    patch = patches(plan)["exp-0"]
    assert patch["reason"] == "NotReporting" and "600s" in patch["message"]
    assert [e.reason for e in plan.events] == ["TrialNotReporting"]
    cond = conditions(plan)["TrialsReporting"]
    assert cond["status"] == "False" and "exp-0 (600s)" in cond["message"]
    flagged = trial(0, reason="NotReporting", message=patch["message"])
    again = plan_tick(exp, [flagged], [pod(0, statuses=[running()])], {}, NOW)
    assert "exp-0" not in patches(again) and again.events == []
    # A report clears the flag.
    reported = {"exp-0": TrialMetrics(step=1, metrics={"accuracy": 0.5},
                                      last_report=1767226190.0)}
    cleared = plan_tick(exp, [flagged], [pod(0, statuses=[running()])], reported, NOW)
    assert patches(cleared)["exp-0"]["reason"] is None
    assert conditions(cleared)["TrialsReporting"]["status"] == "True"


# -- a TuneTrial deleted by hand ---------------------------------------------------------


def test_a_deleted_tune_trial_is_recreated_with_the_same_index_and_config() -> None:
    first = plan_tick(experiment(), [], [], None, NOW)
    configs = {t.index: t.params for t in first.new_trials}
    recorded = [{"milestone": 1, "value": 0.9, "step": 1, "cutoff": None, "decision": "continue"}]
    others = [trial(0, rungs=recorded), trial(2)]
    exp = experiment({"trials": {"created": 3, "total": 3}})
    plan = plan_tick(exp, others, [pod(0, statuses=[running()]), pod(2, statuses=[running()])],
                     {}, NOW)
    assert [(t.index, t.params) for t in plan.new_trials] == [(1, configs[1])]
    assert [(p.trial, p.attempt) for p in plan.new_pods] == [("exp-1", 1)]
    assert "exp-0" not in patches(plan), "other trials' rung records stay as they are"
    assert any(e.reason == "TrialRecreated" for e in plan.events)
    assert plan.experiment_status is not None and plan.experiment_status.trials is not None
    assert plan.experiment_status.trials.created == 3


def test_the_highest_trial_deleted_is_recreated_from_the_stored_count() -> None:
    exp = experiment({"trials": {"created": 3, "total": 3}})
    plan = plan_tick(exp, [trial(0, "Succeeded"), trial(1, "Succeeded")], [], {}, NOW)
    assert [t.index for t in plan.new_trials] == [2]


def test_a_recreated_trial_waits_for_the_deleted_ones_pods_and_deletes_them() -> None:
    old = pod(1, owner="old-uid", statuses=[running()])
    recreated = trial(1, "Pending")
    plan = plan_tick(experiment(numSamples=2), [trial(0), recreated],
                     [pod(0, statuses=[running()]), old], {}, NOW)
    assert ("exp-1-1", 30) in plan.delete_pods
    assert all(p.trial != "exp-1" for p in plan.new_pods)
    assert patches(plan).get("exp-1", {}).get("state") is None


# -- non-finite metrics ------------------------------------------------------------------


def test_non_finite_metrics_are_kept_readable_as_strings() -> None:
    message = final(0.9, loss=math.inf, grad=math.nan)
    plan = plan_tick(experiment(numSamples=1), [trial(0, nonFiniteMetrics={"acc2": "NaN"})],
                     [pod(0, phase="Succeeded", statuses=[terminated(message=message)])],
                     {}, NOW)
    patch = patches(plan)["exp-0"]
    assert patch["metrics"] == {"accuracy": 0.9, "loss": None, "grad": None}
    assert patch["nonFiniteMetrics"] == {"loss": "Infinity", "grad": "NaN"}
    json.dumps(plan.experiment_status.merge_patch() if plan.experiment_status else {},
               allow_nan=False)


def test_a_metric_finite_again_leaves_non_finite_metrics() -> None:
    plan = plan_tick(experiment(numSamples=1), [trial(0, nonFiniteMetrics={"loss": "NaN"})],
                     [pod(0, phase="Succeeded", statuses=[terminated(message=final(0.9, loss=0.2))])],
                     {}, NOW)
    patch = patches(plan)["exp-0"]
    assert patch["metrics"]["loss"] == 0.2 and patch["nonFiniteMetrics"] == {"loss": None}


def test_a_nan_objective_at_a_rung_prunes_the_trial_and_spares_the_cutoff() -> None:
    recorded = [{"milestone": 1, "value": 0.9, "step": 1, "cutoff": None, "decision": "continue"}]
    snap = {"exp-1": TrialMetrics(step=1, metrics={"accuracy": math.nan, "loss": math.nan},
                                  rungs={1: (1, math.nan)}),
            "exp-2": TrialMetrics(step=1, metrics={"accuracy": 0.1}, rungs={1: (1, 0.1)})}
    running_pods = [pod(i, statuses=[running()]) for i in range(3)]
    plan = plan_tick(experiment(), [trial(0, rungs=recorded), trial(1), trial(2)], running_pods,
                     snap, NOW)
    p = patches(plan)
    assert p["exp-1"]["state"] == "Pruned" and p["exp-1"]["nonFiniteMetrics"]["accuracy"] == "NaN"
    assert p["exp-2"]["state"] == "Pruned", "a NaN at the rung must not let 0.1 through"
    assert p["exp-2"]["prunedAt"]["cutoff"] == 0.9
    for status in plan.trial_status.values():
        json.dumps(status.merge_patch(), allow_nan=False)
