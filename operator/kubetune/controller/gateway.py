"""The one place the operator calls the Kubernetes API.

Lists are read as raw JSON (no model deserialisation: 2,000-trial experiments
stay cheap), creates are idempotent (409 means a previous tick or a previous
operator process already made it), every write is counted so the API cost
per trial can be measured, and statuses are written only as the api models'
merge patches, so what is written is what the CRD schema allows.

Bodies go out as plain dicts and answers come back unparsed (`_preload_content=False`),
so the client's models never judge what only the apiserver can. Every answer is read
to its end, even one nothing uses (`_read`): an unread answer keeps its connection out
of the pool, and the next request handshakes a new one. A refusal is raised as
ApiCallError, which says which call it was and carries the apiserver's own message;
failures.py decides what it means for the experiment. Every call has a timeout, so a
hung apiserver fails a tick instead of holding a worker thread forever.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetune.api import (
    EXPERIMENT_PLURAL,
    GROUP,
    TRIAL_PLURAL,
    VERSION,
    SpecError,
    TuneExperimentStatus,
    TuneTrialStatus,
)
from kubetune.contract import EXPERIMENT_LABEL, WORKERS_LABEL

MESSAGE_LIMIT = 2000
"""The characters of an apiserver message kept: enough for every field it names."""


class ApiCallError(Exception):
    """The apiserver refused a call (or answered an error): which call, and what it said."""

    def __init__(self, verb: str, resource: str, name: str, status: int, reason: str,
                 message: str) -> None:
        super().__init__(f"{verb} {resource} {name}: {status} {reason}: {message}")
        self.verb = verb
        """create, dry-run create, list, get, patch or delete."""
        self.resource = resource
        """The resource as RBAC names it: pods, tunetrials, tuneexperiments/status, ..."""
        self.name = name
        """The object's name (the label selector for a list)."""
        self.status = status
        """The HTTP status; 0 when the apiserver gave none."""
        self.reason = reason
        """The apiserver's StatusReason (Forbidden, Invalid, ...) or the HTTP reason phrase."""
        self.message = message
        """The apiserver's message, as it would reach the user."""

    @classmethod
    def from_api(cls, e: ApiException, verb: str, resource: str, name: str) -> ApiCallError:
        """The ApiCallError of the client's ApiException `e` on this call."""
        reason, message = str(e.reason or ""), str(e.reason or "")
        try:
            body = json.loads(e.body or "")
        except (TypeError, ValueError):
            body = None
        if isinstance(body, Mapping):
            reason = str(body.get("reason") or reason)
            message = str(body.get("message") or message)
        elif isinstance(e.body, str) and e.body.strip():
            message = e.body.strip()
        if len(message) > MESSAGE_LIMIT:  # a refused value may be echoed back whole
            message = message[:MESSAGE_LIMIT] + "..."
        return cls(verb, resource, name, int(e.status or 0), reason, message)



@contextmanager
def template_refused(what: str) -> Iterator[None]:
    """An apiserver 400/422 on a write built from the trial template is the template's fault:
    raise it as a SpecError on spec.trialTemplate ("<what>: <message>"), not a retried error."""
    try:
        yield
    except ApiCallError as e:
        if e.status not in (400, 422):
            raise
        raise SpecError("spec.trialTemplate", f"{what}: {e.message}") from e


def _read(response: Any) -> None:
    """Read an answer nothing uses to its end, so that its connection goes back to the pool."""
    response.data  # noqa: B018  (urllib3 releases the connection once the body is read)


def _answer(data: Any) -> dict[str, Any]:
    """The object the apiserver answered a write with ({} when it is not one)."""
    try:
        answer = json.loads(data or b"{}")
    except (TypeError, ValueError):
        return {}
    return answer if isinstance(answer, dict) else {}


@contextmanager
def _call(verb: str, resource: str, name: str) -> Iterator[None]:
    try:
        yield
    except ApiException as e:
        raise ApiCallError.from_api(e, verb, resource, name) from e


