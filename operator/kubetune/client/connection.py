"""Reaching the cluster from the user's side: which kubeconfig, which namespace, one API client.

A running local dev cluster is found through the record it keeps in its state
directory (`kubetune.contract.ClusterState`), not through the dev cluster's code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from kubetune.client.errors import KubetuneError
from kubetune.contract import ClusterState, running_cluster_state

if TYPE_CHECKING:
    from kubernetes import client as k8s

#: (connect, read) seconds of every API call.
TIMEOUT = (5, 60)


def resolve_kubeconfig(explicit: str | Path | None = None) -> Path | None:
    """--kubeconfig, else $KUBECONFIG, else a running local cluster's, else ~/.kube/config.

    None means in-cluster configuration (running in a pod).
    """
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise KubetuneError(f"kubeconfig {path} does not exist")
        return path
    for entry in os.environ.get("KUBECONFIG", "").split(os.pathsep):
        if entry and Path(entry).expanduser().is_file():
            return Path(entry).expanduser()
    local = running_cluster_state()
    if local is not None:
        return Path(local.kubeconfig)
    home = Path.home() / ".kube" / "config"
    if home.is_file():
        return home
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return None
    raise KubetuneError("no kubeconfig found: pass --kubeconfig or set $KUBECONFIG, or start a "
                        "local cluster with `kubetune cluster up`")


def local_cluster_for(kubeconfig: Path | None) -> ClusterState | None:
    """The running local cluster whose admin kubeconfig this is (its pod logs are local files)."""
    if kubeconfig is None:
        return None
    local = running_cluster_state(kubeconfig.resolve().parent)
    if local is not None and Path(local.kubeconfig).resolve() == kubeconfig.resolve():
        return local
    return None


def context_namespace(kubeconfig: Path | None) -> str:
    """The namespace of the kubeconfig's current context (or the pod's own), else default."""
    if kubeconfig is None:
        token_ns = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        return token_ns.read_text().strip() if token_ns.is_file() else "default"
    from kubernetes import config

    try:
        # The kubernetes client ships without type hints.
        _, current = config.list_kube_config_contexts(
            config_file=str(kubeconfig))
    except (config.ConfigException, OSError, TypeError, ValueError):
        return "default"
    return str((current or {}).get("context", {}).get("namespace") or "default")


def new_api_client(kubeconfig: Path | None) -> k8s.ApiClient:
    """An API client for the kubeconfig (None: in-cluster), failing fast when unreachable."""
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        if kubeconfig is None:  # (the kubernetes client ships without type hints)
            config.load_incluster_config(
                client_configuration=configuration)
        else:
            config.load_kube_config(
                config_file=str(kubeconfig), client_configuration=configuration)
    except (config.ConfigException, OSError, ValueError) as e:
        raise KubetuneError(f"cannot use kubeconfig {kubeconfig}: {e}") from None
    configuration.retries = 1  # an unreachable server fails in seconds, not after 3 retries
    return client.ApiClient(configuration)


def api_host(api: k8s.ApiClient) -> str:
    """The API server's URL, for messages."""
    return str(getattr(api.configuration, "host", "") or "the Kubernetes API")
