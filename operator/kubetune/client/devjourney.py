"""`kubetune dev`: one command from a fresh checkout to a tuned model and its plot.

On a running local cluster (the `kubetune dev` command starts or reuses it,
see `kubetune.client.cli.cluster`), it installs the CRDs, starts the operator
as a background process (its log in the cluster's state directory), applies an
example TuneExperiment, follows it to the end, and writes the learning-curve
plot. The operator it started is stopped again.

The cluster is known here only by the record it keeps (`contract.ClusterState`),
so this module does not import the dev cluster. Each step is a function of its
own, so tests can run the journey against a cluster and an operator they
already have (`start_operator=False`) and check `launch_operator` on its own.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
import yaml

from kubetune import contract
from kubetune.client.errors import KubetuneError
from kubetune.client.experiments import ExperimentClient
from kubetune.client.plot import render
from kubetune.client.tuner import wait_for_experiment
from kubetune.contract import ClusterState

if TYPE_CHECKING:
    from kubernetes import client as k8s

DEFAULT_EXAMPLE = Path("examples/mnist-asha.yaml")
DEFAULT_CHECKPOINT_ROOT = contract.DEFAULT_CHECKPOINT_ROOT  # the operator's default for trial pods

Say = Callable[[str], None]
Watch = Callable[[ExperimentClient, str], Mapping[str, Any]]


def _quiet(_: str) -> None:
    pass


def load_example(path: Path | str) -> dict[str, Any]:
    """The first TuneExperiment in a YAML file."""
    path = Path(path)
    if not path.is_file():
        raise KubetuneError(f"example {path} not found (run from the repository root, or pass "
                            "the manifest's path)")
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    except yaml.YAMLError as e:
        raise KubetuneError(f"{path} is not valid YAML: {e}") from None
    for document in documents:
        if isinstance(document, dict) and document.get("kind") == "TuneExperiment":
            return document
    raise KubetuneError(f"{path} holds no TuneExperiment")


def install_crds(api: k8s.ApiClient, timeout: float = 60.0) -> None:
    """Create or update the TuneExperiment and TuneTrial CRDs; wait until they serve."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from kubetune.api.crdgen import build_crds

    ext: Any = client.ApiextensionsV1Api(api)  # plain dicts in, typed models out
    for body in build_crds():
        name = body["metadata"]["name"]
        try:
            ext.create_custom_resource_definition(body)
        except ApiException as e:
            if e.status != 409:
                raise KubetuneError(f"cannot install CRD {name}: {e.reason}") from None
            current = ext.read_custom_resource_definition(name)
            body = {**body, "metadata": {**body["metadata"],
                                         "resourceVersion": current.metadata.resource_version}}
            ext.replace_custom_resource_definition(name, body)
        deadline = time.monotonic() + timeout
        while not any(c.type == "Established" and c.status == "True"
                      for c in (ext.read_custom_resource_definition(name).status.conditions or [])):
            if time.monotonic() > deadline:
                raise KubetuneError(f"CRD {name} not established after {timeout:.0f}s")
            time.sleep(0.1)


def ensure_namespace(api: k8s.ApiClient, namespace: str, timeout: float = 30.0) -> None:
    """Create the namespace if needed, and wait for its default ServiceAccount (pods need it)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core: Any = client.CoreV1Api(api)
    try:
        core.create_namespace({"metadata": {"name": namespace}})
    except ApiException as e:
        if e.status != 409:
            raise KubetuneError(f"cannot create namespace {namespace!r}: {e.reason}") from None
    deadline = time.monotonic() + timeout
    while not any(sa.metadata.name == "default"
                  for sa in core.list_namespaced_service_account(namespace).items):
        if time.monotonic() > deadline:
            raise KubetuneError(f"namespace {namespace!r} has no default ServiceAccount after "
                                f"{timeout:.0f}s")
        time.sleep(0.1)


@dataclass
class OperatorHandle:
    """An operator process started by `launch_operator`; `stop()` ends exactly it."""

    process: subprocess.Popen[bytes]
    log: Path
    health_port: int
    metrics_port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM its process group, SIGKILL after `grace` seconds.

        Killing is safe: the operator keeps no state outside the API, and a tick
        cut short is redone by the next operator to run.
        """
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            if not self.running():
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=wait)


