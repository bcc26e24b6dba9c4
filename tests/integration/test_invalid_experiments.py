"""Bad input: rejected by the CRD schema at apply time, or marked Failed by the operator
with a message naming the field, while other experiments keep running."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.integration.kube import wait_for
from tests.support.operator import scripted_experiment

BASE = scripted_experiment("base", [0.5, 0.6], sleep=0.05)


def variant(name: str, change: Any) -> dict[str, Any]:
    body = copy.deepcopy(BASE)
    body["metadata"]["name"] = name
    change(body["spec"])
    return body


def _set(path: str, value: Any) -> Any:
    def change(spec: dict[str, Any]) -> None:
        node = spec
        *parents, last = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        if value is _DELETE:
            node.pop(last)
        else:
            node[last] = value
    return change


_DELETE = object()

# (name, mutation, words the error must contain)
REJECTED_BY_SCHEMA = [
    ("bad-domain", _set("searchSpace.lr", {"uniformm": [0, 1]}), "searchSpace"),
    ("low-above-high", _set("searchSpace.lr", {"uniform": [1.0, 0.1]}), "low"),
    ("log-of-zero", _set("searchSpace.lr", {"loguniform": [0, 1]}), "loguniform"),
    ("unknown-scheduler", _set("scheduler.type", "hyperbandz"), "scheduler.type"),
    ("missing-objective", _set("objective", _DELETE), "objective"),
    ("bad-mode", _set("objective.mode", "maximize"), "objective.mode"),
    ("empty-template", _set("trialTemplate", {}), "trialTemplate"),
    ("no-containers", _set("trialTemplate.spec.containers", []), "containers"),
    ("zero-concurrency", _set("maxConcurrentTrials", 0), "maxConcurrentTrials"),
    ("grace-above-maxt", _set("scheduler", {"type": "asha", "maxT": 3, "gracePeriod": 9}), "gracePeriod"),
    ("tiny-reduction", _set("scheduler", {"type": "asha", "reductionFactor": 1}), "reductionFactor"),
    ("zero-samples", _set("numSamples", 0), "numSamples"),
    ("too-many-samples", _set("numSamples", 100_001), "numSamples"),
    ("operator-env", lambda s: s["trialTemplate"]["spec"]["containers"][0]["env"].append(
        {"name": "KUBETUNE_CONFIG", "value": "{}"}), "env KUBETUNE_CONFIG is set by the operator"),
    ("bad-param-name", _set("searchSpace.learning rate", {"uniform": [0, 1]}),
     "searchSpace parameter names must match"),
    ("bad-metric-name", _set("objective.metric", "val loss"), "objective.metric must match"),
]

# Valid for the schema, caught by the operator: it marks them Failed and names the field.
FAILED_BY_OPERATOR = [
    ("nested-low-above-high",
     _set("searchSpace.optimizer", {"space": {"momentum": {"uniform": [0.9, 0.1]}}}),
     "searchSpace.optimizer"),
    ("nested-unknown-domain",
     _set("searchSpace.optimizer", {"space": {"momentum": {"normal": [0, 1]}}}),
     "searchSpace.optimizer"),
    ("grid-algorithm-without-grid",
     lambda s: (s["searchSpace"].update({"quality": {"choice": [0.5]}}),
                s.update({"searchAlgorithm": {"type": "grid"}})),
     "searchAlgorithm"),
    ("unknown-param-in-args",
     lambda s: s["trialTemplate"]["spec"]["containers"][0].update({"args": ["--lr=${params.lr}"]}),
     "params.lr"),
    # A grid CEL cannot multiply out (its values are any JSON): 2 x 1000 x 100 points.
    ("grid-too-large",
     lambda s: s["searchSpace"].update({"a": {"grid": list(range(1000))},
                                        "b": {"grid": list(range(100))}}),
     "= 200000 trials; at most 100000"),
    ("config-too-large", _set("searchSpace.blob", {"value": "x" * 70_000}),
     "fit in the trial's environment"),
]


def _create(api_client: client.ApiClient, namespace: str, body: dict[str, Any]) -> None:
    client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        "kubetune.io", "v1alpha1", namespace, "tuneexperiments", body)


def _status(api_client: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    return dict(client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        "kubetune.io", "v1alpha1", namespace, "tuneexperiments", name).get("status") or {})


@pytest.mark.parametrize(("name", "change", "words"), REJECTED_BY_SCHEMA,
                         ids=[c[0] for c in REJECTED_BY_SCHEMA])
def test_invalid_experiment_is_rejected_at_apply_time(api_client, namespace, crds, name, change, words):
    with pytest.raises(ApiException) as rejected:
        _create(api_client, namespace, variant(name, change))
    assert rejected.value.status == 422
    assert words in rejected.value.body, rejected.value.body


def test_invalid_experiments_fail_with_the_field_named_and_others_keep_running(
        api_client, namespace, operator):
    _create(api_client, namespace, copy.deepcopy(BASE))
    for name, change, _ in FAILED_BY_OPERATOR:
        _create(api_client, namespace, variant(name, change))
    for name, _, words in FAILED_BY_OPERATOR:
        status = wait_for(lambda n=name: (s := _status(api_client, namespace, n)).get("phase") and s,
                          timeout=60, what=f"{name} to get a phase")
        assert status["phase"] == "Failed", (name, status)
        assert words in status["message"], (name, status["message"])
        cond = next(c for c in status["conditions"] if c["type"] == "SpecValid")
        assert cond["status"] == "False" and cond["reason"] == "InvalidSpec"
    expected = {c[0] for c in FAILED_BY_OPERATOR}

    def invalid_events() -> list[Any]:
        events = client.CoreV1Api(api_client).list_namespaced_event(namespace).items
        found = [e for e in events if e.reason == "InvalidSpec"]
        return found if {e.involved_object.name for e in found} == expected else []

    # kopf posts Events from a queue, a moment after the status is written.
    invalid = wait_for(invalid_events, timeout=30, what="one InvalidSpec Event per experiment")
    time.sleep(3)  # several more ticks
    invalid = invalid_events()
    # Not retried in a loop: one Event per invalid experiment, however many ticks pass.
    assert all((e.count or 1) == 1 for e in invalid)
    ok = wait_for(lambda: _status(api_client, namespace, "base").get("phase") == "Succeeded" or None,
                  timeout=120, what="the valid experiment to succeed")
    assert ok
