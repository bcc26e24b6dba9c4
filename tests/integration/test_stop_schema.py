"""spec.stop and spec.timeBudgetSeconds at apply time: the apiserver refuses what can
never work, with the rule in the message, and keeps an edit of them."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.operator import scripted_experiment

GROUP, VERSION, PLURAL = "kubetune.io", "v1alpha1", "tuneexperiments"


def create(api_client: client.ApiClient, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    return dict(client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body))


def experiment(name: str, **spec: Any) -> dict[str, Any]:
    return scripted_experiment(name, [0.5], sleep=0.05, steps=3, scheduler={"type": "fifo"},
                               **spec)


@pytest.mark.parametrize("spec, words", [
    ({"stop": {}}, "stop needs trainingIteration or at least one entry in metrics"),
    ({"stop": {"metrics": {}}}, "stop needs trainingIteration or at least one entry in metrics"),
    ({"stop": {"metrics": {"val loss": 0.1}}}, "stop.metrics names must match"),
    ({"stop": {"trainingIteration": 0}}, "spec.stop.trainingIteration"),
    ({"stop": {"metrics": {"accuracy": "high"}}}, "spec.stop.metrics.accuracy"),
    ({"timeBudgetSeconds": 0}, "spec.timeBudgetSeconds"),
])
def test_a_stop_that_can_never_work_is_refused_at_apply_time(api_client, namespace, crds,
                                                              spec, words) -> None:
    with pytest.raises(ApiException) as err:
        create(api_client, namespace, experiment("bad", **spec))
    assert err.value.status == 422, err.value.body
    assert words in str(err.value.body)


def test_stop_and_the_budget_are_stored_as_written_and_stay_editable(
        api_client, namespace, crds) -> None:
    stop = {"trainingIteration": 9, "metrics": {"accuracy": 0.98, "ptl/val_acc": 0.9}}
    created = create(api_client, namespace,
                     experiment("ok", stop=stop, timeBudgetSeconds=600))
    assert created["spec"]["stop"] == stop and created["spec"]["timeBudgetSeconds"] == 600
    edited = client.CustomObjectsApi(api_client).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "ok",
        {"spec": {"stop": {"trainingIteration": 3}, "timeBudgetSeconds": 60}})
    assert edited["spec"]["stop"]["trainingIteration"] == 3
    assert edited["spec"]["timeBudgetSeconds"] == 60
