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

The trainable is a container image (or a pod template), not a Python function:
each trial is a pod that calls `kubetune.trial.report()`. `Tuner.to_manifest()`
gives the TuneExperiment to `kubectl apply` instead. `ExperimentClient` is the
one place that talks to the cluster for the CLI, the Tuner and `kubetune dev`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from kubetune.api import EXPERIMENT_PLURAL, GROUP, TRIAL_PLURAL, VERSION, validate_experiment_spec
from kubetune.client import domains as tune
from kubetune.client.plot import History, HistoryUnavailable, fetch_history, trial_history
from kubetune.contract import (
    ENV_PROMETHEUS_URL,
    EXPERIMENT_LABEL,
    TRIAL_LABEL,
)
from kubetune.contract import EXPERIMENT_TERMINAL_PHASES as TERMINAL_PHASES

if TYPE_CHECKING:
    import pandas as pd
    from kubernetes import client as k8s

    from kubetune.devcluster import LocalCluster

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_MAX_NAME = 50  # trial `<name>-<index>` and pod `<trial>-<attempt>` names must stay label-sized


# -- errors a user can act on ---------------------------------------------------------------


class KubetuneError(Exception):
    """A problem the user can fix; str() is one line saying what and how."""


class ExperimentNotFound(KubetuneError):
    pass


class ClusterUnreachable(KubetuneError):
    pass


class TuneError(KubetuneError):
    """The experiment could not be run as asked (it failed, or timed out)."""


# -- reaching the cluster ---------------------------------------------------------------------


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
    local = _running_local_cluster()
    if local is not None:
        return local.kubeconfig
    home = Path.home() / ".kube" / "config"
    if home.is_file():
        return home
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return None
    raise KubetuneError("no kubeconfig found: pass --kubeconfig or set $KUBECONFIG, or start a "
                        "local cluster with `kubetune cluster up`")


def _running_local_cluster(state_dir: Path | None = None) -> LocalCluster | None:
    from kubetune.devcluster import ClusterConfig, LocalCluster

    local = LocalCluster(ClusterConfig(state_dir=state_dir) if state_dir else None)
    try:
        return local if local.is_up() else None
    except (OSError, ValueError, TypeError):
        return None


def local_cluster_for(kubeconfig: Path | None) -> LocalCluster | None:
    """The running local cluster whose admin kubeconfig this is (its pod logs are local files)."""
    if kubeconfig is None:
        return None
    local = _running_local_cluster(kubeconfig.resolve().parent)
    if local is not None and local.kubeconfig.resolve() == kubeconfig.resolve():
        return local
    return None


def _context_namespace(kubeconfig: Path | None) -> str:
    if kubeconfig is None:
        token_ns = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        return token_ns.read_text().strip() if token_ns.is_file() else "default"
    from kubernetes import config

    try:
        _, current = config.list_kube_config_contexts(config_file=str(kubeconfig))
    except (config.ConfigException, OSError, TypeError, ValueError):
        return "default"
    return str((current or {}).get("context", {}).get("namespace") or "default")


def _api_client(kubeconfig: Path | None) -> k8s.ApiClient:
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        if kubeconfig is None:
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(config_file=str(kubeconfig),
                                    client_configuration=configuration)
    except (config.ConfigException, OSError, ValueError) as e:
        raise KubetuneError(f"cannot use kubeconfig {kubeconfig}: {e}") from None
    configuration.retries = 1  # an unreachable server fails in seconds, not after 3 retries
    return client.ApiClient(configuration)


def _api_host(api: k8s.ApiClient) -> str:
    return str(getattr(api.configuration, "host", "") or "the Kubernetes API")


_TIMEOUT = (5, 60)  # (connect, read) seconds


