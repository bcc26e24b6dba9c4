"""Trials whose pods cannot run, are disrupted or lose their TuneTrial, and trials that
report non-finite metrics: each ends on the resource (phase, condition, Event) while other
experiments in the namespace keep running. The local runner plays the kubelet's part
(image pulls, OOM kills, sidecars, evictions); see kubetune.devcluster.runner."""

from __future__ import annotations

import copy
from typing import Any

from kubernetes import client

from tests.integration.kube import wait_for
from tests.integration.test_operator import create, custom, experiment, trials, wait_phase
from tests.support.events import about
from tests.support.operator import OperatorProcess, scripted_experiment


def companion(api_client: client.ApiClient, namespace: str) -> str:
    """A healthy one-trial experiment next to the one under test."""
    create(api_client, namespace, scripted_experiment(
        "healthy", [0.5], concurrency=1, sleep=0.05, scheduler={"type": "fifo"}))
    return "healthy"


def has_event(api_client: client.ApiClient, namespace: str, name: str, reason: str) -> bool:
    """An Event of `reason` on the object `name`, or on its experiment naming trial `name`."""
    return bool(about(api_client, namespace, name, reason))


def condition(exp: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next(c for c in exp["status"]["conditions"] if c["type"] == ctype)


def with_container(body: dict[str, Any], **fields: Any) -> dict[str, Any]:
    body = copy.deepcopy(body)
    body["spec"]["trialTemplate"]["spec"]["containers"][0].update(fields)
    return body


def test_nan_in_a_side_metric_and_in_the_objective_the_experiment_completes(
        api_client, namespace, operator: OperatorProcess):
    # Trials 0 and 1 tie at rung 1; trial 0's objective is NaN from step 2, trial 1's loss
    # is +inf from step 2; trial 2 is pruned at rung 1.
    cases = [{"quality": 0.95, "nan_from": 2}, {"quality": 0.95, "loss_inf_from": 2},
             {"quality": 0.3}]
    scheduler = {"type": "asha", "maxT": 9, "gracePeriod": 1, "reductionFactor": 3,
                 "decisionOrder": "trialIndex"}
    create(api_client, namespace, scripted_experiment(
        "diverging", [0.5], concurrency=3, extra_space={"case": {"grid": cases}},
        scheduler=scheduler))
    healthy = companion(api_client, namespace)
    exp = wait_phase(api_client, namespace, "diverging", ("Succeeded", "Failed"))
    assert exp["status"]["phase"] == "Succeeded", exp["status"]
    ts = {n: t["status"] for n, t in trials(api_client, namespace).items()}
    nan = ts["diverging-0"]
    assert nan["state"] == "Pruned", nan
    assert nan["prunedAt"]["milestone"] == 3 and "value" not in nan["prunedAt"]
    assert nan["nonFiniteMetrics"]["accuracy"] == "NaN"
    assert "not finite" in nan["message"]
    side = ts["diverging-1"]
    assert side["state"] == "Succeeded", side
    assert side["nonFiniteMetrics"] == {"loss": "Infinity"} and "loss" not in side["metrics"]
    assert exp["status"]["bestTrial"]["name"] == "diverging-1"
    # The NaN at rung 3 took no part in its cutoff: trial 1 was alone there and continued.
    assert [r["decision"] for r in side["rungs"][:2]] == ["continue", "continue"]
    assert ts["diverging-2"]["state"] == "Pruned"
    assert wait_phase(api_client, namespace, healthy, ("Succeeded", "Failed"))["status"][
        "phase"] == "Succeeded"


def test_unschedulable_trials_show_on_the_experiment_which_keeps_waiting(
        api_client, namespace, operator: OperatorProcess):
    body = with_container(scripted_experiment("greedy", [0.5, 0.6], concurrency=2),
                          resources={"limits": {"nvidia.com/gpu": "100"}})
    create(api_client, namespace, body)
    healthy = companion(api_client, namespace)

    def stuck() -> dict[str, Any] | None:
        exp = experiment(api_client, namespace, "greedy")
        conds = {c["type"]: c for c in (exp.get("status") or {}).get("conditions") or []}
        c = conds.get("TrialsUnschedulable")
        return c if c and c["status"] == "True" else None

    cond = wait_for(stuck, timeout=60, what="TrialsUnschedulable=True")
    assert "2 trial pod(s) cannot be scheduled" in cond["message"]
    assert "Insufficient nvidia.com/gpu" in cond["message"]
    assert has_event(api_client, namespace, "greedy", "TrialsUnschedulable")
    assert wait_phase(api_client, namespace, healthy, ("Succeeded", "Failed"))["status"][
        "phase"] == "Succeeded"
    assert experiment(api_client, namespace, "greedy")["status"]["phase"] == "Running"


def test_an_image_that_cannot_be_pulled_fails_the_experiment_naming_the_image(
        api_client, namespace, operator: OperatorProcess):
    image = "registry.kubetune.invalid/trainer:1"
    body = with_container(scripted_experiment("unpullable", [0.5, 0.6], concurrency=2,
                                              trialStartTimeoutSeconds=3), image=image)
    create(api_client, namespace, body)
    healthy = companion(api_client, namespace)
    exp = wait_phase(api_client, namespace, "unpullable", ("Succeeded", "Failed"), timeout=90)
    status = exp["status"]
    assert status["phase"] == "Failed"
    assert f'image "{image}" cannot be pulled' in status["message"]
    assert "every trial started so far failed this way" in status["message"]
    assert has_event(api_client, namespace, "unpullable", "ExperimentFailed")
    assert status["trials"]["succeeded"] == 0
    assert wait_phase(api_client, namespace, healthy, ("Succeeded", "Failed"))["status"][
        "phase"] == "Succeeded"


def test_an_oom_killed_trial_is_named_with_its_memory_limit(
        api_client, namespace, operator: OperatorProcess):
    body = with_container(scripted_experiment(
        "hungry", [0.5], concurrency=1, extra_space={"allocate_mb": {"value": 400}},
        trialRetries=0, maxFailedTrials=1, scheduler={"type": "fifo"}),
        resources={"limits": {"memory": "200Mi", "nvidia.com/gpu": "1"}})
    create(api_client, namespace, body)
    exp = wait_phase(api_client, namespace, "hungry", ("Succeeded", "Failed"), timeout=90)
    assert exp["status"]["phase"] == "Failed"
    trial = trials(api_client, namespace)["hungry-0"]["status"]
    assert trial["state"] == "Failed" and trial["reason"] == "OOMKilled"
    assert "memory limit 200Mi" in trial["message"]


def test_a_trial_that_does_not_report_is_flagged_until_it_does(
        api_client, namespace, operator: OperatorProcess):
    create(api_client, namespace, scripted_experiment(
        "quiet", [0.5], concurrency=1, extra_space={"silent_seconds": {"value": 8}},
        scheduler={"type": "fifo"}, trialReportTimeoutSeconds=3))

    def flagged() -> dict[str, Any] | None:
        exp = experiment(api_client, namespace, "quiet")
        conds = {c["type"]: c for c in (exp.get("status") or {}).get("conditions") or []}
        c = conds.get("TrialsReporting")
        return c if c and c["status"] == "False" else None

    cond = wait_for(flagged, timeout=60, what="TrialsReporting=False")
    assert "quiet-0" in cond["message"] and "trialReportTimeoutSeconds=3" in cond["message"]
    assert has_event(api_client, namespace, "quiet-0", "TrialNotReporting")
    exp = wait_phase(api_client, namespace, "quiet", ("Succeeded", "Failed"))
    assert exp["status"]["phase"] == "Succeeded"


def test_a_trial_ends_when_its_main_container_exits_though_a_sidecar_runs(
        api_client, namespace, operator: OperatorProcess):
    body = scripted_experiment("sidecar", [0.5], concurrency=1, scheduler={"type": "fifo"})
    containers = body["spec"]["trialTemplate"]["spec"]["containers"]
    containers.append({"name": "agent", "image": "kubetune/agent:test",
                       "command": ["python", "-c", "import time; time.sleep(3600)"]})
    create(api_client, namespace, body)
    exp = wait_phase(api_client, namespace, "sidecar", ("Succeeded", "Failed"), timeout=90)
    assert exp["status"]["phase"] == "Succeeded", exp["status"]
    core = client.CoreV1Api(api_client)
    wait_for(lambda: not core.list_namespaced_pod(namespace).items, timeout=60,
             what="the pod with its sidecar to be deleted")


def test_evictions_and_a_pod_deleted_by_hand_are_not_charged_as_failures(
        api_client, namespace, operator: OperatorProcess):
    create(api_client, namespace, scripted_experiment(
        "disrupted", [0.5, 0.6], concurrency=2, sleep=1.0, trialRetries=0, maxFailedTrials=1,
        scheduler={"type": "fifo"}))
    core = client.CoreV1Api(api_client)

    def running(trial: str, attempt: int) -> bool:
        status = trials(api_client, namespace).get(trial, {}).get("status") or {}
        return status.get("state") == "Running" and status.get("attempts") == attempt

    for attempt in (1, 2):
        wait_for(lambda: running("disrupted-0", attempt),  # noqa: B023 (used at once)
                 timeout=60, what=f"disrupted-0 attempt {attempt} running")
        pod = f"disrupted-0-{attempt}"
        core.create_namespaced_pod_eviction(pod, namespace, client.V1Eviction(
            metadata=client.V1ObjectMeta(name=pod, namespace=namespace)))
    wait_for(lambda: running("disrupted-1", 1), timeout=60, what="disrupted-1 running")
    core.delete_namespaced_pod("disrupted-1-1", namespace, grace_period_seconds=1)

    exp = wait_phase(api_client, namespace, "disrupted", ("Succeeded", "Failed"), timeout=180)
    assert exp["status"]["phase"] == "Succeeded", exp["status"]
    assert exp["status"]["trials"]["disruptions"] == 3
    assert exp["status"]["trials"]["failed"] == 0
    ts = {n: t["status"] for n, t in trials(api_client, namespace).items()}
    assert ts["disrupted-0"]["state"] == "Succeeded"
    assert ts["disrupted-0"]["disruptions"] == 2 and ts["disrupted-0"]["attempts"] == 3
    assert ts["disrupted-1"]["state"] == "Succeeded"
    assert ts["disrupted-1"]["disruptions"] == 1 and ts["disrupted-1"]["attempts"] == 2
    assert has_event(api_client, namespace, "disrupted-0", "TrialDisrupted")


def test_a_tune_trial_deleted_by_hand_is_recreated_and_the_experiment_completes(
        api_client, namespace, operator: OperatorProcess):
    qualities = [0.5, 0.9, 0.8, 0.7]  # lost-1 is strong: it runs past rung 1
    create(api_client, namespace, scripted_experiment("lost", qualities, concurrency=2,
                                                      sleep=1.0))

    def running_with_rungs() -> dict[str, Any] | None:
        ts = trials(api_client, namespace)
        one = (ts.get("lost-1") or {}).get("status") or {}
        return ts if one.get("state") == "Running" and one.get("rungs") else None

    before = wait_for(running_with_rungs, timeout=90, what="lost-1 running past a rung")
    params = before["lost-1"]["spec"]["params"]
    records = {n: t["status"].get("rungs") or [] for n, t in before.items() if n != "lost-1"}
    custom(api_client).delete_namespaced_custom_object(
        "kubetune.io", "v1alpha1", namespace, "tunetrials", "lost-1")
    wait_for(lambda: has_event(api_client, namespace, "lost", "TrialRecreated"), timeout=30,
             what="a TrialRecreated Event")
    exp = wait_phase(api_client, namespace, "lost", ("Succeeded", "Failed"), timeout=180)
    assert exp["status"]["phase"] == "Succeeded", exp["status"]
    assert exp["status"]["trials"]["created"] == 4
    after = trials(api_client, namespace)
    assert sorted(after) == [f"lost-{i}" for i in range(4)]
    assert after["lost-1"]["spec"]["params"] == params and after["lost-1"]["spec"]["index"] == 1
    assert after["lost-1"]["status"]["state"] in ("Succeeded", "Pruned")
    for name, rungs in records.items():
        assert after[name]["status"].get("rungs", [])[:len(rungs)] == rungs, (
            f"{name}'s rung records changed")
