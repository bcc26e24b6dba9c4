"""What the local control plane runs: each component's command line and config files.

Pure builders (paths and ports in, argv lists and dicts out), so the lifecycle in
`controlplane` only starts, waits and stops.
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Any

from kubetune.devcluster.binaries import Binaries
from kubetune.devcluster.pki import Pki

STAGES_FILE = Path(__file__).with_name("kwok-stages.yaml")
#: Annotation that hands a node to KWOK (the only nodes it manages).
NODE_ANNOTATION = "kwok.x-k8s.io/node"
#: The local ports the control plane listens on, one free port each.
PORTS = ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler", "kwok", "prometheus")
#: Users with a client certificate and a kubeconfig: name -> certificate subject.
USERS = {
    "admin": "/O=system:masters/CN=kubetune-admin",
    "controller-manager": "/CN=system:kube-controller-manager",
    "scheduler": "/CN=system:kube-scheduler",
}


def kubeconfig(server: str, pki: Pki, user: str) -> dict[str, Any]:
    """A kubeconfig for `user` with its certificate inline."""

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


def prometheus_config(state_dir: Path, interval: str) -> dict[str, Any]:
    """Scrape every target the runner registers in state_dir/sd, every `interval`."""
    return {
        "global": {"scrape_interval": interval, "scrape_timeout": interval,
                   "evaluation_interval": interval},
        "scrape_configs": [{
            "job_name": "kubetune-trials",
            "file_sd_configs": [{"files": [str(state_dir / "sd" / "*.json")],
                                 "refresh_interval": "1s"}],
        }],
    }


def commands(
    d: Path, b: Binaries, pki: Pki, ports: dict[str, int], kc: dict[str, str]
) -> dict[str, list[str]]:
    """Each component's argv; d is the state directory, kc the kubeconfig path of each user."""
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
