"""kopf's diff base as the operator configures it (handlers.EmptyDiffBase): the essence of
every object it watches is what kopf's stock storage builds with the same settings, without
its deep copy of the whole body."""

from __future__ import annotations

import copy
from typing import Any

import kopf
import pytest

from kubetune import contract
from kubetune.controller import handlers

pytestmark = pytest.mark.unit

META = {"name": "exp-3-1", "namespace": "ns", "uid": "u", "resourceVersion": "9",
        "labels": {contract.EXPERIMENT_LABEL: "exp", "kubetune.io/trial": "exp-3"},
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}",
                        f"{contract.ANNOTATIONS_PREFIX}/last-handled-configuration": "{}",
                        "note": "kept by the stock build, then ignored with the metadata"}}
BODIES: dict[str, dict[str, Any]] = {
    "pod": {"apiVersion": "v1", "kind": "Pod", "metadata": META,
            "spec": {"containers": [{"name": "t", "image": "x", "env": [{"name": "A"}]}]},
            "status": {"phase": "Running"}},
    "trial": {"apiVersion": "kubetune.io/v1alpha1", "kind": "TuneTrial", "metadata": META,
              "spec": {"index": 3, "params": {"lr": 0.1}}, "status": {"state": "Running"}},
    "job": {"apiVersion": "batch/v1", "kind": "Job", "metadata": META,
            "spec": {"completions": 2}, "status": {}},
    "experiment": {"apiVersion": "kubetune.io/v1alpha1", "kind": "TuneExperiment",
                   "metadata": META, "spec": {"numSamples": 4}},
    "configmap": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": META,
                  "data": {"k": "v"}},  # a field of its own: the stock build
}


def stock() -> kopf.AnnotationsDiffBaseStorage:
    return kopf.AnnotationsDiffBaseStorage(prefix=contract.ANNOTATIONS_PREFIX,
                                           ignored_fields=handlers.DIFF_IGNORED)


@pytest.mark.parametrize("kind", sorted(BODIES))
def test_the_essence_is_the_stock_storages_and_the_body_is_untouched(kind: str) -> None:
    settings = kopf.OperatorSettings()
    handlers._configure_kopf(settings)
    ours = settings.persistence.diffbase_storage
    assert isinstance(ours, handlers.EmptyDiffBase)
    body = kopf.Body(copy.deepcopy(BODIES[kind]))
    assert ours.build(body=body) == stock().build(body=body)
    assert dict(body) == BODIES[kind]
    assert (ours.build(body=body) == {}) is (kind != "configmap")


def test_a_handler_on_a_field_gets_the_field_as_the_stock_storage_gives_it() -> None:
    body = kopf.Body(copy.deepcopy(BODIES["trial"]))
    ours = handlers.EmptyDiffBase(prefix=contract.ANNOTATIONS_PREFIX,
                                  ignored_fields=handlers.DIFF_IGNORED)
    fields = [("status", "state")]
    assert ours.build(body=body, extra_fields=fields) == \
        stock().build(body=body, extra_fields=fields) == {"status": {"state": "Running"}}
