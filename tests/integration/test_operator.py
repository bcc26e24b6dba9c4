"""The operator on the real control plane, with real Prometheus and the local runner."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.kube import wait_for
from tests.support.events import about_trials, operator_events
from tests.support.operator import OperatorProcess, scripted_experiment
from tests.support.scripted_trial import curve
from tests.support.watching import follow

# Final accuracy of each trial is quality * (1 - 0.5**9); mixed so that ASHA prunes some.
QUALITIES = [0.5, 0.9, 0.3, 0.8, 0.2, 0.95, 0.4, 0.7, 0.1, 0.6, 0.85, 0.35]


def custom(api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


def create(api_client: client.ApiClient, namespace: str, body: dict[str, Any]) -> None:
    custom(api_client).create_namespaced_custom_object(
        "kubetune.io", "v1alpha1", namespace, "tuneexperiments", body)


def experiment(api_client: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    return dict(custom(api_client).get_namespaced_custom_object(
        "kubetune.io", "v1alpha1", namespace, "tuneexperiments", name))


def trials(api_client: client.ApiClient, namespace: str) -> dict[str, dict[str, Any]]:
    items = custom(api_client).list_namespaced_custom_object(
        "kubetune.io", "v1alpha1", namespace, "tunetrials")["items"]
    return {t["metadata"]["name"]: t for t in items}


def wait_phase(api_client: client.ApiClient, namespace: str, name: str, phases: tuple[str, ...],
               timeout: float = 240) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        exp = experiment(api_client, namespace, name)
        return exp if (exp.get("status") or {}).get("phase") in phases else None

    return wait_for(done, timeout=timeout, interval=0.5, what=f"{name} to reach {phases}")


class PodWatch:
    """Counts unfinished trial pods at every event, from a real watch (not end-state sampling)."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.unfinished: set[str] = set()
        self.seen: set[str] = set()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for event in follow(self.core.list_namespaced_pod, self.namespace, stop=self._stop):
            pod = event["object"]
            name = pod.metadata.name
            self.seen.add(name)
            if event["type"] == "DELETED" or pod.status.phase in ("Succeeded", "Failed"):
                self.unfinished.discard(name)
            else:
                self.unfinished.add(name)
            self.peak = max(self.peak, len(self.unfinished))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@pytest.fixture
def pod_watch(api_client, namespace) -> Iterator[PodWatch]:  # type: ignore[no-untyped-def]
    w = PodWatch(api_client, namespace)
    yield w
    w.stop()


def final_value(quality: float, steps: int = 9) -> float:
    return curve(quality, steps)


def test_twelve_trials_stay_under_the_cap_pruned_pods_go_and_the_best_is_the_best(
        api_client, namespace, operator: OperatorProcess, pod_watch: PodWatch):
    create(api_client, namespace, scripted_experiment("asha12", QUALITIES, concurrency=3))
    exp = wait_phase(api_client, namespace, "asha12", ("Succeeded", "Failed"))
    status = exp["status"]
    assert status["phase"] == "Succeeded", status
    pod_watch.stop()
    assert pod_watch.peak <= 3, f"saw {pod_watch.peak} unfinished trial pods at once"
    assert pod_watch.peak == 3, "the cap should also be reached"

    all_trials = trials(api_client, namespace)
    assert sorted(all_trials) == sorted(f"asha12-{i}" for i in range(12))
    states = {n: t["status"]["state"] for n, t in all_trials.items()}
    pruned = [n for n, s in states.items() if s == "Pruned"]
    assert pruned, "ASHA should prune some of these curves"
    live_pods = {p.metadata.name for p in client.CoreV1Api(api_client).list_namespaced_pod(namespace).items
                 if not p.metadata.deletion_timestamp}
    for name in pruned:
        pruned_at = all_trials[name]["status"]["prunedAt"]
        assert pruned_at["milestone"] in (1, 3)
        assert pruned_at["value"] < pruned_at["cutoff"]
        assert not any(p.startswith(f"{name}-") for p in live_pods), f"{name}'s pod should be gone"
    completed = {n: all_trials[n]["status"]["metrics"]["accuracy"]
                 for n, s in states.items() if s == "Succeeded"}
    best = max(completed, key=lambda n: completed[n])
    assert status["bestTrial"]["name"] == best
    assert status["bestTrial"]["metric"] == pytest.approx(completed[best])
    assert status["bestTrial"]["config"]["quality"] == QUALITIES[int(best.rsplit("-", 1)[1])]
    assert status["trials"]["pruned"] == len(pruned)
    assert status["trials"]["succeeded"] + status["trials"]["pruned"] == 12
    # One PromQL query per tick at most, whatever the number of trials.
    samples = {s.name: s.value for family in text_string_to_metric_families(operator.metrics())
               for s in family.samples if not s.labels}
    assert 0 < samples["kubetune_prometheus_queries_total"] <= samples["kubetune_reconcile_ticks_total"]
    assert samples["kubetune_reconcile_duration_seconds_count"] > 0


def _outcome(api_client: client.ApiClient, namespace: str, name: str) -> tuple[str, set[str]]:
    exp = wait_phase(api_client, namespace, name, ("Succeeded", "Failed"), timeout=300)
    assert exp["status"]["phase"] == "Succeeded", exp["status"]
    pruned = {n.rsplit("-", 1)[1] for n, t in trials(api_client, namespace).items()
              if t["status"]["state"] == "Pruned"}
    return exp["status"]["bestTrial"]["name"].rsplit("-", 1)[1], pruned


