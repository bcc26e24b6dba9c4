"""Writes whose answers nothing uses still give their connection back to the pool.

The operator's gateway and the local runner ask for unparsed answers
(`_preload_content=False`); urllib3 returns a connection to its pool only once the
answer is read to its end. Here every kind of write that ignores its answer is sent
ten times, one after the other, from a client of its own, against the real
apiserver: all of them must go over one connection, not one TLS handshake each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kubetune.api import EXPERIMENT_PLURAL, GROUP, VERSION, TuneExperimentStatus
from kubetune.controller.gateway import Gateway
from kubetune.devcluster import LocalCluster
from kubetune.devcluster.podwatch import pooled_client
from kubetune.devcluster.runner import Runner
from tests.support.operator import scripted_experiment

pytestmark = pytest.mark.integration

WRITES = 10


def connections(api: client.ApiClient) -> int:
    """The connections the client has opened to the apiserver so far."""
    pool = api.rest_client.pool_manager.connection_from_url(api.configuration.host)
    return int(pool.num_connections)


def unbound_pod(name: str) -> dict[str, Any]:
    """A pod no node matches: it stays Pending, and the runner never acts on it."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeSelector": {"kubetune.io/no-such-node": "true"},
                     "containers": [{"name": "main", "image": "python:3.11"}]}}


def test_experiment_status_patches_and_service_creates_reuse_one_connection(
        cluster: LocalCluster, crds: None, namespace: str) -> None:
    api = pooled_client(str(cluster.kubeconfig), 4)
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, EXPERIMENT_PLURAL, scripted_experiment("pool", [0.5]))
    gw = Gateway(api)
    before = connections(api)
    for i in range(WRITES):
        gw.patch_experiment_status(namespace, "pool", TuneExperimentStatus(message=f"write {i}"))
    for i in range(WRITES):
        gw.create_service({"apiVersion": "v1", "kind": "Service",
                           "metadata": {"name": f"pool-{i}", "namespace": namespace},
                           "spec": {"clusterIP": "None", "selector": {"app": f"pool-{i}"}}})
    assert connections(api) - before <= 1


def test_the_runners_statuses_and_deletions_reuse_one_connection(
        cluster: LocalCluster, namespace: str, tmp_path: Path) -> None:
    api = pooled_client(str(cluster.kubeconfig), 4)
    core = client.CoreV1Api(api)
    for i in range(WRITES):
        core.create_namespaced_pod(namespace, unbound_pod(f"pool-{i}"))
    runner = Runner(core, tmp_path)
    before = connections(api)
    for i in range(WRITES):
        runner._send_status(namespace, f"pool-{i}", {"message": f"write {i}"})
    for i in range(WRITES):
        pod = core.read_namespaced_pod(f"pool-{i}", namespace)
        runner._send_delete(namespace, f"pool-{i}", pod.metadata.uid)
    assert connections(api) - before <= 1
    assert not core.list_namespaced_pod(namespace).items
