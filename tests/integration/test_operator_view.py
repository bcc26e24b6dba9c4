"""The operator's watch-fed view on the real control plane: restart-safe while it fills, and a
steady-state tick sends no LIST to the apiserver, for one-pod and for multi-worker trials."""

from __future__ import annotations

import random
import time
from typing import Any

import requests
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.kube import wait_for
from tests.integration.test_distributed_trials import worker_experiment
from tests.integration.test_operator import (
    QUALITIES,
    PodWatch,
    create,
    custom,
    trials,
    wait_phase,
)
from tests.support.operator import OperatorProcess, scripted_experiment

FILLER = 300
"""TuneTrials of another experiment the view lists at every start (no pod is theirs)."""


def apiserver_lists(api_client: client.ApiClient) -> dict[str, float]:
    """The apiserver's namespaced LIST requests so far, by resource (its own /metrics).

    Namespaced: the dev cluster's runner lists pods cluster-wide, the operator per namespace.
    """
    cfg = api_client.configuration
    text = requests.get(f"{cfg.host}/metrics", cert=(cfg.cert_file, cfg.key_file),
                        verify=cfg.ssl_ca_cert, timeout=30).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request":
            continue
        for s in family.samples:
            lb = s.labels
            if s.name.endswith("_total") and lb.get("verb") == "LIST" and \
                    lb.get("scope") == "namespace":
                out[lb.get("resource", "")] = out.get(lb.get("resource", ""), 0) + s.value
    return out


def operator_ticks(operator: OperatorProcess) -> float:
    for family in text_string_to_metric_families(operator.metrics()):
        if family.name == "kubetune_reconcile_ticks":
            return sum(s.value for s in family.samples if s.name.endswith("_total"))
    return 0.0


def test_a_steady_state_tick_lists_nothing(api_client, namespace, operator: OperatorProcess):
    create(api_client, namespace, scripted_experiment(
        "steady", [0.5, 0.6, 0.7], concurrency=3, steps=60, sleep=0.5,
        scheduler={"type": "fifo"}))

    def running() -> bool:
        states = [(t.get("status") or {}).get("state") for t in trials(api_client, namespace).values()]
        return len(states) == 3 and all(s == "Running" for s in states)

    wait_for(running, timeout=120, interval=0.5, what="three running trials")
    assert_no_lists_while_ticking(api_client, operator)


def assert_no_lists_while_ticking(api_client: client.ApiClient, operator: OperatorProcess,
                                  seconds: float = 8) -> None:
    """No namespaced LIST of TuneTrials, Pods or Jobs reaches the apiserver for `seconds`
    while the operator ticks (the caller's own reads are made before)."""
    # The namespace controller lists what it deletes in a namespace: earlier tests' must be gone.
    core = client.CoreV1Api(api_client)
    wait_for(lambda: not [n for n in core.list_namespace().items if n.status.phase == "Terminating"],
             timeout=120, interval=0.5, what="no namespace being deleted")
    time.sleep(2)
    lists, ticks = apiserver_lists(api_client), operator_ticks(operator)
    time.sleep(seconds)
    lists_after, ticks_after = apiserver_lists(api_client), operator_ticks(operator)
    assert ticks_after - ticks >= seconds / 2, "the operator ticked meanwhile"
    for resource in ("tunetrials", "pods", "jobs"):
        assert lists_after.get(resource, 0) == lists.get(resource, 0), (
            f"{lists_after.get(resource, 0) - lists.get(resource, 0):.0f} LISTs of {resource} "
            f"in {ticks_after - ticks:.0f} steady-state ticks")


