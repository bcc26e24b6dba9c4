"""Trial processes on the dev cluster are kept apart from its control plane: they get the
pod's env, not the runner's (nor its caller's credentials), a working directory outside
the state dir that holds the admin kubeconfig, and a pod label cannot move their series."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import client

from kubetune import contract
from kubetune.devcluster import LocalCluster
from tests.integration.kube import wait_for

CANARY = {"AWS_SECRET_ACCESS_KEY": "canary-secret", "KUBETUNE_CANARY_TOKEN": "canary-token"}

# Reports what the process can see, then serves metrics through the trial SDK for a while.
PROBE = r"""
import json, os, sys, time
from pathlib import Path
from kubetune import trial

state = Path(os.environ["STATE_DIR"]).resolve()
admin = (state / "admin.kubeconfig").read_bytes()
found = []
for root in {Path.cwd(), Path(os.environ["HOME"])}:
    for p in [root, *root.rglob("*")]:
        try:
            if p.is_file() and (p.stat().st_size == len(admin) and p.read_bytes() == admin):
                found.append(str(p))
        except OSError:
            pass
report = {"env": dict(os.environ), "cwd": str(Path.cwd().resolve()), "found": found,
          "executable": sys.executable}
print("PROBE " + json.dumps(report), flush=True)
trial.report(step=1, accuracy=0.5)
time.sleep(float(os.environ.get("HOLD", "30")))
"""


def probe_pod(name: str, state_dir: Path, labels: dict[str, str], **container: Any) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": {"restartPolicy": "Never", "containers": [{
                "name": "probe", "image": "kubetune/probe:test",
                "command": ["python", "-c", PROBE],
                "env": [{"name": "STATE_DIR", "value": str(state_dir)},
                        {"name": "KUBETUNE_EXPERIMENT", "value": "spoof"},
                        {"name": "KUBETUNE_TRIAL", "value": "spoof-0"}],
                "ports": [{"name": "metrics", "containerPort": 8000}],
                **container}]}}


def report(cluster: LocalCluster, namespace: str, pod: str) -> dict[str, Any]:
    log = contract.pod_log_path(cluster.state_dir, namespace, pod)

    def read() -> dict[str, Any] | None:
        if not log.exists():
            return None
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("PROBE "):
                return dict(json.loads(line[len("PROBE "):]))
        return None

    return wait_for(read, timeout=60, what=f"{pod}'s report in {log}")


@pytest.fixture
def runner_with_credentials(cluster: LocalCluster) -> Iterator[dict[str, str]]:
    """The runner restarted from an environment with credentials in it (as a developer's
    shell has), then restarted again without them."""
    extra = {**CANARY, "KUBECONFIG": str(cluster.kubeconfig)}
    cluster.stop("runner")
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        cluster.start("runner")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    runner_env = Path(f"/proc/{cluster.state.pids['runner']}/environ").read_bytes()
    assert b"canary-secret" in runner_env  # the runner itself has them
    yield extra
    cluster.stop("runner")
    cluster.start("runner")


def test_a_trial_gets_the_pods_env_and_a_working_dir_away_from_the_admin_kubeconfig(
        cluster: LocalCluster, api_client, namespace: str,
        runner_with_credentials: dict[str, str]) -> None:
    core = client.CoreV1Api(api_client)
    state_dir = cluster.state_dir.resolve()
    core.create_namespaced_pod(namespace, probe_pod("plain", state_dir, {"app": "probe"}))
    # A workingDir pointing into the state dir is not honoured either.
    core.create_namespaced_pod(namespace, probe_pod("pointed", state_dir, {"app": "probe"},
                                                    workingDir=str(state_dir)))
    for pod in ("plain", "pointed"):
        seen = report(cluster, namespace, pod)
        env = seen["env"]
        for key, value in runner_with_credentials.items():
            assert key not in env, f"{key} leaked into the trial"
            assert all(value not in v for v in env.values())
        paths = [Path(p) for k, v in env.items() if k != "STATE_DIR"
                 for p in v.split(os.pathsep) if p.startswith("/")]
        assert not [p for p in paths if p.is_relative_to(state_dir)], "no path into the state dir"
        assert set(env) <= {"PATH", "HOME", "HOSTNAME", "PYTHONPATH", "LANG", "LC_ALL", "TZ",
                            "STATE_DIR", "KUBETUNE_EXPERIMENT", "KUBETUNE_TRIAL",
                            contract.ENV_METRICS_PORT, contract.ENV_TERMINATION_LOG}, env
        cwd = Path(seen["cwd"])
        assert not cwd.is_relative_to(state_dir) and not state_dir.is_relative_to(cwd), cwd
        assert Path(env["HOME"]).is_relative_to(cwd.parent), "HOME is the pod's own"
        assert seen["found"] == [], "the admin kubeconfig is reachable from the pod's dirs"
        assert seen["executable"] == sys.executable  # kubetune's Python, as the image's
        core.delete_namespaced_pod(pod, namespace, grace_period_seconds=0)


def test_a_pod_label_named_namespace_does_not_move_its_series(
        cluster: LocalCluster, api_client, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    labels = {contract.EXPERIMENT_LABEL: "real", contract.TRIAL_LABEL: "real-0",
              "namespace": "other", "experiment": "victim", "pod": "someone-else"}
    core.create_namespaced_pod(namespace, probe_pod("labelled", cluster.state_dir, labels))
    report(cluster, namespace, "labelled")

    def series() -> list[dict[str, str]] | None:
        answer = requests.get(f"{cluster.prometheus_url}/api/v1/query", timeout=5, params={
            "query": f'{contract.METRIC_STEP}{{trial="real-0"}}'}).json()
        return [r["metric"] for r in answer["data"]["result"]] or None

    (labels_seen,) = wait_for(series, timeout=60, interval=0.5, what="the pod to be scraped")
    assert (labels_seen["namespace"], labels_seen["experiment"], labels_seen["trial"],
            labels_seen["pod"]) == (namespace, "real", "real-0", "labelled")
    for spoofed in ('namespace="other"', 'experiment="victim"', 'pod="someone-else"'):
        moved = requests.get(f"{cluster.prometheus_url}/api/v1/query", timeout=5, params={
            "query": f'{{__name__=~"kubetune_trial_.*", {spoofed}}}'}).json()
        assert moved["data"]["result"] == [], spoofed
    core.delete_namespaced_pod("labelled", namespace, grace_period_seconds=0)
    time.sleep(0.5)
