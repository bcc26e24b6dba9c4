"""The runner's view of the pods bound to a node: one listing, then a watch, as plain JSON.

The client's models cost more than the rest of an event's handling, so the listing and
the watch events are parsed with `json` alone. A watch that ends is resumed from the
last resourceVersion seen; an expired one (410 Gone) starts again from a new listing,
as an informer does.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

log = logging.getLogger("kubetune.runner")

BOUND = "spec.nodeName!="


def pooled_client(kubeconfig: str, connections: int) -> client.ApiClient:
    """A client that keeps `connections` connections: one per thread that sends requests
    (the default, 5 per CPU, drops the others after each request and handshakes again)."""
    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = connections
    return client.ApiClient(configuration)


def sent(response: Any) -> None:
    """Read the unparsed answer to a write to its end: urllib3 puts a connection back in
    the pool only then, so an answer left unread costs the next request a new handshake."""
    response.data  # noqa: B018


def follow_bound_pods(api: client.CoreV1Api, stopping: threading.Event,
                      on_pod: Callable[[dict[str, Any]], None],
                      on_deleted: Callable[[str], None]) -> None:
    """Call `on_pod` with every bound pod listed or changed, `on_deleted` with the uid of
    each one gone, until `stopping` is set."""
    resource_version = ""
    while not stopping.is_set():
        try:
            if not resource_version:
                resp = cast(Any, api.list_pod_for_all_namespaces(
                    field_selector=BOUND, _preload_content=False))
                listed = json.loads(resp.data)
                resource_version = str(listed["metadata"]["resourceVersion"])
                for pod in listed["items"]:
                    on_pod(pod)
            resource_version = _watch(api, resource_version, on_pod, on_deleted)
        except ApiException as e:
            if e.status == 410:
                resource_version = ""
            else:
                log.warning("watch failed: %s", e.reason)
                time.sleep(0.5)
        except Exception:
            log.exception("watch loop failed")
            time.sleep(0.5)


def _watch(api: client.CoreV1Api, resource_version: str,
           on_pod: Callable[[dict[str, Any]], None], on_deleted: Callable[[str], None]) -> str:
    """One watch from `resource_version`; returns where it ended, "" when expired."""
    resp = cast(Any, api.list_pod_for_all_namespaces(
        field_selector=BOUND, resource_version=resource_version, watch=True,
        timeout_seconds=60, allow_watch_bookmarks=True, _preload_content=False))
    try:
        for line in iter_resp_lines(resp):
            if not line.strip():
                continue
            event = json.loads(line)
            obj = event["object"]
            if event["type"] == "ERROR":
                if obj.get("code") == 410:
                    return ""
                raise ApiException(status=obj.get("code"), reason=obj.get("message"))
            resource_version = obj["metadata"].get("resourceVersion", resource_version)
            if event["type"] == "BOOKMARK":
                continue
            if event["type"] == "DELETED":
                on_deleted(obj["metadata"]["uid"])
            else:
                on_pod(obj)
    finally:
        resp.release_conn()
    return resource_version