class ExperimentClient:
    """Reads and writes TuneExperiments, TuneTrials and trial pods in one namespace."""

    def __init__(self, kubeconfig: str | Path | None = None, *, namespace: str | None = None,
                 prometheus_url: str | None = None, api_client: k8s.ApiClient | None = None
                 ) -> None:
        if api_client is None:
            self.kubeconfig = resolve_kubeconfig(kubeconfig)
            self.api = _api_client(self.kubeconfig)
        else:
            self.kubeconfig = Path(kubeconfig) if kubeconfig else None
            self.api = api_client
        self.namespace = namespace or _context_namespace(self.kubeconfig)
        self.local = local_cluster_for(self.kubeconfig)
        self._prometheus_url = prometheus_url

    @contextlib.contextmanager
    def _errors(self, what: str, name: str | None = None) -> Iterator[None]:
        """Turn client exceptions into one-line KubetuneErrors."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            yield
        except ApiException as e:
            raise self._api_error(e, what, name) from None
        except (HTTPError, OSError) as e:
            reason = getattr(e, "reason", None) or e
            raise ClusterUnreachable(
                f"cannot reach the Kubernetes API at {_api_host(self.api)}: {reason}") from None

    def _api_error(self, e: Any, what: str, name: str | None) -> KubetuneError:
        details: dict[str, Any] = {}
        with contextlib.suppress(TypeError, ValueError):
            details = json.loads(e.body or "{}").get("details") or {}
        if e.status == 404 and name and details.get("name") == name:
            return ExperimentNotFound(f"{what} {name!r} not found in namespace {self.namespace!r}")
        if e.status == 404:
            return KubetuneError(
                f"the cluster at {_api_host(self.api)} has no {what} resource: install kubetune's "
                "CRDs (helm install kubetune charts/kubetune, or kubectl apply -f crds/)")
        if e.status in (401, 403):
            return KubetuneError(f"not allowed to read or write {what} in namespace "
                                 f"{self.namespace!r}: {e.reason} ({_message(e)})")
        return KubetuneError(f"{what}: {e.status} {e.reason}: {_message(e)}")

    # Any: the client's generated types describe typed models; we pass and get plain dicts.
    def _custom(self) -> Any:
        from kubernetes import client

        return client.CustomObjectsApi(self.api)

    def _core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.api)

    # -- experiments and trials -------------------------------------------------------
    def get_experiment(self, name: str) -> dict[str, Any]:
        with self._errors("TuneExperiment", name):
            return dict(self._custom().get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, EXPERIMENT_PLURAL, name,
                _request_timeout=_TIMEOUT))

    def create_experiment(self, body: Mapping[str, Any]) -> dict[str, Any]:
        with self._errors("TuneExperiment"):
            return dict(self._custom().create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, EXPERIMENT_PLURAL, dict(body),
                _request_timeout=_TIMEOUT))

    def experiment_exists(self, name: str) -> bool:
        try:
            self.get_experiment(name)
        except ExperimentNotFound:
            return False
        return True

    def delete_experiment(self, name: str, wait: float = 120.0) -> None:
        """Delete it (its trials and pods go with it) and wait until it is gone."""
        with self._errors("TuneExperiment", name):
            self._custom().delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace, EXPERIMENT_PLURAL, name,
                propagation_policy="Foreground", _request_timeout=_TIMEOUT)
        deadline = time.monotonic() + wait
        while self.experiment_exists(name):
            if time.monotonic() > deadline:
                raise TuneError(f"TuneExperiment {name!r} still exists {wait:.0f}s after its "
                                "deletion; is an operator running to remove its finalizer?")
            time.sleep(0.5)

    def list_trials(self, experiment: str) -> list[dict[str, Any]]:
        """The experiment's TuneTrials, by index."""
        with self._errors("TuneTrial"):
            items = self._custom().list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, TRIAL_PLURAL,
                label_selector=f"{EXPERIMENT_LABEL}={experiment}",
                _request_timeout=_TIMEOUT)["items"]
        return sorted(items, key=lambda t: (t.get("spec") or {}).get("index", 0))

    def get_trial(self, name: str) -> dict[str, Any]:
        with self._errors("TuneTrial", name):
            return dict(self._custom().get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, TRIAL_PLURAL, name, _request_timeout=_TIMEOUT))

    # -- logs ------------------------------------------------------------------------
    def trial_pods(self, trial: str) -> list[str]:
        """Names of the trial's pods that still exist, oldest attempt first."""
        with self._errors("Pod"):
            pods = self._core().list_namespaced_pod(
                self.namespace, label_selector=f"{TRIAL_LABEL}={trial}",
                _request_timeout=_TIMEOUT).items
        return sorted((p.metadata.name for p in pods), key=_attempt_of)

    def trial_log(self, trial: str, attempt: int | None = None) -> tuple[str, str]:
        """(pod name, its log) of the trial's latest attempt, or of `attempt`."""
        status = self.get_trial(trial).get("status") or {}
        pods = self.trial_pods(trial)
        if attempt is not None:
            pod = f"{trial}-{attempt}"
        elif status.get("attempts"):  # podName can still name an earlier attempt's pod
            pod = f"{trial}-{status['attempts']}"
        elif status.get("podName"):
            pod = str(status["podName"])
        elif pods:
            pod = pods[-1]
        else:
            raise KubetuneError(f"trial {trial!r} has no pod yet")
        if self.local is not None:
            path = Path(self.local.state_dir) / "pods" / self.namespace / f"{pod}.log"
            if not path.is_file():
                raise KubetuneError(f"no log for pod {pod!r} (looked for {path})")
            return pod, path.read_text(errors="replace")
        if pod not in pods:
            raise KubetuneError(f"pod {pod!r} of trial {trial!r} no longer exists, so its log is "
                                "gone (pruned trials' pods are deleted)")
        with self._errors("Pod", pod):
            return pod, str(self._core().read_namespaced_pod_log(
                pod, self.namespace, _request_timeout=_TIMEOUT))

    # -- metrics history ---------------------------------------------------------------
    def prometheus_url(self, experiment: Mapping[str, Any] | None = None) -> str | None:
        """--prometheus-url, else $KUBETUNE_PROMETHEUS_URL, the experiment's, the local cluster's."""
        if self._prometheus_url:
            return self._prometheus_url
        if os.environ.get(ENV_PROMETHEUS_URL):
            return os.environ[ENV_PROMETHEUS_URL]
        spec_url = (((experiment or {}).get("spec") or {}).get("prometheus") or {}).get("url")
        if spec_url:
            return str(spec_url)
        return self.local.prometheus_url if self.local is not None else None

    def histories(self, experiment: Mapping[str, Any], trials: Sequence[Mapping[str, Any]]
                  ) -> tuple[dict[str, History], str]:
        """Each trial's metrics by step, and a note saying where they came from."""
        objective = experiment["spec"]["objective"]["metric"]
        name = experiment["metadata"]["name"]
        url = self.prometheus_url(experiment)
        scraped: dict[str, History] = {}
        if url is None:
            note = "curves: rung values and final metrics (no Prometheus URL given)"
        else:
            start = _timestamp(experiment["metadata"].get("creationTimestamp")) or time.time() - 3600
            finished = _timestamp((experiment.get("status") or {}).get("completionTime"))
            end = min(time.time(), (finished or time.time()) + 60)
            try:
                scraped = fetch_history(url, self.namespace, name, start - 5, end)
                note = f"curves: Prometheus ({url}) + TuneTrial records"
            except HistoryUnavailable as e:
                note = f"curves: rung values and final metrics ({e})"
        return ({t["metadata"]["name"]: trial_history(t, objective, scraped.get(t["metadata"]["name"]))
                 for t in trials}, note)

    def results(self, name: str) -> ResultGrid:
        experiment = self.get_experiment(name)
        return ResultGrid(experiment, self.list_trials(name), client=self)


