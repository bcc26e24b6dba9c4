"""The local control plane is a real one: scheduler, GC, RBAC, runner, Prometheus."""

from __future__ import annotations

import json
import textwrap
import time
from typing import Any

import pytest
import requests
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetune.devcluster import LocalCluster
from tests.integration.kube import wait_for


def pod(name: str, *, gpus: int = 0, script: str = "pass", labels: dict[str, str] | None = None,
        metrics: bool = False, grace: int | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "main", "image": "python:3.11",
        "command": ["python", "-c", textwrap.dedent(script)],
    }
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    if metrics:
        container["ports"] = [{"name": "metrics", "containerPort": 8000}]
    spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {}}, "spec": spec}


def phase(core: client.CoreV1Api, ns: str, name: str) -> str:
    return str(core.read_namespaced_pod(name, ns).status.phase)


def gone(core: client.CoreV1Api, ns: str, name: str) -> bool:
    try:
        core.read_namespaced_pod(name, ns)
    except ApiException as e:
        return e.status == 404
    return False


@pytest.fixture
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


def test_pod_asking_for_two_gpus_is_scheduled_onto_a_fake_gpu_node(core, namespace):
    core.create_namespaced_pod(namespace, pod("gpu2", gpus=2, script="import time; time.sleep(30)"))
    node_name = wait_for(lambda: core.read_namespaced_pod("gpu2", namespace).spec.node_name,
                         what="the scheduler to bind the pod")
    node = core.read_node(node_name)
    assert node.metadata.annotations["kwok.x-k8s.io/node"] == "fake"
    assert int(node.status.allocatable["nvidia.com/gpu"]) >= 2
    scheduled = [c for c in core.read_namespaced_pod("gpu2", namespace).status.conditions
                 if c.type == "PodScheduled"]
    assert scheduled and scheduled[0].status == "True"


def test_pod_asking_for_more_gpus_than_any_node_has_stays_pending_unschedulable(
        core, namespace, cluster: LocalCluster):
    too_many = cluster.state.gpus_per_node + 1
    core.create_namespaced_pod(namespace, pod("gpu-greedy", gpus=too_many))

    def unschedulable() -> Any:
        p = core.read_namespaced_pod("gpu-greedy", namespace)
        return [c for c in p.status.conditions or []
                if c.type == "PodScheduled" and c.reason == "Unschedulable"]

    cond = wait_for(unschedulable, what="PodScheduled=False/Unschedulable")
    assert "nvidia.com/gpu" in cond[0].message
    time.sleep(1)
    p = core.read_namespaced_pod("gpu-greedy", namespace)
    assert p.status.phase == "Pending" and not p.spec.node_name


def test_deleting_an_owner_garbage_collects_the_pod_it_owns(core, namespace):
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    owned = pod("owned", script="import time; time.sleep(60)")
    owned["metadata"]["ownerReferences"] = [{
        "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}]
    core.create_namespaced_pod(namespace, owned)
    core.delete_namespaced_config_map("owner", namespace)
    wait_for(lambda: gone(core, namespace, "owned"), timeout=60,
             what="the garbage collector to delete the owned pod")


def test_service_account_without_role_binding_is_denied(core, namespace, cluster):
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "nobody"}})
    token = core.create_namespaced_service_account_token(
        "nobody", namespace, {"spec": {"expirationSeconds": 600}}).status.token
    admin = client.Configuration.get_default_copy()
    from kubernetes import config as kconfig

    kconfig.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=admin)
    cfg = client.Configuration()
    cfg.host = admin.host
    cfg.ssl_ca_cert = admin.ssl_ca_cert
    cfg.api_key = {"authorization": f"Bearer {token}"}
    sa_client = client.ApiClient(cfg)
    # Authenticated as the ServiceAccount, not anonymous...
    review = client.AuthenticationV1Api(sa_client).create_self_subject_review({})
    assert review.status.user_info.username == f"system:serviceaccount:{namespace}:nobody"
    # ...and RBAC denies what no binding grants.
    with pytest.raises(ApiException) as denied:
        client.CoreV1Api(sa_client).list_namespaced_pod(namespace)
    assert denied.value.status == 403
    assert f"system:serviceaccount:{namespace}:nobody" in denied.value.body