@dataclass
class Gateway:
    """The operator's calls to the Kubernetes API, through one configured client."""

    api: client.ApiClient
    count_write: Callable[[str, str], None] = lambda verb, resource: None
    """Called with (verb, resource) before each write, for the operator's own metrics."""
    written: Callable[[str, dict[str, Any], bool], None] = lambda kind, answer, created: None
    """Called with ("trials", "pods" or "jobs", the apiserver's answer, whether it was a
    create) after each write of a TuneTrial, a Pod or a worker Job: the watch-fed view's
    read-your-writes."""
    timeout: float = 30.0
    """Seconds one call may take before it fails (a transient error, retried)."""
    core: client.CoreV1Api = field(init=False)
    custom: client.CustomObjectsApi = field(init=False)

    def __post_init__(self) -> None:
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    # -- reads -------------------------------------------------------------------------
    def list_trials(self, namespace: str, experiment: str) -> list[dict[str, Any]]:
        """The experiment's TuneTrials (by its label), as raw JSON."""
        selector = f"{EXPERIMENT_LABEL}={experiment}"
        with _call("list", TRIAL_PLURAL, selector):
            resp = self.custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, TRIAL_PLURAL, label_selector=selector,
                _preload_content=False, _request_timeout=self.timeout)
        return list(json.loads(cast(Any, resp).data)["items"])

    def list_pods(self, namespace: str, experiment: str) -> list[dict[str, Any]]:
        """The experiment's trial Pods (by its label), as raw JSON."""
        selector = f"{EXPERIMENT_LABEL}={experiment}"
        with _call("list", "pods", selector):
            resp = self.core.list_namespaced_pod(
                namespace, label_selector=selector, _preload_content=False,
                _request_timeout=self.timeout)
        return list(json.loads(cast(Any, resp).data)["items"])

    def get_trial(self, namespace: str, name: str) -> dict[str, Any]:
        """Read one TuneTrial, as raw JSON."""
        with _call("get", TRIAL_PLURAL, name):
            resp = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, TRIAL_PLURAL, name, _preload_content=False,
                _request_timeout=self.timeout)
        return cast(dict[str, Any], json.loads(cast(Any, resp).data))

    # -- writes ------------------------------------------------------------------------
    def create_trial(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a TuneTrial, or return the one that already exists under its name."""
        meta = body["metadata"]
        self.count_write("create", TRIAL_PLURAL)
        try:
            with _call("create", TRIAL_PLURAL, meta["name"]):
                resp = self.custom.create_namespaced_custom_object(
                    GROUP, VERSION, meta["namespace"], TRIAL_PLURAL, dict(body),
                    _preload_content=False, _request_timeout=self.timeout)
        except ApiCallError as e:
            if e.status != 409:
                raise
            existing = self.get_trial(meta["namespace"], meta["name"])
            self.written("trials", existing, True)
            return existing
        created = cast(dict[str, Any], json.loads(cast(Any, resp).data))
        self.written("trials", created, True)
        return created

    def create_pod(self, body: Mapping[str, Any]) -> None:
        """Create a Pod; one that already exists under its name is left as it is."""
        meta = body["metadata"]
        self.count_write("create", "pods")
        try:
            with _call("create", "pods", meta["name"]):
                self.written("pods", _answer(self._post_pod(body, [])), True)
        except ApiCallError as e:
            if e.status != 409:
                raise

    def dry_run_pod(self, body: Mapping[str, Any]) -> None:
        """Have the apiserver validate and admit a Pod without creating it.

        Strict field validation: an unknown field (a typo such as `resorces`) is refused
        with its path, as `kubectl apply --validate=strict` would for a Pod. Not a write.
        """
        with _call("dry-run create", "pods", body["metadata"]["name"]):
            self._post_pod(body, [("dryRun", "All"), ("fieldValidation", "Strict")])

    def _post_pod(self, body: Mapping[str, Any], query: list[tuple[str, str]]) -> Any:
        # Not CoreV1Api.create_namespaced_pod: client 37 first validates the body as a V1Pod
        # and raises on a field it does not know, before the apiserver could name it.
        request = self.api.param_serialize(
            method="POST", resource_path="/api/v1/namespaces/{namespace}/pods",
            path_params={"namespace": body["metadata"]["namespace"]}, query_params=query,
            header_params={"Accept": "application/json", "Content-Type": "application/json"},
            body=dict(body), auth_settings=["BearerToken"])
        response = self.api.call_api(*request, _request_timeout=self.timeout)
        data = response.read()
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return data

    def patch_trial_status(self, namespace: str, name: str, status: TuneTrialStatus) -> bool:
        """Merge-patch a TuneTrial's status with the fields set on `status`.

        Returns False when the trial is gone (deleted since it was listed).
        """
        self.count_write("patch", "tunetrials/status")
        try:
            with _call("patch", "tunetrials/status", name):
                resp = self.custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, namespace, TRIAL_PLURAL, name,
                    {"status": status.merge_patch()}, _preload_content=False,
                    _request_timeout=self.timeout)
            self.written("trials", _answer(cast(Any, resp).data), False)
        except ApiCallError as e:
            if e.status != 404:
                raise
            return False
        return True

    def patch_experiment_status(self, namespace: str, name: str,
                                status: TuneExperimentStatus) -> None:
        """Merge-patch a TuneExperiment's status with the fields set on `status`."""
        self.count_write("patch", "tuneexperiments/status")
        with _call("patch", "tuneexperiments/status", name):
            resp = self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, EXPERIMENT_PLURAL, name,
                {"status": status.merge_patch()}, _preload_content=False,
                _request_timeout=self.timeout)
            _read(resp)

    def delete_pod(self, namespace: str, name: str, grace_seconds: int) -> None:
        """Delete a Pod with this grace period; one already gone is not an error."""
        self.count_write("delete", "pods")
        try:
            with _call("delete", "pods", name):
                resp = self.core.delete_namespaced_pod(
                    name, namespace, grace_period_seconds=grace_seconds,
                    _preload_content=False, _request_timeout=self.timeout)
            self.written("pods", _answer(cast(Any, resp).data), False)
        except ApiCallError as e:
            if e.status != 404:
                raise

    # -- multi-worker trials: an Indexed Job and a headless Service per trial ----------------
    def list_jobs(self, namespace: str, experiment: str) -> list[dict[str, Any]]:
        """The experiment's worker Jobs (by its label), as raw JSON."""
        selector = f"{EXPERIMENT_LABEL}={experiment}"
        with _call("list", "jobs", selector):
            resp = client.BatchV1Api(self.api).list_namespaced_job(
                namespace, label_selector=selector, _preload_content=False,
                _request_timeout=self.timeout)
        return list(json.loads(cast(Any, resp).data)["items"])

    def capacity_objects(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                        list[dict[str, Any]]]:
        """Nodes, non-terminated Pods and worker Jobs of the whole cluster, for admission."""
        with _call("list", "nodes", ""):
            nodes = self.core.list_node(_preload_content=False, _request_timeout=self.timeout)
        with _call("list", "pods", "all namespaces"):
            pods = self.core.list_pod_for_all_namespaces(
                field_selector="status.phase!=Succeeded,status.phase!=Failed",
                _preload_content=False, _request_timeout=self.timeout)
        with _call("list", "jobs", "all namespaces"):
            jobs = client.BatchV1Api(self.api).list_job_for_all_namespaces(
                label_selector=WORKERS_LABEL, _preload_content=False,
                _request_timeout=self.timeout)
        return tuple(list(json.loads(cast(Any, r).data)["items"])  # type: ignore[return-value]
                     for r in (nodes, pods, jobs))

    def create_service(self, body: Mapping[str, Any]) -> None:
        """Create a Service; one that already exists under its name is adopted."""
        meta = body["metadata"]
        self.count_write("create", "services")
        try:
            with _call("create", "services", meta["name"]):
                _read(self.core.create_namespaced_service(
                    meta["namespace"], cast(Any, dict(body)), _preload_content=False,
                    _request_timeout=self.timeout))
        except ApiCallError as e:
            if e.status != 409:
                raise

    def create_job(self, body: Mapping[str, Any]) -> None:
        """Create a Job; one that already exists under its name (this attempt's) is adopted."""
        meta = body["metadata"]
        self.count_write("create", "jobs")
        try:
            with _call("create", "jobs", meta["name"]):
                resp = client.BatchV1Api(self.api).create_namespaced_job(
                    meta["namespace"], cast(Any, dict(body)), _preload_content=False,
                    _request_timeout=self.timeout)
            self.written("jobs", _answer(cast(Any, resp).data), True)
        except ApiCallError as e:
            if e.status != 409:
                raise

    def delete_job(self, namespace: str, name: str, grace_seconds: int,
                   pods: Sequence[str] = ()) -> None:
        """Delete an attempt's Job and every one of its pods with this grace period.

        The pods go first, with the grace period (the garbage collector would use the pods'
        own, and a later, shorter one is not honoured by every kubelet), so every worker gets
        SIGTERM and the same time to checkpoint; then the Job, with foreground propagation,
        which keeps it, marked deleting, until its pods are gone: the attempt holds its slot
        until then, and the Job controller makes no pod for a Job being deleted.
        """
        for pod in pods:
            self.delete_pod(namespace, pod, grace_seconds)
        self.count_write("delete", "jobs")
        try:
            with _call("delete", "jobs", name):
                resp = client.BatchV1Api(self.api).delete_namespaced_job(
                    name, namespace, grace_period_seconds=grace_seconds,
                    propagation_policy="Foreground", _preload_content=False,
                    _request_timeout=self.timeout)
            self.written("jobs", _answer(cast(Any, resp).data), False)
        except ApiCallError as e:
            if e.status != 404:
                raise