def _message(e: Any) -> str:
    with contextlib.suppress(TypeError, ValueError):
        return str(json.loads(e.body or "{}").get("message") or e.reason)
    return str(e.reason)


def _attempt_of(pod: str) -> int:
    tail = pod.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _timestamp(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# -- Ray's configuration objects ------------------------------------------------------------


@dataclass
class FIFOScheduler:
    """Every trial runs to the end (Ray's FIFOScheduler)."""

    def to_spec(self) -> dict[str, Any]:
        return {"type": "fifo"}


@dataclass
class ASHAScheduler:
    """Ray's ASHAScheduler (AsyncHyperBandScheduler): prunes trials at geometric rungs.

    time_attr is the step passed to kubetune.trial.report(step=...).
    decision_order="trialIndex" makes decisions independent of timing (see the CRD).
    """

    time_attr: str = "training_iteration"
    metric: str | None = None
    mode: Literal["min", "max"] | None = None
    max_t: int = 100
    grace_period: int = 1
    reduction_factor: float = 4
    brackets: int = 1
    decision_order: Literal["arrival", "trialIndex"] = "arrival"

    def to_spec(self) -> dict[str, Any]:
        return {"type": "asha", "timeAttr": self.time_attr, "maxT": self.max_t,
                "gracePeriod": self.grace_period, "reductionFactor": self.reduction_factor,
                "brackets": self.brackets, "decisionOrder": self.decision_order}


AsyncHyperBandScheduler = ASHAScheduler


@dataclass
class MedianStoppingRule:
    """Ray's MedianStoppingRule: stop a trial below the median of the others at its step."""

    time_attr: str = "training_iteration"
    metric: str | None = None
    mode: Literal["min", "max"] | None = None
    grace_period: int = 1
    min_samples_required: int = 3

    def to_spec(self) -> dict[str, Any]:
        return {"type": "median", "timeAttr": self.time_attr, "gracePeriod": self.grace_period,
                "minSamplesRequired": self.min_samples_required}


Scheduler = FIFOScheduler | ASHAScheduler | MedianStoppingRule


@dataclass
class TuneConfig:
    """Ray's TuneConfig. search_alg is "random" (Ray's BasicVariantGenerator) or "grid"."""

    metric: str | None = None
    mode: Literal["min", "max"] | None = None
    search_alg: Literal["random", "grid"] | None = None
    scheduler: Scheduler | None = None
    num_samples: int = 1
    max_concurrent_trials: int | None = None
    seed: int | None = None


@dataclass
class FailureConfig:
    """Ray's FailureConfig: max_failures retries per trial (trialRetries); fail_fast stops
    the experiment at the first failed trial; max_failed_trials is maxFailedTrials."""

    max_failures: int = 0
    fail_fast: bool = False
    max_failed_trials: int | None = None


@dataclass
class RunConfig:
    """Ray's RunConfig: the experiment's name and its failure handling."""

    name: str | None = None
    failure_config: FailureConfig | None = None


# -- results ------------------------------------------------------------------------------


@dataclass
class TrialError:
    """Why a trial failed (ResultGrid.errors)."""

    trial_name: str
    message: str

    def __str__(self) -> str:
        return f"{self.trial_name}: {self.message}"


@dataclass
class Result:
    """One trial's outcome, as Ray's Result: config, last metrics, history."""

    trial_name: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    state: str
    path: str
    """namespace/name of the TuneTrial (kubectl get tunetrial -n NAMESPACE NAME)."""
    error: TrialError | None = None
    pruned_at: dict[str, Any] | None = None
    _history: History | None = field(default=None, repr=False)
    _load_history: Any = field(default=None, repr=False)

    @property
    def metrics_dataframe(self) -> pd.DataFrame:
        """Every report known for this trial: one row per step (Prometheus, rungs, final)."""
        import pandas as pd

        if self._history is None and self._load_history is not None:
            self._history = self._load_history(self.trial_name)
        rows = [{"training_iteration": step, **m} for step, m in (self._history or {}).items()]
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        return (f"Result(trial_name={self.trial_name!r}, state={self.state!r}, "
                f"metrics={self.metrics!r}, config={self.config!r})")


class ResultGrid:
    """The trials of a finished (or running) experiment, as Ray's ResultGrid."""

    def __init__(self, experiment: Mapping[str, Any], trials: Sequence[Mapping[str, Any]],
                 client: ExperimentClient | None = None) -> None:
        self.experiment = dict(experiment)
        self.name: str = experiment["metadata"]["name"]
        self.namespace: str = experiment["metadata"].get("namespace", "")
        self.status: dict[str, Any] = dict(experiment.get("status") or {})
        objective = experiment["spec"]["objective"]
        self.metric: str = objective["metric"]
        self.mode: str = objective["mode"]
        self._client = client
        self._histories: dict[str, History] | None = None
        self._results = [self._result(t) for t in trials]

    def _result(self, trial: Mapping[str, Any]) -> Result:
        status = trial.get("status") or {}
        name = trial["metadata"]["name"]
        metrics: dict[str, Any] = dict(status.get("metrics") or {})
        if status.get("step") is not None:
            metrics["training_iteration"] = status["step"]
        error = None
        if status.get("state") == "Failed":
            error = TrialError(name, str(status.get("message") or status.get("reason") or "failed"))
        return Result(trial_name=name, config=dict(trial["spec"].get("params") or {}),
                      metrics=metrics, state=str(status.get("state") or "Pending"),
                      path=f"{self.namespace}/{name}", error=error,
                      pruned_at=status.get("prunedAt"),
                      _history=trial_history(trial, self.metric) if self._client is None else None,
                      _load_history=self._history_of if self._client is not None else None)

    def _history_of(self, trial: str) -> History:
        if self._histories is None:
            assert self._client is not None
            trials = self._client.list_trials(self.name)
            self._histories, _ = self._client.histories(self.experiment, trials)
        return self._histories.get(trial, {})

    @property
    def phase(self) -> str | None:
        return self.status.get("phase")

    def __len__(self) -> int:
        return len(self._results)

    def __iter__(self) -> Iterator[Result]:
        return iter(self._results)

    def __getitem__(self, i: int) -> Result:
        return self._results[i]

    @property
    def errors(self) -> list[TrialError]:
        return [r.error for r in self._results if r.error is not None]

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    @property
    def num_terminated(self) -> int:
        return sum(1 for r in self._results if r.state in ("Succeeded", "Pruned"))

    def get_best_result(self, metric: str | None = None, mode: str | None = None,
                        scope: Literal["last", "all"] = "last",
                        filter_nan_and_inf: bool = True) -> Result:
        """The experiment's bestTrial by default (the operator's choice among completed
        trials); with another metric, mode or scope, the best over all trials that report it."""
        best_name = (self.status.get("bestTrial") or {}).get("name")
        if metric in (None, self.metric) and mode in (None, self.mode) and scope == "last" \
                and best_name:
            return next(r for r in self._results if r.trial_name == best_name)
        metric, mode = metric or self.metric, mode or self.mode
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        sign = 1.0 if mode == "max" else -1.0
        scored: list[tuple[float, Result]] = []
        for r in self._results:
            if scope == "all":
                history = r._history if r._load_history is None else self._history_of(r.trial_name)
                values = [m[metric] for m in (history or {}).values() if metric in m]
                value = max((sign * v for v in values if math.isfinite(v)), default=None)
                if value is not None:
                    scored.append((value, r))
                continue
            v = r.metrics.get(metric)
            if isinstance(v, int | float) and (math.isfinite(v) or not filter_nan_and_inf):
                scored.append((sign * float(v), r))
        if not scored:
            raise TuneError(f"no trial of {self.name!r} has reported {metric!r} yet")
        return max(scored, key=lambda s: s[0])[1]

    def get_dataframe(self, filter_metric: str | None = None,
                      filter_mode: str | None = None) -> pd.DataFrame:
        """One row per trial: name, state, last metrics and config/<param> columns, as Ray.
        With filter_metric and filter_mode, a trial's row holds its best report of that
        metric (from its history) instead of its last."""
        import pandas as pd

        rows = []
        for r in self._results:
            metrics = dict(r.metrics)
            if filter_metric and filter_mode in ("min", "max"):
                frame = r.metrics_dataframe
                if filter_metric in frame:
                    frame = frame.dropna(subset=[filter_metric])
                    if len(frame):
                        pick = frame[filter_metric].idxmax() if filter_mode == "max" \
                            else frame[filter_metric].idxmin()
                        metrics = {k: v for k, v in frame.loc[pick].items() if pd.notna(v)}
            rows.append({"trial_name": r.trial_name, "state": r.state, **metrics,
                         **{f"config/{k}": v for k, v in _flatten(r.config).items()}})
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        return f"ResultGrid({self.namespace}/{self.name}: {len(self)} trials, phase={self.phase})"


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# -- the Tuner -----------------------------------------------------------------------------


def _quantity(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


_RESOURCE_NAMES = {"gpu": "nvidia.com/gpu", "GPU": "nvidia.com/gpu", "CPU": "cpu"}


class Tuner:
    """Ray's Tuner for a cluster: a TuneExperiment built from Ray's arguments.

    `trainable` is the container image every trial runs, or a pod template
    (a PodTemplateSpec dict, or a bare PodSpec with `containers`). `command`,
    `args`, `env` and `resources` apply to the first container; `resources`
    are limits such as {"nvidia.com/gpu": 1, "cpu": 2, "memory": "8Gi"}.
    """

    def __init__(self, trainable: str | Mapping[str, Any], *,
                 param_space: Mapping[str, Any],
                 tune_config: TuneConfig | None = None,
                 run_config: RunConfig | None = None,
                 name: str | None = None,
                 namespace: str | None = None,
                 command: Sequence[str] | None = None,
                 args: Sequence[str] | None = None,
                 env: Mapping[str, str] | None = None,
                 resources: Mapping[str, Any] | None = None,
                 prometheus_url: str | None = None,
                 kubeconfig: str | Path | None = None,
                 api_client: k8s.ApiClient | None = None) -> None:
        if callable(trainable):
            raise TypeError(
                "kubetune runs each trial as a pod, so the trainable is a container image (with "
                "command=[...]) or a pod template, not a Python function; inside the container, "
                "call kubetune.trial.report(step=..., metric=...)")
        self.trainable = trainable
        self.param_space = dict(param_space)
        self.tune_config = tune_config or TuneConfig()
        self.run_config = run_config or RunConfig()
        self.name = name or self.run_config.name or \
            f"tune-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
        self.namespace = namespace
        self.command, self.args = command, args
        self.env, self.resources = env, resources
        self.prometheus_url = prometheus_url
        self.kubeconfig, self.api_client = kubeconfig, api_client
        if not _NAME.match(self.name) or len(self.name) > _MAX_NAME:
            raise ValueError(f"name {self.name!r} must be lowercase letters, digits and '-', "
                             f"start and end with a letter or digit, at most {_MAX_NAME} "
                             "characters (it names Kubernetes objects)")
        self._restored = False

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
        if isinstance(self.trainable, str):
            if not self.trainable:
                raise ValueError("the trainable image must not be empty")
            template: dict[str, Any] = {"spec": {"containers": [
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
            "searchSpace": tune.search_space(self.param_space),
            "numSamples": tc.num_samples,
            "scheduler": (tc.scheduler or FIFOScheduler()).to_spec(),
            "trialTemplate": self._pod_template(),
        }
        algorithm: dict[str, Any] = {}
        if tc.search_alg is not None:
            algorithm["type"] = tc.search_alg
        if tc.seed is not None:
            algorithm["seed"] = tc.seed
        if algorithm:
            spec["searchAlgorithm"] = algorithm
        if tc.max_concurrent_trials is not None:
            spec["maxConcurrentTrials"] = tc.max_concurrent_trials
        failure = rc.failure_config
        if failure is not None:
            spec["trialRetries"] = failure.max_failures
            if failure.fail_fast:
                spec["maxFailedTrials"] = 1
            elif failure.max_failed_trials is not None:
                spec["maxFailedTrials"] = failure.max_failed_trials
        if self.prometheus_url:
            spec["prometheus"] = {"url": self.prometheus_url}
        validate_experiment_spec(spec)  # raises SpecError naming the field and the fix
        metadata: dict[str, Any] = {"name": self.name}
        if self.namespace:
            metadata["namespace"] = self.namespace
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TuneExperiment",
                "metadata": metadata, "spec": spec}

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
            return client
        client.create_experiment(body)
        return client

    def fit(self, *, progress: bool = True, timeout: float | None = None,
            poll_interval: float = 1.0) -> ResultGrid:
        """Submit the experiment, wait for it to finish, return its results.

        Fitting again with the same name and spec attaches to the experiment
        already there instead of starting another. A Failed experiment returns
        its ResultGrid too (see .phase and .errors), as Ray does.
        """
        client = self.submit()
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
            if status.get("phase") in TERMINAL_PHASES:
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


__all__ = [
    "ASHAScheduler",
    "AsyncHyperBandScheduler",
    "ClusterUnreachable",
    "ExperimentClient",
    "ExperimentNotFound",
    "FIFOScheduler",
    "FailureConfig",
    "KubetuneError",
    "MedianStoppingRule",
    "Result",
    "ResultGrid",
    "RunConfig",
    "TrialError",
    "TuneConfig",
    "TuneError",
    "Tuner",
    "resolve_kubeconfig",
    "wait_for_experiment",
]
