"""The dev cluster's trial farm: a pod annotated `kubetune.io/dev-farm: "true"` that runs the
simulated trainer is a thread of the runner, and ends as its own process would have.

Pods are created directly (no operator) with the env and labels the operator gives trial
pods, so Prometheus scrapes them as trials; see kubetune.devcluster.farm.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import requests
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetune import contract
from kubetune.devcluster import LocalCluster
from kubetune.devcluster.sandbox import pods_root
from tests.integration.kube import wait_for

CONFIG = {"lr": 0.02, "optimizer": "sgd", "hidden_size": 128, "layers": 2, "epochs": 6}


def trial_pod(name: str, trial: str, *, farm: bool, seconds_per_step: float = 0.3,
              linger: str = "30", config: dict[str, Any] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {
        contract.EXPERIMENT_LABEL: "farm", contract.TRIAL_LABEL: trial,
        contract.ATTEMPT_LABEL: "1"}}
    if farm:
        meta["annotations"] = {contract.ANNOTATION_FARM: "true"}
    env = {contract.ENV_CONFIG: json.dumps(config or CONFIG), contract.ENV_MILESTONES: "1,3",
           contract.ENV_METRIC: "accuracy", contract.ENV_EXPERIMENT: "farm",
           contract.ENV_TRIAL: trial, contract.ENV_LINGER_SECONDS: linger}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {
        "restartPolicy": "Never", "containers": [{
            "name": "trainer", "image": "kubetune-trainer:0.1.0",
            "command": ["python", "-m", "kubetune_trainer", "--dataset", "simulated",
                        "--seconds-per-step", str(seconds_per_step)],
            "env": [{"name": k, "value": v} for k, v in env.items()],
            "ports": [{"name": "metrics", "containerPort": contract.DEFAULT_METRICS_PORT}]}]}}


def finished(core: client.CoreV1Api, namespace: str, name: str) -> client.V1Pod | None:
    pod = core.read_namespaced_pod(name, namespace)
    return pod if pod.status.phase in ("Succeeded", "Failed") else None


def series(cluster: LocalCluster, query: str) -> dict[tuple[str, str], float]:
    answer = requests.get(f"{cluster.prometheus_url}/api/v1/query", timeout=5,
                          params={"query": query}).json()
    return {(r["metric"]["trial"], r["metric"].get("milestone", "")): float(r["value"][1])
            for r in answer["data"]["result"]}


def epoch_lines(cluster: LocalCluster, namespace: str, pod: str) -> list[str]:
    log = contract.pod_log_path(cluster.state_dir, namespace, pod).read_text(errors="replace")
    return [re.sub(r"^\S+ \S+ ", "", line) for line in log.splitlines()
            if re.search(r": epoch \d+/", line)]


def test_a_farmed_pod_and_a_process_pod_of_one_config_report_the_same_curve(
        cluster: LocalCluster, api_client, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, trial_pod("real", "farm-0", farm=False))
    core.create_namespaced_pod(namespace, trial_pod("farmed", "farm-1", farm=True))
    pods = {name: wait_for(lambda n=name: finished(core, namespace, n), timeout=90,
                           what=f"pod {name} to finish") for name in ("real", "farmed")}
    states = {n: p.status.container_statuses[0].state.terminated for n, p in pods.items()}
    assert {n: (pods[n].status.phase, states[n].exit_code, states[n].reason) for n in pods} == {
        "real": ("Succeeded", 0, "Completed"), "farmed": ("Succeeded", 0, "Completed")}
    assert states["farmed"].message == states["real"].message
    message = contract.decode_termination_message(states["farmed"].message)
    assert message["finished"] and message["step"] == 6 and set(message["rungs"]) == {"1", "3"}
    # The farmed container is the runner itself, not a process of its own.
    farm_pid = int(pods["farmed"].status.container_statuses[0].container_id.split("//")[1])
    real_pid = int(pods["real"].status.container_statuses[0].container_id.split("//")[1])
    assert farm_pid != real_pid
    cmdline = Path(f"/proc/{farm_pid}/cmdline").read_bytes().replace(b"\0", b" ")
    assert b"kubetune.devcluster.runner" in cmdline, cmdline
    # Both lingered for a final scrape: Prometheus holds the same rungs and final values.
    ns = f'namespace="{namespace}"'
    # (The pods are gone, so their series are stale: read each one's last sample.)
    rungs = series(cluster,
                   f'last_over_time({contract.METRIC_RUNG_VALUE}{{{ns},metric="accuracy"}}[5m])')
    assert {m: v for (t, m), v in rungs.items() if t == "farm-1"} == \
        {m: v for (t, m), v in rungs.items() if t == "farm-0"} == \
        {m: message["rungs"][m]["value"] for m in ("1", "3")}
    final = series(cluster, f'last_over_time({contract.METRIC_VALUE}{{{ns},metric="accuracy"}}[5m])')
    assert final[("farm-1", "")] == final[("farm-0", "")] == message["metrics"]["accuracy"]
    steps = series(cluster, f"last_over_time({contract.METRIC_STEP}{{{ns}}}[5m])")
    assert steps[("farm-1", "")] == steps[("farm-0", "")] == 6
    assert epoch_lines(cluster, namespace, "farmed") == epoch_lines(cluster, namespace, "real")
    assert len(epoch_lines(cluster, namespace, "farmed")) == 6


def test_deleting_a_farmed_pod_stops_its_trial_within_the_grace_period(
        cluster: LocalCluster, api_client, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    body = trial_pod("long", "farm-2", farm=True, seconds_per_step=0.5,
                     config={**CONFIG, "epochs": 200})
    uid = core.create_namespaced_pod(namespace, body).metadata.uid
    wait_for(lambda: "epoch 3/" in "\n".join(epoch_lines(cluster, namespace, "long"))
             if contract.pod_log_path(cluster.state_dir, namespace, "long").exists() else None,
             timeout=60, what="the farmed trial's third epoch")
    began = time.monotonic()
    core.delete_namespaced_pod("long", namespace, grace_period_seconds=20)

    def gone() -> bool:
        try:
            core.read_namespaced_pod("long", namespace)
        except ApiException as e:
            return e.status == 404
        return False

    wait_for(gone, timeout=25, interval=0.1, what="the deleted farmed pod to go")
    took = time.monotonic() - began
    assert took < 5, f"SIGTERM stopped the trial at its next wait, not after {took:.1f}s"
    # It wrote its termination message as a stopped trial does: unfinished, at its step.
    log = pods_root(cluster.state_dir) / namespace / f"long-{uid[:8]}" / "trainer" / \
        "termination-log"
    message = contract.decode_termination_message(log.read_text())
    assert not message["finished"] and 3 <= (message["step"] or 0) < 200


def test_an_annotated_pod_that_is_not_the_simulated_trainer_fails_to_start_with_a_reason(
        api_client, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    body = trial_pod("other", "farm-3", farm=True)
    body["spec"]["containers"][0]["command"] = ["python", "-c", "print('hello')"]
    core.create_namespaced_pod(namespace, body)
    pod = wait_for(lambda: finished(core, namespace, "other"), timeout=60,
                   what="the pod to fail")
    state = pod.status.container_statuses[0].state.terminated
    assert (pod.status.phase, state.reason) == ("Failed", "StartError")
    assert contract.ANNOTATION_FARM in state.message and "simulated" in state.message
