"""A real Kubernetes control plane on 127.0.0.1, without Docker.

etcd, kube-apiserver (TLS, client certificates, Node+RBAC authorisation),
kube-controller-manager (garbage collection, service accounts), kube-scheduler,
KWOK fake nodes that advertise `nvidia.com/gpu`, Prometheus (file-based service
discovery) and the local runner that plays the kubelet. Every process is ours,
started in its own session and recorded by PID in `state.json`, so teardown
ends exactly what `up()` started and nothing else.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from kubetune.devcluster.binaries import Binaries, find_binaries
from kubetune.devcluster.pki import Pki, make_pki

log = logging.getLogger(__name__)

STAGES_FILE = Path(__file__).with_name("kwok-stages.yaml")
NODE_ANNOTATION = "kwok.x-k8s.io/node"
GPU = "nvidia.com/gpu"


def default_state_dir() -> Path:
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(os.environ.get("TMPDIR", "/tmp"))
    return Path(os.environ.get("KUBETUNE_CLUSTER_DIR", base / f"kubetune-{os.getuid()}" / "cluster"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ClusterConfig:
    """What `kubetune cluster up` builds: fake GPU nodes and scrape cadence."""

    state_dir: Path = field(default_factory=default_state_dir)
    nodes: int = 4
    gpus_per_node: int = 4
    cpu_per_node: str = "32"
    memory_per_node: str = "256Gi"
    scrape_interval: str = "1s"


@dataclass
class ClusterState:
    """Everything needed to reach, stop or restart a running local cluster."""

    state_dir: str
    kubeconfig: str
    apiserver_url: str
    prometheus_url: str
    ports: dict[str, int]
    pids: dict[str, int] = field(default_factory=dict)
    commands: dict[str, list[str]] = field(default_factory=dict)
    nodes: list[str] = field(default_factory=list)
    gpus_per_node: int = 0

    def save(self) -> None:
        Path(self.state_dir, "state.json").write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, state_dir: Path) -> ClusterState:
        return cls(**json.loads((state_dir / "state.json").read_text()))


class ClusterError(RuntimeError):
    """The local control plane failed to start; the message names the component and its log."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def _terminate(pid: int, grace: float = 5.0) -> None:
    """SIGTERM the process group `pid` leads, then SIGKILL what is left after `grace`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not _alive(pid):
                return
            time.sleep(0.05)


def _kubeconfig(server: str, pki: Pki, user: str) -> dict[str, Any]:
    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kubetune-local", "cluster": {
            "server": server, "certificate-authority-data": b64(pki.ca_cert)}}],
        "users": [{"name": user, "user": {
            "client-certificate-data": b64(pki.cert(user)),
            "client-key-data": b64(pki.key(user))}}],
        "contexts": [{"name": "kubetune-local", "context": {
            "cluster": "kubetune-local", "user": user}}],
        "current-context": "kubetune-local",
    }


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

    def is_up(self) -> bool:
        if not (self.state_dir / "state.json").exists():
            return False
        return all(_alive(pid) for pid in self.state.pids.values())

    def log_path(self, component: str) -> Path:
        return self.state_dir / "logs" / f"{component}.log"

    # -- lifecycle -----------------------------------------------------------------
    def up(self, binaries: Binaries | None = None) -> float:
        """Start everything; return the seconds it took (binaries already built)."""
        if (self.state_dir / "state.json").exists():
            if self.is_up():
                raise ClusterError(f"a local cluster is already running in {self.state_dir}")
            self.down()
        binaries = binaries or find_binaries()
        started = time.monotonic()
        d = self.state_dir
        for sub in ("logs", "sd", "etcd", "prometheus", "pods"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        pki = make_pki(d / "pki", {
            "admin": "/O=system:masters/CN=kubetune-admin",
            "controller-manager": "/CN=system:kube-controller-manager",
            "scheduler": "/CN=system:kube-scheduler",
        })
        ports = {name: free_port() for name in (
            "etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler",
            "kwok", "prometheus")}
        server = f"https://127.0.0.1:{ports['apiserver']}"
        kubeconfigs = {}
        for user in ("admin", "controller-manager", "scheduler"):
            path = d / f"{user}.kubeconfig"
            path.write_text(yaml.safe_dump(_kubeconfig(server, pki, user)))
            path.chmod(0o600)
            kubeconfigs[user] = str(path)
        self._state = ClusterState(
            state_dir=str(d), kubeconfig=kubeconfigs["admin"], apiserver_url=server,
            prometheus_url=f"http://127.0.0.1:{ports['prometheus']}", ports=ports,
            gpus_per_node=self.config.gpus_per_node,
        )
        self._write_prometheus_config()
        cmds = self._commands(binaries, pki, ports, kubeconfigs)
        self._state.commands = cmds
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
        if not (self.state_dir / "state.json").exists():
            return
        state = self.state
        for name in reversed(list(state.pids)):
            _terminate(state.pids[name])
        if keep_logs:
            log.error("local cluster failed; logs kept in %s", self.state_dir / "logs")
            (self.state_dir / "state.json").unlink()
        else:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        self._state = None

    def stop(self, component: str) -> None:
        """Stop one component (e.g. "prometheus") to test how the operator copes."""
        pid = self.state.pids.pop(component)
        _terminate(pid)
        self.state.save()

    def start(self, component: str) -> None:
        """Start a component stopped by `stop()` again, with the same ports and data."""
        self._start(component)
        if component == "prometheus":
            self._wait_http(f"{self.prometheus_url}/-/ready", component)

    # -- internals -----------------------------------------------------------------
    def _write_prometheus_config(self) -> None:
        interval = self.config.scrape_interval
        config = {
            "global": {"scrape_interval": interval, "scrape_timeout": interval,
                       "evaluation_interval": interval},
            "scrape_configs": [{
                "job_name": "kubetune-trials",
                "file_sd_configs": [{"files": [str(self.state_dir / "sd" / "*.json")],
                                     "refresh_interval": "1s"}],
            }],
        }
        (self.state_dir / "prometheus.yml").write_text(yaml.safe_dump(config))

    def _commands(
        self, b: Binaries, pki: Pki, ports: dict[str, int], kc: dict[str, str]
    ) -> dict[str, list[str]]:
        d = self.state_dir
        etcd_url = f"http://127.0.0.1:{ports['etcd']}"
        peer_url = f"http://127.0.0.1:{ports['etcd-peer']}"
        common = ["--bind-address=127.0.0.1"]
        return {
            "etcd": [
                b.path("etcd"), "--name=kubetune", f"--data-dir={d / 'etcd'}",
                f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=kubetune={peer_url}", "--unsafe-no-fsync=true",
                "--log-level=warn", "--listen-metrics-urls=",
            ],
            "kube-apiserver": [
                b.path("kube-apiserver"), f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
                f"--secure-port={ports['apiserver']}",
                f"--tls-cert-file={pki.cert('serving')}",
                f"--tls-private-key-file={pki.key('serving')}",
                f"--client-ca-file={pki.ca_cert}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.sa_key}",
                f"--service-account-signing-key-file={pki.sa_key}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=Node,RBAC", "--allow-privileged=true",
                "--endpoint-reconciler-type=none", "--profiling=false",
                f"--cert-dir={d / 'pki'}",
            ],
            "kube-controller-manager": [
                b.path("kube-controller-manager"), f"--kubeconfig={kc['controller-manager']}",
                f"--authentication-kubeconfig={kc['controller-manager']}",
                f"--authorization-kubeconfig={kc['controller-manager']}",
                *common, f"--secure-port={ports['controller-manager']}",
                "--leader-elect=false", "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca_cert}", "--controllers=*",
                "--concurrent-gc-syncs=20",
            ],
            "kube-scheduler": [
                b.path("kube-scheduler"), f"--kubeconfig={kc['scheduler']}",
                f"--authentication-kubeconfig={kc['scheduler']}",
                f"--authorization-kubeconfig={kc['scheduler']}",
                *common, f"--secure-port={ports['scheduler']}", "--leader-elect=false",
            ],
            "kwok": [
                b.path("kwok"), f"--kubeconfig={kc['admin']}", f"--config={STAGES_FILE}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={NODE_ANNOTATION}=fake",
                "--node-lease-duration-seconds=40", "--cidr=10.244.0.0/16",
                "--node-ip=127.0.0.1", "--server-address=127.0.0.1:" + str(ports["kwok"]),
            ],
            "prometheus": [
                b.prometheus, f"--config.file={d / 'prometheus.yml'}",
                f"--storage.tsdb.path={d / 'prometheus'}",
                f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
                "--storage.tsdb.retention.time=1d", "--log.level=warn",
            ],
            "runner": [
                sys.executable, "-m", "kubetune.devcluster.runner",
                f"--kubeconfig={kc['admin']}", f"--state-dir={d}",
            ],
        }

    def _start(self, name: str) -> None:
        assert self._state is not None or (self.state_dir / "state.json").exists()
        state = self.state
        cmd = state.commands[name]
        out = open(self.log_path(name), "ab")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=self.state_dir,
        )
        out.close()
        state.pids[name] = proc.pid
        state.save()

    def _check_alive(self, name: str) -> None:
        pid = self.state.pids.get(name)
        if pid is not None and not _alive(pid):
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
                    "annotations": {NODE_ANNOTATION: "fake"},
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