def test_a_steady_state_tick_of_multi_worker_trials_lists_no_jobs(
        api_client, namespace, operator: OperatorProcess):
    """Two trials of two workers each (an Indexed Job per attempt), both running: the ticks
    read the Jobs from the watch-fed view. Counted: the apiserver's namespaced LISTs of
    tunetrials, pods and jobs (a tick's reads of its experiment, `Gateway.list_jobs` among
    them, are namespaced, with the experiment's label selector). Whole-trial admission's
    cluster-wide LISTs (`Gateway.capacity_objects`) are cluster-scoped, so not counted, and
    are not made here anyway: with every trial running no attempt is due to start."""
    create(api_client, namespace, worker_experiment(
        "steady-ddp", [0.5, 0.6], workers={"count": 2}, steps=300, sleep=0.5, concurrency=2))

    def running() -> bool:
        states = [(t.get("status") or {}).get("state") for t in trials(api_client, namespace).values()]
        return len(states) == 2 and all(s == "Running" for s in states)

    wait_for(running, timeout=180, interval=0.5, what="two running multi-worker trials")
    jobs = client.BatchV1Api(api_client).list_namespaced_job(namespace).items
    assert sorted(j.metadata.name for j in jobs) == ["steady-ddp-0-a1", "steady-ddp-1-a1"]
    assert_no_lists_while_ticking(api_client, operator)


def _filler_trial(namespace: str, index: int) -> dict[str, Any]:
    name = f"filler-{index}"
    return {"apiVersion": "kubetune.io/v1alpha1", "kind": "TuneTrial",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"kubetune.io/experiment": "filler", "kubetune.io/trial": name}},
            "spec": {"experiment": "filler", "index": index, "params": {"quality": 0.5}}}


def _outcome(api_client: client.ApiClient, namespace: str, name: str) -> tuple[str, set[str]]:
    """(best trial's index, pruned trials' indices) of a finished experiment."""
    exp = wait_phase(api_client, namespace, name, ("Succeeded", "Failed"), timeout=300)
    assert exp["status"]["phase"] == "Succeeded", exp["status"]
    pruned = {n.rsplit("-", 1)[1] for n, t in trials(api_client, namespace).items()
              if n.startswith(f"{name}-") and (t.get("status") or {}).get("state") == "Pruned"}
    return exp["status"]["bestTrial"]["name"].rsplit("-", 1)[1], pruned


def test_operator_killed_while_its_view_fills_loses_nothing_and_decides_the_same(
        api_client, namespace, operator: OperatorProcess):
    for i in range(FILLER):  # the view's first listing has many objects to take in
        custom(api_client).create_namespaced_custom_object(
            "kubetune.io", "v1alpha1", namespace, "tunetrials", _filler_trial(namespace, i))
    scheduler = {"type": "asha", "maxT": 9, "gracePeriod": 1, "reductionFactor": 3,
                 "decisionOrder": "trialIndex"}
    create(api_client, namespace, scripted_experiment("calm", QUALITIES, scheduler=scheduler))
    calm = _outcome(api_client, namespace, "calm")

    pods = PodWatch(api_client, namespace)
    try:
        create(api_client, namespace, scripted_experiment("killed", QUALITIES, scheduler=scheduler))
        rng = random.Random(18)
        early = 0
        try:
            for _ in range(4):
                time.sleep(rng.uniform(1.0, 4.0))  # the operator works for a while
                operator.kill()
                operator.start()  # returns once its health endpoint answers: still filling
                time.sleep(rng.uniform(0.0, 0.5))
                operator.kill()  # killed while its indices fill, before its first tick
                early += 1
                operator.start()
        finally:
            if operator.proc is None:
                operator.start()
        assert early == 4
        killed = _outcome(api_client, namespace, "killed")
    finally:
        pods.stop()
    assert killed == calm, f"uninterrupted (best, pruned) {calm} != after restarts {killed}"
    names = {n for n in pods.seen if n.startswith("killed-")}
    assert names == {f"killed-{i}-1" for i in range(12)}, "each trial exactly one pod, none lost"
    assert not {n for n in pods.seen if n.startswith("filler-")}, "no pod for another's trials"
    filler = [t for n, t in trials(api_client, namespace).items() if n.startswith("filler-")]
    assert len(filler) == FILLER and not any(t.get("status") for t in filler)
