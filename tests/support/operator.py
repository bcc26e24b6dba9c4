"""Run the real operator (`python -m kubetune`) as a process the tests can kill."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
from kubernetes import client

from kubetune.devcluster import LocalCluster
from kubetune.devcluster.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
SCRIPTED_TRIAL = ROOT / "tests" / "support" / "scripted_trial.py"
CHECKPOINT_ROOT = "/tmp/kubetune-test-checkpoints"


def install_crds(api: client.ApiClient) -> None:
    import yaml

    ext = client.ApiextensionsV1Api(api)
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        try:
            ext.create_custom_resource_definition(body)
        except client.exceptions.ApiException as e:
            if e.status != 409:
                raise
            current = ext.read_custom_resource_definition(body["metadata"]["name"])
            body["metadata"]["resourceVersion"] = current.metadata.resource_version
            ext.replace_custom_resource_definition(body["metadata"]["name"], body)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            crd = ext.read_custom_resource_definition(body["metadata"]["name"])
            if any(c.type == "Established" and c.status == "True"
                   for c in (crd.status.conditions or [])):
                break
            time.sleep(0.1)


class OperatorProcess:
    """`python -m kubetune` against the test cluster; `name` names its log (operator.log by
    default), `args` are extra flags (e.g. --leader-elect)."""

    def __init__(self, cluster: LocalCluster, log_dir: Path, tick: float = 1.0,
                 env: dict[str, str] | None = None, kubeconfig: Path | None = None,
                 args: list[str] | None = None, name: str = "operator") -> None:
        self.cluster = cluster
        self.log = log_dir / f"{name}.log"
        self.tick = tick
        self.env = env or {}
        self.args = args or []
        self.kubeconfig = kubeconfig or cluster.kubeconfig
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_port = 0
        self.health_port = 0

    def start(self) -> None:
        self.metrics_port, self.health_port = free_port(), free_port()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kubetune", "--kubeconfig", str(self.kubeconfig),
                 "--prometheus-url", self.cluster.prometheus_url, "--tick", str(self.tick),
                 "--metrics-port", str(self.metrics_port), "--health-port", str(self.health_port),
                 *self.args],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, **self.env})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"operator exited; see {self.log}"
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1).ok:
                    return
            time.sleep(0.2)
        raise AssertionError(f"operator not healthy after 60s; see {self.log}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)
        self.proc = None

    def metrics(self) -> str:
        return requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text


@contextlib.contextmanager
def session_operator_stopped(proc: OperatorProcess) -> Iterator[None]:
    """The session's operator stopped for a block, for tests that run operators of their own
    (it would act on their experiments too), and started again after it."""
    proc.kill()
    try:
        yield
    finally:
        proc.start()


def leader_elected_operators(cluster: LocalCluster, log_dir: Path, count: int, *,
                             lease: str, tick: float = 1.0, duration: int = 4,
                             renew: int = 3, retry: int = 1) -> list[OperatorProcess]:
    """`count` operators (not started) competing for the Lease `lease` in `default`, each
    with its own identity (`op-0`, `op-1`, ... and a random suffix) and log."""
    env = {"KUBETUNE_LEASE_DURATION_SECONDS": str(duration),
           "KUBETUNE_LEASE_RENEW_DEADLINE_SECONDS": str(renew),
           "KUBETUNE_LEASE_RETRY_PERIOD_SECONDS": str(retry)}
    return [OperatorProcess(cluster, log_dir, tick=tick, name=f"op-{i}",
                            env={**env, "KUBETUNE_POD_NAME": f"op-{i}"},
                            args=["--leader-elect", "--lease-name", lease,
                                  "--lease-namespace", "default"])
            for i in range(count)]


def scripted_experiment(name: str, qualities: list[float], *, concurrency: int = 3,
                        steps: int = 9, sleep: float = 0.2, scheduler: dict[str, Any] | None = None,
                        extra_space: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    """A TuneExperiment whose trials run tests/support/scripted_trial.py."""
    return {
        "apiVersion": "kubetune.io/v1alpha1", "kind": "TuneExperiment",
        "metadata": {"name": name},
        "spec": {
            "objective": {"metric": "accuracy", "mode": "max"},
            "searchSpace": {"quality": {"grid": qualities}, "steps": {"value": steps},
                            "sleep": {"value": sleep}, **(extra_space or {})},
            "numSamples": 1,
            "maxConcurrentTrials": concurrency,
            "scheduler": scheduler or {"type": "asha", "maxT": steps, "gracePeriod": 1,
                                       "reductionFactor": 3},
            "pruneGracePeriodSeconds": 5,
            "trialTemplate": {"spec": {"containers": [{
                "name": "trial", "image": "kubetune/scripted:test",
                "command": ["python", str(SCRIPTED_TRIAL)],
                "env": [{"name": "KUBETUNE_LINGER_SECONDS", "value": "3"},
                        {"name": "KUBETUNE_CHECKPOINT_ROOT", "value": CHECKPOINT_ROOT}],
                "resources": {"limits": {"nvidia.com/gpu": "1"}},
            }]}},
            **spec,
        },
    }