def launch_operator(kubeconfig: Path, prometheus_url: str, log: Path, *,
                   namespaces: tuple[str, ...] = (), tick: float = 1.0,
                   timeout: float = 60.0) -> OperatorHandle:
    """Run `python -m kubetune` in the background; return once its /healthz answers."""
    metrics_port, health_port = _free_port(), _free_port()
    argv = [sys.executable, "-m", "kubetune", "--kubeconfig", str(kubeconfig),
            "--prometheus-url", prometheus_url, "--tick", str(tick),
            "--metrics-port", str(metrics_port), "--health-port", str(health_port)]
    for namespace in namespaces:
        argv += ["--namespace", namespace]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    handle = OperatorHandle(process, log, health_port, metrics_port)
    deadline = time.monotonic() + timeout
    while True:
        if not handle.running():
            tail = log.read_text(errors="replace")[-1500:]
            raise KubetuneError(f"the operator exited during start-up; {log} ends:\n{tail}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"http://127.0.0.1:{health_port}/healthz", timeout=1).ok:
                return handle
        if time.monotonic() > deadline:
            handle.stop()
            raise KubetuneError(f"the operator was not healthy after {timeout:.0f}s; see {log}")
        time.sleep(0.2)


def forget_checkpoints(experiment: Mapping[str, Any], namespace: str) -> int:
    """Remove local checkpoints left by an earlier run of this experiment.

    Trial names, and so checkpoint directories, repeat when an experiment is run
    again under the same name; its trials would otherwise resume the old run's
    checkpoints. Only for the local runner, whose trials write to this machine.
    """
    container = experiment["spec"]["trialTemplate"]["spec"]["containers"][0]
    root = next((e.get("value") for e in container.get("env") or []
                 if e.get("name") == contract.ENV_CHECKPOINT_ROOT), DEFAULT_CHECKPOINT_ROOT)
    directory = Path(root) / namespace
    pattern = re.compile(rf"^{re.escape(experiment['metadata']['name'])}-\d+$")
    removed = 0
    if directory.is_dir():
        for entry in directory.iterdir():
            if pattern.match(entry.name):
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
    return removed


def apply_fresh(client: ExperimentClient, experiment: Mapping[str, Any],
                say: Say = _quiet) -> dict[str, Any]:
    """Create the experiment, replacing an earlier run of the same name."""
    body = {**experiment, "metadata": {k: v for k, v in experiment["metadata"].items()
                                       if k in ("name", "labels", "annotations")}}
    name = body["metadata"]["name"]
    if client.experiment_exists(name):
        say(f"deleting the previous run of {client.namespace}/{name}")
        client.delete_experiment(name)
    if client.local is not None:
        forget_checkpoints(body, client.namespace)
    return client.create_experiment(body)


@dataclass
class DevResult:
    """What `kubetune dev` leaves behind."""

    experiment: dict[str, Any]
    plot: Path
    plot_source: str
    seconds: float
    cluster: ClusterState
    operator_log: Path | None
    namespace: str

    @property
    def phase(self) -> str | None:
        return (self.experiment.get("status") or {}).get("phase")

    @property
    def best(self) -> dict[str, Any]:
        return dict((self.experiment.get("status") or {}).get("bestTrial") or {})


def _default_plot_path(local: ClusterState, name: str) -> Path:
    # Beside the cluster's directory, so that `kubetune cluster down` leaves the plot.
    return Path(local.state_dir).parent / "plots" / f"{name}.png"


def run_dev(experiment: Mapping[str, Any], local: ClusterState, *, source: str,
            namespace: str = "default", start_operator: bool = True, timeout: float = 1800.0,
            plot_path: Path | None = None, watch: Watch | None = None,
            say: Say = _quiet) -> DevResult:
    """The whole journey on `local`; see the module docstring. `experiment` is the example
    (`load_example(source)`); `watch` shows progress until the end."""
    started = time.monotonic()
    name = experiment["metadata"]["name"]
    kubeconfig = Path(local.kubeconfig)
    operator: OperatorHandle | None = None
    client = ExperimentClient(kubeconfig, namespace=namespace)
    install_crds(client.api)
    ensure_namespace(client.api, namespace)
    try:
        if start_operator:
            log = contract.component_log_path(local.state_dir, "operator")
            operator = launch_operator(kubeconfig, local.prometheus_url, log,
                                       namespaces=(namespace,))
            say(f"operator running (pid {operator.pid}), log: {log}")
        apply_fresh(client, experiment, say)
        say(f"applied TuneExperiment {namespace}/{name} from {source}")
        if watch is not None:
            watch(client, name)
        final = wait_for_experiment(client, name, timeout=timeout)
    finally:
        if operator is not None:
            operator.stop()
            say("operator stopped")
    trials = client.list_trials(name)
    histories, plot_source = client.histories(final, trials)
    plot = render(final, trials, histories, plot_path or _default_plot_path(local, name),
                  source=plot_source)
    return DevResult(final, plot, plot_source, time.monotonic() - started, local,
                     operator.log if operator else None, namespace)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


__all__ = [
    "DEFAULT_EXAMPLE",
    "DevResult",
    "OperatorHandle",
    "apply_fresh",
    "ensure_namespace",
    "forget_checkpoints",
    "install_crds",
    "launch_operator",
    "load_example",
    "run_dev",
]