def test_operator_killed_at_random_moments_loses_nothing_and_decides_the_same(
        api_client, namespace, operator: OperatorProcess, pod_watch: PodWatch):
    scheduler = {"type": "asha", "maxT": 9, "gracePeriod": 1, "reductionFactor": 3,
                 "decisionOrder": "trialIndex"}
    create(api_client, namespace, scripted_experiment("calm", QUALITIES, scheduler=scheduler))
    calm = _outcome(api_client, namespace, "calm")

    create(api_client, namespace, scripted_experiment("killed", QUALITIES, scheduler=scheduler))
    rng = random.Random(2026)
    kills = 0
    try:
        while kills < 4:
            time.sleep(rng.uniform(1.0, 5.0))
            operator.kill()
            kills += 1
            time.sleep(rng.uniform(0.5, 3.0))
            operator.start()
    finally:
        if operator.proc is None:
            operator.start()
    assert kills >= 3
    killed = _outcome(api_client, namespace, "killed")
    assert killed == calm, f"uninterrupted (best, pruned) {calm} != after {kills} kills {killed}"
    pod_watch.stop()
    names = {n for n in pod_watch.seen if n.startswith("killed-")}
    assert names == {f"killed-{i}-1" for i in range(12)}, "each trial exactly one pod, none lost"


def test_prometheus_outage_prunes_nothing_and_the_experiment_completes_after(
        api_client, namespace, operator: OperatorProcess, cluster):
    create(api_client, namespace, scripted_experiment(
        "outage", [0.9, 0.2, 0.8, 0.1, 0.7, 0.3], concurrency=3, sleep=1.0))

    def running() -> bool:
        ts = trials(api_client, namespace)
        return sum(1 for t in ts.values() if (t.get("status") or {}).get("state") == "Running") >= 2

    wait_for(running, timeout=60, what="two running trials")
    pruned_before = {n for n, t in trials(api_client, namespace).items()
                     if (t.get("status") or {}).get("state") == "Pruned"}
    cluster.stop("prometheus")
    try:
        def unavailable() -> Any:
            conds = experiment(api_client, namespace, "outage")["status"].get("conditions") or []
            return [c for c in conds if c["type"] == "MetricsAvailable" and c["status"] == "False"]

        cond = wait_for(unavailable, timeout=20, what="MetricsAvailable=False")
        assert "no trial is pruned" in cond[0]["message"]
        time.sleep(4)
        pruned_during = {n for n, t in trials(api_client, namespace).items()
                         if (t.get("status") or {}).get("state") == "Pruned"}
        assert pruned_during == pruned_before, "nothing may be pruned from missing data"
    finally:
        cluster.start("prometheus")
    exp = wait_phase(api_client, namespace, "outage", ("Succeeded", "Failed"))
    assert exp["status"]["phase"] == "Succeeded"
    conds = {c["type"]: c["status"] for c in exp["status"]["conditions"]}
    assert conds["MetricsAvailable"] == "True"


def test_a_crashing_trial_is_retried_and_too_many_failures_fail_the_experiment(
        api_client, namespace, operator):
    cases = [{"quality": 0.5, "fail_attempts": 0}, {"quality": 0.6, "fail_attempts": 1},
             {"quality": 0.7, "fail_attempts": 9}, {"quality": 0.8, "fail_attempts": 9}]
    body = scripted_experiment("flaky", [0.5], concurrency=2, extra_space={"case": {"grid": cases}},
                               trialRetries=1, maxFailedTrials=2, scheduler={"type": "fifo"})
    create(api_client, namespace, body)
    exp = wait_phase(api_client, namespace, "flaky", ("Succeeded", "Failed"))
    assert exp["status"]["phase"] == "Failed"
    assert "maxFailedTrials=2" in exp["status"]["message"]
    ts = trials(api_client, namespace)
    retried = ts["flaky-1"]["status"]
    assert retried["state"] == "Succeeded" and retried["attempts"] == 2
    for name in ("flaky-2", "flaky-3"):
        failed = ts[name]["status"]
        assert failed["state"] == "Failed"
        assert failed["attempts"] == 2 and "exit code 3" in failed["message"]
    core = client.CoreV1Api(api_client)
    pods = {p.metadata.name: p.status.phase for p in core.list_namespaced_pod(namespace).items}
    assert pods["flaky-1-1"] == "Failed" and pods["flaky-1-2"] == "Succeeded"
    events = operator_events(api_client, namespace)
    # on each trial, or on the experiment naming those that got one reason in the same tick
    reasons = {(t.trial, t.reason) for t in about_trials(events)}
    assert ("flaky-2", "TrialFailed") in reasons
    assert ("flaky-1", "TrialRetried") in reasons
    assert ("flaky", "ExperimentFailed") in {(e.involved_object.name, e.reason) for e in events}


def test_deleting_an_experiment_removes_its_trials_and_pods(api_client, namespace, operator):
    create(api_client, namespace, scripted_experiment("doomed", [0.5, 0.6], sleep=2.0))
    core = client.CoreV1Api(api_client)
    wait_for(lambda: core.list_namespaced_pod(namespace).items, timeout=60, what="trial pods")
    custom(api_client).delete_namespaced_custom_object(
        "kubetune.io", "v1alpha1", namespace, "tuneexperiments", "doomed")
    # The garbage collector deletes them once the experiment is gone (its finalizer removed
    # after its loop stopped); in one run of the whole suite that had not happened within
    # 60 s (cause not found), so the wait is longer than the usual few seconds.
    wait_for(lambda: not trials(api_client, namespace), timeout=150, what="trials to be collected")
    wait_for(lambda: not core.list_namespaced_pod(namespace).items, timeout=90,
             what="pods to be collected")
    with pytest.raises(ApiException) as gone:
        experiment(api_client, namespace, "doomed")
    assert gone.value.status == 404
