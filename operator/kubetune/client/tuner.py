"""The Python API for Ray Tune users: `Tuner(...).fit()` runs a TuneExperiment.

    import kubetune
    from kubetune import tune

    tuner = kubetune.Tuner(
        "registry.example.com/kubetune-trainer:0.1.0",
        command=["python", "-m", "kubetune_trainer"], args=["--dataset", "mnist"],
        resources={"nvidia.com/gpu": 1},
        param_space={"lr": tune.loguniform(1e-4, 1e-1), "hidden_size": tune.choice([64, 128])},
        tune_config=kubetune.TuneConfig(
            metric="accuracy", mode="max", num_samples=16, max_concurrent_trials=4,
            scheduler=kubetune.ASHAScheduler(max_t=9, grace_period=1, reduction_factor=3)),
        name="mnist-asha",
    )
    results = tuner.fit()                 # submits, shows progress, waits
    best = results.get_best_result()
    best.config, best.metrics

The trainable is a container image (or a pod template) whose trials call
`kubetune.trial.report()`, or a Python function `train_fn(config)` as in Ray, shipped
to the trials in a ConfigMap (`kubetune.client.functions`). `Tuner.to_manifest()`
gives the TuneExperiment to `kubectl apply` instead. The cluster is reached
through `ExperimentClient` (`kubetune.client.experiments`).
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubetune.api import GROUP, VERSION, validate_experiment_spec
from kubetune.client import domains, functions
from kubetune.client.config import FIFOScheduler, RunConfig, TuneConfig
from kubetune.client.errors import TuneError
from kubetune.client.experiments import ExperimentClient
from kubetune.client.ray_defaults import converted, run_fields, unwrap_trainable
from kubetune.client.results import ResultGrid
from kubetune.client.scaling import ScalingConfig, apply_scaling_config
from kubetune.client.searchers import search_algorithm_spec
from kubetune.contract import EXPERIMENT_TERMINAL_PHASES

if TYPE_CHECKING:
    from kubernetes import client as k8s

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_MAX_NAME = 50  # trial `<name>-<index>` and pod `<trial>-<attempt>` names must stay label-sized


def _quantity(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


_RESOURCE_NAMES = {"gpu": "nvidia.com/gpu", "GPU": "nvidia.com/gpu", "CPU": "cpu"}


class Tuner:
    """Ray's Tuner for a cluster: a TuneExperiment built from Ray's arguments.

    `trainable` is the container image every trial runs, or a pod template
    (a PodTemplateSpec dict, or a bare PodSpec with `containers`), or a function
    `train_fn(config)` that runs in `image` (`kubetune.client.functions`). `command`,
    `args`, `env` and `resources` apply to the first container; `resources`
    are limits such as {"nvidia.com/gpu": 1, "cpu": 2, "memory": "8Gi"}.
    """

    def __init__(self, trainable: str | Mapping[str, Any] | Callable[..., Any], *,
                 param_space: Mapping[str, Any],
                 tune_config: TuneConfig | None = None,
                 run_config: RunConfig | None = None,
                 name: str | None = None,
                 namespace: str | None = None,
                 command: Sequence[str] | None = None,
                 args: Sequence[str] | None = None,
                 env: Mapping[str, str] | None = None,
                 resources: Mapping[str, Any] | None = None,
                 scaling_config: ScalingConfig | None = None,
                 prometheus_url: str | None = None,
                 kubeconfig: str | Path | None = None,
                 api_client: k8s.ApiClient | None = None,
                 image: str | None = None) -> None:
        trainable, resources = unwrap_trainable(trainable, resources)  # with_resources
        # A function is shipped to the trials (kubetune.client.functions); image is its image.
        self.image = image
        self._shipment: functions.ShippedFunction | None = None
        if image is not None and not callable(trainable):
            raise ValueError("image= is the image a function trainable runs in; an image "
                             "trainable is the first argument")
        self.trainable = trainable
        self.param_space = dict(param_space)
        self.tune_config = converted(tune_config or TuneConfig())  # Ray's objects, converted
        self.run_config = run_config or RunConfig()
        self.name = name or self.run_config.name or \
            f"tune-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
        self.namespace = namespace
        self.command, self.args = command, args
        self.env, self.resources = env, resources
        self.scaling_config = scaling_config  # workers per trial (kubetune.client.scaling)
        self.prometheus_url = prometheus_url
        self.kubeconfig, self.api_client = kubeconfig, api_client
        if not _NAME.match(self.name) or len(self.name) > _MAX_NAME:
            raise ValueError(f"name {self.name!r} must be lowercase letters, digits and '-', "
                             f"start and end with a letter or digit, at most {_MAX_NAME} "
                             "characters (it names Kubernetes objects)")
        self._restored = False
        self._notices: list[str] = []

    @classmethod
    def restore(cls, name: str, *, namespace: str | None = None,
                kubeconfig: str | Path | None = None,
                api_client: k8s.ApiClient | None = None) -> Tuner:
        """A Tuner for an experiment already in the cluster: fit() waits for it."""
        tuner = cls("", param_space={"_": 0}, name=name, namespace=namespace,
                    kubeconfig=kubeconfig, api_client=api_client)
        tuner._restored = True
        return tuner

    # -- the manifest ---------------------------------------------------------------------
    def _objective(self) -> tuple[str, str]:
        tc, scheduler = self.tune_config, self.tune_config.scheduler
        metric = tc.metric or getattr(scheduler, "metric", None)
        mode = tc.mode or getattr(scheduler, "mode", None)
        for what, ours, theirs in (("metric", tc.metric, getattr(scheduler, "metric", None)),
                                   ("mode", tc.mode, getattr(scheduler, "mode", None))):
            if ours and theirs and ours != theirs:
                raise ValueError(f"TuneConfig({what}={ours!r}) and the scheduler's "
                                 f"{what}={theirs!r} differ; set it in TuneConfig only")
        if not metric or mode not in ("min", "max"):
            raise ValueError("TuneConfig(metric=..., mode='min'|'max') is required: the operator "
                             "ranks trials and prunes them by this metric")
        return metric, mode

    def _pod_template(self) -> dict[str, Any]:
        if callable(self.trainable):
            if self.command is not None or self.args is not None:
                raise ValueError("a function trainable runs under python -m kubetune.trial.launch"
                                 "; command= and args= are for an image trainable")
            template: dict[str, Any] = functions.pod_template(
                self._shipped(), self.name, self.image, self.env)
        elif isinstance(self.trainable, str):
            if not self.trainable:
                raise ValueError("the trainable image must not be empty")
            template = {"spec": {"containers": [
                {"name": "trial", "image": self.trainable}]}}
        elif "containers" in self.trainable:
            template = {"spec": json.loads(json.dumps(self.trainable))}
        elif "spec" in self.trainable:
            template = json.loads(json.dumps(self.trainable))
        else:
            raise ValueError("a pod template needs spec.containers (a PodTemplateSpec) or "
                             "containers (a PodSpec)")
        main = template["spec"]["containers"][0]
        if self.command is not None:
            main["command"] = [str(c) for c in self.command]
        if self.args is not None:
            main["args"] = [str(a) for a in self.args]
        if self.env:
            env = [e for e in main.get("env") or [] if e.get("name") not in self.env]
            main["env"] = env + [{"name": k, "value": str(v)} for k, v in self.env.items()]
        if self.resources:
            limits = main.setdefault("resources", {}).setdefault("limits", {})
            for key, value in self.resources.items():
                limits[_RESOURCE_NAMES.get(key, key)] = _quantity(value)
        return template

    def to_manifest(self) -> dict[str, Any]:
        """The TuneExperiment this Tuner submits, validated, ready for kubectl apply."""
        if self._restored:
            raise TuneError(f"{self.name!r} was restored from the cluster; read its manifest "
                            f"with kubectl get tx {self.name} -o yaml")
        tc, rc = self.tune_config, self.run_config
        metric, mode = self._objective()
        spec: dict[str, Any] = {
            "objective": {"metric": metric, "mode": mode},
            "searchSpace": domains.search_space(self.param_space),
            "numSamples": tc.num_samples,
            "scheduler": (tc.scheduler or FIFOScheduler()).to_spec(),
            "trialTemplate": self._pod_template(),
        }
        algorithm = search_algorithm_spec(tc.search_alg, tc.seed)
        if algorithm:
            spec["searchAlgorithm"] = algorithm
        # Ray's defaults where the CRD's differ (ray_defaults.py); fit() prints a notice.
        fields, self._notices = run_fields(tc, rc, spec["searchSpace"])
        spec.update(fields)
        if self.prometheus_url:
            spec["prometheus"] = {"url": self.prometheus_url}
        if rc.storage_path is not None:
            if not rc.storage_path.startswith("pvc://"):
                raise ValueError(f"RunConfig(storage_path={rc.storage_path!r}): write "
                                 "pvc://<claim> to name a PersistentVolumeClaim")
            spec["storage"] = {"persistentVolumeClaim": {"claimName": rc.storage_path[6:]}}
        if self.scaling_config is not None:
            apply_scaling_config(spec, self.scaling_config, self.param_space)
        validate_experiment_spec(spec)  # raises SpecError naming the field and the fix
        metadata: dict[str, Any] = {"name": self.name}
        if callable(self.trainable):
            metadata["annotations"] = functions.experiment_annotations(self._shipped())
        if self.namespace:
            metadata["namespace"] = self.namespace
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TuneExperiment",
                "metadata": metadata, "spec": spec}

    def function_config_map(self) -> dict[str, Any]:
        """For kubectl apply beside to_manifest(): the ConfigMap a function trainable's trials
        mount (fit() makes the experiment its owner; applied by hand it is not owned)."""
        if not callable(self.trainable):
            raise ValueError("only a function trainable is shipped in a ConfigMap")
        body = functions.config_map(self._shipped(), self.name)
        if self.namespace:
            body["metadata"]["namespace"] = self.namespace
        return body

    # -- running it -------------------------------------------------------------------------
    def client(self) -> ExperimentClient:
        return ExperimentClient(self.kubeconfig, namespace=self.namespace,
                                prometheus_url=self.prometheus_url, api_client=self.api_client)

    def submit(self) -> ExperimentClient:
        """Create the TuneExperiment (or find the identical one already there); don't wait."""
        client = self.client()
        if self._restored:
            client.get_experiment(self.name)
            return client
        body = self.to_manifest()
        body["metadata"].pop("namespace", None)
        if client.experiment_exists(self.name):
            current = client.get_experiment(self.name)
            if validate_experiment_spec(current["spec"]) != validate_experiment_spec(body["spec"]):
                raise TuneError(
                    f"TuneExperiment {self.name!r} already exists in namespace "
                    f"{client.namespace!r} with another spec: pick another name, or delete it "
                    f"(kubectl delete tx {self.name} -n {client.namespace})")
            if callable(self.trainable):
                functions.ship_after_create(client, self._shipped(), current)
            return client
        if callable(self.trainable):
            functions.ship_before_create(client, self._shipped(), self.name)
        created = client.create_experiment(body)
        if callable(self.trainable):
            functions.ship_after_create(client, self._shipped(), created)
        return client

    def _shipped(self) -> functions.ShippedFunction:
        """The function trainable as the trials get it; refused here with the reason."""
        if self._shipment is None:
            self._shipment = functions.ship_function(self.trainable)
        return self._shipment

    def fit(self, *, progress: bool = True, timeout: float | None = None,
            poll_interval: float = 1.0) -> ResultGrid:
        """Submit the experiment, wait for it to finish, return its results.

        Fitting again with the same name and spec attaches to the experiment
        already there instead of starting another. A Failed experiment returns
        its ResultGrid too (see .phase and .errors), as Ray does.
        """
        client = self.submit()
        for notice in self._notices:
            sys.stderr.write(f"kubetune: {notice}\n")
        wait_for_experiment(client, self.name, timeout=timeout, interval=poll_interval,
                            progress=progress)
        return client.results(self.name)

    def get_results(self) -> ResultGrid:
        """The experiment's results as they stand now, without waiting."""
        return self.client().results(self.name)


