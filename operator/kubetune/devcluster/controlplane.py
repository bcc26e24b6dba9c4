"""A real Kubernetes control plane on 127.0.0.1, without Docker.

etcd, kube-apiserver (TLS, client certificates, Node+RBAC authorisation),
kube-controller-manager (garbage collection, service accounts), kube-scheduler,
KWOK fake nodes that advertise `nvidia.com/gpu`, Prometheus (file-based service
discovery) and the local runner that plays the kubelet. Every process is ours,
started in its own session and recorded by PID in `state.json` (the contract's
`ClusterState`, which the client reads too), so teardown ends exactly what
`up()` started and nothing else. What each component runs with is in
`components`; this module starts them, waits for them and stops them.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from kubetune.contract import (
    CLUSTER_STATE_FILE,
    ClusterState,
    component_log_path,
    default_cluster_dir,
    pid_alive,
)
from kubetune.devcluster import components
from kubetune.devcluster.binaries import Binaries, find_binaries
from kubetune.devcluster.pki import Pki, make_pki
from kubetune.devcluster.processes import free_port, start_detached, terminate
from kubetune.devcluster.sandbox import pods_root

log = logging.getLogger(__name__)

GPU = "nvidia.com/gpu"


@dataclass
class ClusterConfig:
    """What `kubetune cluster up` builds: fake GPU nodes and scrape cadence."""

    state_dir: Path = field(default_factory=default_cluster_dir)
    nodes: int = 4
    gpus_per_node: int = 4
    cpu_per_node: str = "32"
    memory_per_node: str = "256Gi"
    scrape_interval: str = "1s"


class ClusterError(RuntimeError):
    """The local control plane failed to start; the message names the component and its log."""


class LocalCluster:
    """Start, inspect and stop the local control plane."""

    def __init__(self, config: ClusterConfig | None = None) -> None:
        self.config = config or ClusterConfig()
        self.state_dir = Path(self.config.state_dir)
        self._state: ClusterState | None = None

    # -- reading -----------------------------------------------------------------
    @property
    def state(self) -> ClusterState:
        if self._state is None:
            self._state = ClusterState.load(self.state_dir)
        return self._state

    @property
    def kubeconfig(self) -> Path:
        return Path(self.state.kubeconfig)

    @property
    def prometheus_url(self) -> str:
        return self.state.prometheus_url

    def _recorded(self) -> bool:
        return (self.state_dir / CLUSTER_STATE_FILE).exists()

    def is_up(self) -> bool:
        if not self._recorded():
            return False
        return all(pid_alive(pid) for pid in self.state.pids.values())

    def log_path(self, component: str) -> Path:
        return component_log_path(self.state_dir, component)

    # -- lifecycle -----------------------------------------------------------------
    def up(self, binaries: Binaries | None = None) -> float:
        """Start everything; return the seconds it took (binaries already built)."""
        if self._recorded():
            if self.is_up():
                raise ClusterError(f"a local cluster is already running in {self.state_dir}")
            self.down()
        binaries = binaries or find_binaries()
        started = time.monotonic()
        d = self.state_dir
        for sub in ("logs", "sd", "etcd", "prometheus", "pods"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        pki = make_pki(d / "pki", components.USERS)
        ports = {name: free_port() for name in components.PORTS}
        server = f"https://127.0.0.1:{ports['apiserver']}"
        kubeconfigs = {}
        for user in components.USERS:
            path = d / f"{user}.kubeconfig"
            path.write_text(yaml.safe_dump(components.kubeconfig(server, pki, user)))
            path.chmod(0o600)
            kubeconfigs[user] = str(path)
        self._state = ClusterState(
            state_dir=str(d), kubeconfig=kubeconfigs["admin"], apiserver_url=server,
            prometheus_url=f"http://127.0.0.1:{ports['prometheus']}", ports=ports,
            gpus_per_node=self.config.gpus_per_node,
        )
        (d / "prometheus.yml").write_text(yaml.safe_dump(
            components.prometheus_config(d, self.config.scrape_interval)))
        self._state.commands = components.commands(d, binaries, pki, ports, kubeconfigs)
        try:
            self._start("etcd")
            self._start("prometheus")
            self._start("kube-apiserver")
            self._wait_apiserver(pki)
            for name in ("kube-controller-manager", "kube-scheduler", "kwok", "runner"):
                self._start(name)
            self._create_nodes()
            self._wait_ready()
        except BaseException:
            self.down(keep_logs=True)
            raise
        return time.monotonic() - started

    def down(self, keep_logs: bool = False) -> None:
        """Stop the processes this cluster started (by PID) and remove its directory."""
        if not self._recorded():
            return
        state = self.state
        for name in reversed(list(state.pids)):
            terminate(state.pids[name])
        if keep_logs:
            log.error("local cluster failed; logs kept in %s", self.state_dir / "logs")
            (self.state_dir / CLUSTER_STATE_FILE).unlink()
        else:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            shutil.rmtree(pods_root(self.state_dir), ignore_errors=True)
        self._state = None

    def stop(self, component: str) -> None:
        """Stop one component (e.g. "prometheus") to test how the operator copes."""
        pid = self.state.pids.pop(component)
        terminate(pid)
        self.state.save()

    def start(self, component: str) -> None:
        """Start a component stopped by `stop()` again, with the same ports and data."""
        self._start(component)
        if component == "prometheus":
            self._wait_http(f"{self.prometheus_url}/-/ready", component)

    # -- internals -----------------------------------------------------------------
    def _start(self, name: str) -> None:
        assert self._state is not None or self._recorded()
        state = self.state
        state.pids[name] = start_detached(state.commands[name], self.log_path(name),
                                          cwd=self.state_dir)
        state.save()

    def _check_alive(self, name: str) -> None:
        pid = self.state.pids.get(name)
        if pid is not None and not pid_alive(pid):
            tail = self.log_path(name).read_text(errors="replace")[-2000:]
            raise ClusterError(f"{name} exited during start-up; its log ends:\n{tail}")

    def _wait_http(self, url: str, name: str, timeout: float = 60.0, **kw: Any) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive(name)
            with contextlib.suppress(requests.RequestException):
                if requests.get(url, timeout=2, **kw).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise ClusterError(f"{name} not ready after {timeout:.0f}s; see {self.log_path(name)}")
            time.sleep(0.1)

    def _wait_apiserver(self, pki: Pki) -> None:
        self._check_alive("etcd")
        self._wait_http(
            f"{self.state.apiserver_url}/readyz", "kube-apiserver",
            verify=str(pki.ca_cert), cert=(str(pki.cert("admin")), str(pki.key("admin"))),
        )

    def api(self) -> Any:
        """A CoreV1Api client for the admin user."""
        from kubernetes import client, config

        api_client = config.new_client_from_config(config_file=str(self.kubeconfig))
        return client.CoreV1Api(api_client)

    def _create_nodes(self) -> None:
        core = self.api()
        names = []
        cfg = self.config
        for i in range(cfg.nodes):
            name = f"kwok-gpu-{i}"
            capacity = {"cpu": cfg.cpu_per_node, "memory": cfg.memory_per_node,
                        "pods": "250", GPU: str(cfg.gpus_per_node)}
            core.create_node({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {components.NODE_ANNOTATION: "fake"},
                    "labels": {"type": "kwok", "kubernetes.io/hostname": name,
                               "kubernetes.io/os": "linux", "nvidia.com/gpu.present": "true"},
                },
                "status": {"capacity": capacity, "allocatable": capacity},
            })
            names.append(name)
        self.state.nodes = names
        self.state.save()

    def _wait_ready(self, timeout: float = 60.0) -> None:
        core = self.api()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name in self.state.pids:
                self._check_alive(name)
            nodes = core.list_node().items
            ready = [n for n in nodes if any(
                c.type == "Ready" and c.status == "True" for c in (n.status.conditions or []))]
            sa = core.list_namespaced_service_account("default").items
            if len(ready) == self.config.nodes and any(s.metadata.name == "default" for s in sa):
                self._wait_http(f"{self.prometheus_url}/-/ready", "prometheus")
                return
            time.sleep(0.2)
        raise ClusterError("nodes or the default ServiceAccount not ready after 60s")


@contextlib.contextmanager
def running_cluster(config: ClusterConfig | None = None) -> Iterator[LocalCluster]:
    """A cluster for the length of a `with` block (the test suite's session fixture)."""
    cluster = LocalCluster(config)
    cluster.up()
    try:
        yield cluster
    finally:
        cluster.down()
