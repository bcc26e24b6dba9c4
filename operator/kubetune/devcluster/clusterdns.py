"""Cluster DNS and pod networking for the local runner's pods, which all share one host.

In a cluster, the pods of an Indexed Job with `subdomain` set to a headless Service
have DNS names `<hostname>.<service>.<namespace>.svc.<cluster-domain>` (CoreDNS
answers for every pod behind a headless Service with `publishNotReadyAddresses`,
ready or not), each pod has its own IP, so every trial's rank 0 can listen on the
same rendezvous port (29500). Here every pod is a group of local processes on one
network namespace, so the runner imitates two things, in the environment it gives
a container (the only way a pod's processes find their peers in torchrun's static
rendezvous):

- DNS: a variable that names a master address (`PET_MASTER_ADDR`, `MASTER_ADDR`, the
  host of `PET_RDZV_ENDPOINT`) holding the DNS name of a pod behind a headless Service
  that exists in that namespace is given 127.0.0.1, where that pod's processes listen.
  A name that cluster DNS would not answer (no such Service, not headless, another
  form) is left as it is, so it fails to resolve here as it would there;
- ports: a pod's rendezvous port (`PET_MASTER_PORT`, `MASTER_PORT`, the port of
  `PET_RDZV_ENDPOINT`) is replaced by a free local port allocated once per Job (the
  pod's controller), the same for all of its pods, so two trials' groups never meet.
  The allocation is kept in the state directory, so a restarted runner keeps it. It
  is taken below the kernel's ephemeral range: a port from bind(0) is free only until
  rank 0 listens on it, seconds later, and in between the kernel could hand the same
  port to another pod's metrics port or to an outgoing connection.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import threading
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetune import contract
from kubetune.devcluster.processes import bindable, ephemeral_ports, free_port

#: Variables whose value is the rank-0 host that torchrun (or torch.distributed) dials.
ADDRESS_VARIABLES = (contract.ENV_PET_MASTER_ADDR, "MASTER_ADDR")
#: Variables whose value is the rendezvous port on that host.
PORT_VARIABLES = (contract.ENV_PET_MASTER_PORT, "MASTER_PORT")
#: A `host:port` rendezvous endpoint (torchrun's --rdzv-endpoint).
ENDPOINT_VARIABLE = "PET_RDZV_ENDPOINT"
#: The cluster domain cluster DNS serves (the kubelet's default `--cluster-domain`).
CLUSTER_DOMAIN = "cluster.local"
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_LOCALHOST = "127.0.0.1"
RENDEZVOUS_PORTS = 8000
"""How many ports below the ephemeral range the rendezvous ports are taken from."""


def pod_dns_name(name: str, namespace: str) -> tuple[str, str, str] | None:
    """(hostname, service, namespace) of a pod DNS name as cluster DNS answers it, else None.

    `<hostname>.<service>` is resolved through the pod's search path (its own namespace);
    `<hostname>.<service>.<ns>`, `.<ns>.svc` and `.<ns>.svc.cluster.local` name one.
    """
    labels = name.rstrip(".").lower().split(".")
    if not all(re.fullmatch(_LABEL, label) for label in labels):
        return None
    if labels[3:] in (["svc"], ["svc", *CLUSTER_DOMAIN.split(".")]):
        labels = labels[:3]
    if len(labels) == 2:
        return labels[0], labels[1], namespace
    if len(labels) == 3:
        return labels[0], labels[1], labels[2]
    return None


def _controller_uid(pod: dict[str, Any]) -> str:
    """The uid of the Job (any controller) owning the pod, else the pod's own."""
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref["uid"])
    return str(pod["metadata"]["uid"])


class PodNetwork:
    """What the runner changes in a container's env so its pod's peers reach each other here."""

    def __init__(self, api: client.CoreV1Api, state_dir: Path) -> None:
        self.api = api
        self.ports_dir = state_dir / "rendezvous-ports"
        self.ports_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def rendezvous_port(self, pod: dict[str, Any]) -> int:
        """The local port of the pod's group: one per Job, kept across runner restarts."""
        record = self.ports_dir / f"{_controller_uid(pod)}.json"
        with self._lock:
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                return int(json.loads(record.read_text())["port"])
            port = self._unused_port()
            tmp = record.with_suffix(".tmp")
            tmp.write_text(json.dumps({"port": port, "pod": pod["metadata"]["name"]}))
            tmp.replace(record)
            return port

    def _unused_port(self) -> int:
        """A port below the ephemeral range that no Job was given and nothing listens on."""
        low = ephemeral_ports().start
        candidates = range(max(1024, low - RENDEZVOUS_PORTS), low)
        taken = set()
        for record in self.ports_dir.glob("*.json"):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                taken.add(int(json.loads(record.read_text())["port"]))
        start = random.randrange(len(candidates)) if candidates else 0
        for i in range(len(candidates)):
            port = candidates[(start + i) % len(candidates)]
            if port not in taken and bindable(port):
                return port
        return free_port()  # every one is taken: the kernel's choice, as before

    def resolves_locally(self, name: str, namespace: str) -> bool:
        """Whether cluster DNS would answer `name` with a pod (that this runner plays)."""
        parts = pod_dns_name(name, namespace)
        if parts is None:
            return False
        _, service, ns = parts
        try:
            svc = self.api.read_namespaced_service(service, ns)
        except ApiException as e:
            if e.status == 404:
                return False
            raise
        return svc.spec is not None and svc.spec.cluster_ip == "None"

    def rewrite(self, pod: dict[str, Any], env: dict[str, str]) -> dict[str, str]:
        """`env` with master addresses resolved and rendezvous ports made the Job's own."""
        ns = pod["metadata"]["namespace"]
        out = dict(env)
        port: int | None = None
        for var in PORT_VARIABLES:
            if var in env:
                port = port or self.rendezvous_port(pod)
                out[var] = str(port)
        for var in ADDRESS_VARIABLES:
            if var in env and self.resolves_locally(env[var], ns):
                out[var] = _LOCALHOST
        endpoint = env.get(ENDPOINT_VARIABLE, "")
        if endpoint:
            host = endpoint.rsplit(":", 1)[0]
            if self.resolves_locally(host, ns):
                out[ENDPOINT_VARIABLE] = f"{_LOCALHOST}:{port or self.rendezvous_port(pod)}"
        return out