def wait_for_experiment(client: ExperimentClient, name: str, *, timeout: float | None = None,
                        interval: float = 1.0, progress: bool = False) -> dict[str, Any]:
    """Poll until the experiment's phase is Succeeded or Failed; return it."""
    deadline = None if timeout is None else time.monotonic() + timeout
    bar = _ProgressBar(name) if progress else None
    try:
        while True:
            experiment = client.get_experiment(name)
            status = experiment.get("status") or {}
            if bar is not None:
                bar.update(status)
            if status.get("phase") in EXPERIMENT_TERMINAL_PHASES:
                return experiment
            if deadline is not None and time.monotonic() > deadline:
                raise TuneError(f"TuneExperiment {name!r} still {status.get('phase') or 'Pending'}"
                                f" after {timeout:.0f}s ({status.get('message', 'no status')})")
            time.sleep(interval)
    finally:
        if bar is not None:
            bar.close()


class _ProgressBar:
    """A one-line progress bar on stderr while fit() waits."""

    def __init__(self, name: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._progress = Progress(TextColumn("[bold]{task.fields[name]}"), BarColumn(),
                                  MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                                  console=Console(file=sys.stderr), transient=False)
        self._task = self._progress.add_task("", total=None, name=name, info="waiting")
        self._progress.start()

    def update(self, status: Mapping[str, Any]) -> None:
        counts = status.get("trials") or {}
        done = sum(int(counts.get(k, 0)) for k in ("succeeded", "pruned", "failed"))
        best = status.get("bestTrial") or {}
        info = f"{counts.get('running', 0)} running, {counts.get('pruned', 0)} pruned"
        if best:
            info += f", best {best.get('name')} = {best.get('metric'):.4g}"
        self._progress.update(self._task, total=counts.get("total") or None, completed=done,
                              info=f"{status.get('phase') or 'Pending'}: {info}")

    def close(self) -> None:
        self._progress.stop()


__all__ = ["Tuner", "wait_for_experiment"]