def test_runner_pod_exiting_zero_succeeds_with_its_termination_message(core, namespace):
    script = """
        import json, os
        with open(os.environ["KUBETUNE_TERMINATION_LOG"], "w") as f:
            json.dump({"accuracy": 0.97, "step": 5}, f)
    """
    core.create_namespaced_pod(namespace, pod("ok", script=script))
    wait_for(lambda: phase(core, namespace, "ok") == "Succeeded", what="phase Succeeded")
    terminated = core.read_namespaced_pod("ok", namespace).status.container_statuses[0].state.terminated
    assert terminated.exit_code == 0
    assert json.loads(terminated.message) == {"accuracy": 0.97, "step": 5}


def test_runner_pod_exiting_three_fails_with_exit_code_three(core, namespace):
    core.create_namespaced_pod(namespace, pod("bad", script="import sys; sys.exit(3)"))
    wait_for(lambda: phase(core, namespace, "bad") == "Failed", what="phase Failed")
    terminated = core.read_namespaced_pod("bad", namespace).status.container_statuses[0].state.terminated
    assert terminated.exit_code == 3 and terminated.reason == "Error"


def test_deleting_a_running_pod_sends_sigterm_then_completes_the_deletion(core, namespace):
    script = """
        import signal, sys, time, os
        def bye(*_):
            open("terminated", "w").write("yes")
            sys.exit(0)
        signal.signal(signal.SIGTERM, bye)
        open("started", "w").write(os.getcwd())
        time.sleep(120)
    """
    core.create_namespaced_pod(namespace, pod("graceful", script=script, grace=10))
    wait_for(lambda: phase(core, namespace, "graceful") == "Running", what="Running")
    time.sleep(0.5)
    started = time.monotonic()
    core.delete_namespaced_pod("graceful", namespace)
    wait_for(lambda: gone(core, namespace, "graceful"), what="the deletion to complete")
    assert time.monotonic() - started < 8, "a process that exits on SIGTERM must not wait out the grace"


def test_a_process_ignoring_sigterm_is_killed_after_the_grace_period(core, namespace):
    script = """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(120)
    """
    core.create_namespaced_pod(namespace, pod("stubborn", script=script, grace=2))
    wait_for(lambda: phase(core, namespace, "stubborn") == "Running", what="Running")
    time.sleep(0.5)
    started = time.monotonic()
    core.delete_namespaced_pod("stubborn", namespace)
    wait_for(lambda: gone(core, namespace, "stubborn"), what="SIGKILL after the grace period")
    assert 1.5 < time.monotonic() - started < 10


def test_metric_served_by_a_runner_pod_is_queryable_in_prometheus(core, namespace, cluster):
    script = """
        import os, time
        from prometheus_client import Gauge, start_http_server
        Gauge("kubetune_probe_value", "probe").set(42.5)
        start_http_server(int(os.environ["KUBETUNE_METRICS_PORT"]), addr="127.0.0.1")
        time.sleep(120)
    """
    labels = {"kubetune.io/experiment": "probe-exp", "kubetune.io/trial": "probe-exp-0"}
    core.create_namespaced_pod(namespace, pod("metrics", script=script, labels=labels, metrics=True))

    def query() -> Any:
        r = requests.get(f"{cluster.prometheus_url}/api/v1/query", timeout=5,
                         params={"query": f'kubetune_probe_value{{namespace="{namespace}"}}'})
        return r.json()["data"]["result"]

    result = wait_for(query, timeout=60, what="the gauge to be scraped")
    assert float(result[0]["value"][1]) == 42.5
    assert result[0]["metric"]["experiment"] == "probe-exp"
    assert result[0]["metric"]["trial"] == "probe-exp-0"
    assert result[0]["metric"]["pod"] == "metrics"
