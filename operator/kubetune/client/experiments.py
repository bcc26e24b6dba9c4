"""`ExperimentClient`: the one place the user's side reads and writes the cluster.

The CLI, the Tuner and `kubetune dev` all go through it: TuneExperiments,
TuneTrials, trial pods and their logs, and each trial's metrics history (from
Prometheus, merged with what the TuneTrials keep). Client exceptions become
one-line `KubetuneError`s here.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubetune.api import EXPERIMENT_PLURAL, GROUP, TRIAL_PLURAL, VERSION
from kubetune.client.connection import (
    TIMEOUT,
    api_host,
    context_namespace,
    local_cluster_for,
    new_api_client,
    resolve_kubeconfig,
)
from kubetune.client.errors import (
    ClusterUnreachable,
    ExperimentNotFound,
    HistoryUnavailable,
    KubetuneError,
    TuneError,
)
from kubetune.client.history import (
    History,
    StepTimes,
    fetch_history,
    parse_timestamp,
    trial_history,
)
from kubetune.client.results import ResultGrid
from kubetune.contract import ENV_PROMETHEUS_URL, EXPERIMENT_LABEL, TRIAL_LABEL, pod_log_path

if TYPE_CHECKING:
    from kubernetes import client as k8s


class ExperimentClient:
    """Reads and writes TuneExperiments, TuneTrials and trial pods in one namespace."""

    def __init__(self, kubeconfig: str | Path | None = None, *, namespace: str | None = None,
                 prometheus_url: str | None = None, api_client: k8s.ApiClient | None = None
                 ) -> None:
        if api_client is None:
            self.kubeconfig = resolve_kubeconfig(kubeconfig)
            self.api = new_api_client(self.kubeconfig)
        else:
            self.kubeconfig = Path(kubeconfig) if kubeconfig else None
            self.api = api_client
        self.namespace = namespace or context_namespace(self.kubeconfig)
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
                f"cannot reach the Kubernetes API at {api_host(self.api)}: {reason}") from None

    def _api_error(self, e: Any, what: str, name: str | None) -> KubetuneError:
        details: dict[str, Any] = {}
        with contextlib.suppress(TypeError, ValueError):
            details = json.loads(e.body or "{}").get("details") or {}
        if e.status == 404 and name and details.get("name") == name:
            return ExperimentNotFound(f"{what} {name!r} not found in namespace {self.namespace!r}")
        if e.status == 404:
            return KubetuneError(
                f"the cluster at {api_host(self.api)} has no {what} resource: install kubetune's "
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
                _request_timeout=TIMEOUT))

    def create_experiment(self, body: Mapping[str, Any]) -> dict[str, Any]:
        with self._errors("TuneExperiment"):
            return dict(self._custom().create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, EXPERIMENT_PLURAL, dict(body),
                _request_timeout=TIMEOUT))

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
                propagation_policy="Foreground", _request_timeout=TIMEOUT)
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
                _request_timeout=TIMEOUT)["items"]
        return sorted(items, key=lambda t: (t.get("spec") or {}).get("index", 0))

    def get_trial(self, name: str) -> dict[str, Any]:
        with self._errors("TuneTrial", name):
            return dict(self._custom().get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, TRIAL_PLURAL, name, _request_timeout=TIMEOUT))

    # -- logs ------------------------------------------------------------------------
    def trial_pods(self, trial: str) -> list[str]:
        """Names of the trial's pods that still exist, oldest attempt first."""
        with self._errors("Pod"):
            pods = self._core().list_namespaced_pod(
                self.namespace, label_selector=f"{TRIAL_LABEL}={trial}",
                _request_timeout=TIMEOUT).items
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
            path = pod_log_path(self.local.state_dir, self.namespace, pod)
            if not path.is_file():
                raise KubetuneError(f"no log for pod {pod!r} (looked for {path})")
            return pod, path.read_text(errors="replace")
        if pod not in pods:
            raise KubetuneError(f"pod {pod!r} of trial {trial!r} no longer exists, so its log is "
                                "gone (pruned trials' pods are deleted)")
        with self._errors("Pod", pod):
            return pod, str(self._core().read_namespaced_pod_log(
                pod, self.namespace, _request_timeout=TIMEOUT))

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

    def histories(self, experiment: Mapping[str, Any], trials: Sequence[Mapping[str, Any]],
                  times: StepTimes | None = None) -> tuple[dict[str, History], str]:
        """Each trial's metrics by step, and a note saying where they came from (and, into
        `times` when given, when Prometheus first scraped each step)."""
        objective = experiment["spec"]["objective"]["metric"]
        name = experiment["metadata"]["name"]
        url = self.prometheus_url(experiment)
        scraped: dict[str, History] = {}
        if url is None:
            note = "curves: rung values and final metrics (no Prometheus URL given)"
        else:
            start = parse_timestamp(experiment["metadata"].get("creationTimestamp")) or time.time() - 3600
            finished = parse_timestamp((experiment.get("status") or {}).get("completionTime"))
            end = min(time.time(), (finished or time.time()) + 60)
            try:
                scraped = fetch_history(url, self.namespace, name, start - 5, end, times=times)
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


__all__ = ["ExperimentClient"]
