"""The one place the operator calls the Kubernetes API.

Lists are read as raw JSON (no model deserialisation: 2,000-trial experiments
stay cheap), creates are idempotent (409 means a previous tick or a previous
operator process already made it), every write is counted so the API cost
per trial can be measured, and statuses are written only as the api models'
merge patches, so what is written is what the CRD schema allows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetune.api import (
    EXPERIMENT_PLURAL,
    GROUP,
    TRIAL_PLURAL,
    VERSION,
    TuneExperimentStatus,
    TuneTrialStatus,
)
from kubetune.contract import EXPERIMENT_LABEL


@dataclass
class Gateway:
    """The operator's calls to the Kubernetes API, through one configured client."""

    api: client.ApiClient
    count_write: Callable[[str, str], None] = lambda verb, resource: None
    """Called with (verb, resource) before each write, for the operator's own metrics."""
    core: client.CoreV1Api = field(init=False)
    custom: client.CustomObjectsApi = field(init=False)

    def __post_init__(self) -> None:
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    # -- reads -------------------------------------------------------------------------
    def list_trials(self, namespace: str, experiment: str) -> list[dict[str, Any]]:
        """The experiment's TuneTrials (by its label), as raw JSON."""
        resp = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, TRIAL_PLURAL,
            label_selector=f"{EXPERIMENT_LABEL}={experiment}", _preload_content=False)
        return list(json.loads(cast(Any, resp).data)["items"])

    def list_pods(self, namespace: str, experiment: str) -> list[dict[str, Any]]:
        """The experiment's trial Pods (by its label), as raw JSON."""
        resp = self.core.list_namespaced_pod(
            namespace, label_selector=f"{EXPERIMENT_LABEL}={experiment}", _preload_content=False)
        return list(json.loads(cast(Any, resp).data)["items"])

    # -- writes ------------------------------------------------------------------------
    def create_trial(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a TuneTrial, or return the one that already exists under its name."""
        meta = body["metadata"]
        try:
            self.count_write("create", "tunetrials")
            return cast(dict[str, Any], self.custom.create_namespaced_custom_object(
                GROUP, VERSION, meta["namespace"], TRIAL_PLURAL, dict(body)))
        except ApiException as e:
            if e.status != 409:
                raise
            return cast(dict[str, Any], self.custom.get_namespaced_custom_object(
                GROUP, VERSION, meta["namespace"], TRIAL_PLURAL, meta["name"]))

    def get_trial(self, namespace: str, name: str) -> dict[str, Any]:
        """Read one TuneTrial, as raw JSON."""
        return cast(dict[str, Any], self.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, TRIAL_PLURAL, name))

    def create_pod(self, body: Mapping[str, Any]) -> None:
        """Create a Pod; one that already exists under its name is left as it is."""
        meta = body["metadata"]
        try:
            self.count_write("create", "pods")
            self.core.create_namespaced_pod(meta["namespace"], cast(Any, body))
        except ApiException as e:
            if e.status != 409:
                raise

    def patch_trial_status(self, namespace: str, name: str, status: TuneTrialStatus) -> None:
        """Merge-patch a TuneTrial's status with the fields set on `status`."""
        self.count_write("patch", "tunetrials/status")
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, TRIAL_PLURAL, name, {"status": status.merge_patch()})

    def patch_experiment_status(self, namespace: str, name: str,
                                status: TuneExperimentStatus) -> None:
        """Merge-patch a TuneExperiment's status with the fields set on `status`."""
        self.count_write("patch", "tuneexperiments/status")
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, EXPERIMENT_PLURAL, name, {"status": status.merge_patch()})

    def delete_pod(self, namespace: str, name: str, grace_seconds: int) -> None:
        """Delete a Pod with this grace period; one already gone is not an error."""
        try:
            self.count_write("delete", "pods")
            self.core.delete_namespaced_pod(name, namespace, grace_period_seconds=grace_seconds)
        except ApiException as e:
            if e.status != 404:
                raise
