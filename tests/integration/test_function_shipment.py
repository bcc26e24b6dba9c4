"""A function trainable's ConfigMap on the real apiserver: owned, adopted, collected with it."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

import kubetune
from kubetune import tune
from kubetune.client import functions
from kubetune.client.errors import TuneError
from kubetune.client.experiments import ExperimentClient


def train_a(config: dict) -> None:
    tune.report(score=config["x"])


def train_b(config: dict) -> None:
    tune.report(score=-config["x"])


def tuner(fn: Any, namespace: str, api_client: Any) -> kubetune.Tuner:
    return kubetune.Tuner(fn, param_space={"x": tune.uniform(0, 1)}, name="fn",
                          tune_config=kubetune.TuneConfig(metric="score", mode="max",
                                                          num_samples=1),
                          namespace=namespace, api_client=api_client)


def owners(core: client.CoreV1Api, namespace: str) -> list[tuple[str, str]]:
    cm = core.read_namespaced_config_map("fn-function", namespace)
    return [(o.kind, o.uid) for o in cm.metadata.owner_references or []]


def test_the_config_map_is_owned_adopted_and_collected_with_the_experiment(
        api_client: Any, crds: Any, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    shipped = functions.ship_function(train_a)
    ec = ExperimentClient(api_client=api_client, namespace=namespace)
    # A submit that stopped after writing the ConfigMap: unowned, the experiment not there.
    functions.ship_before_create(ec, shipped, "fn")
    assert owners(core, namespace) == []

    tuner(train_a, namespace, api_client).submit()
    experiment = ec.get_experiment("fn")
    uid = experiment["metadata"]["uid"]
    assert owners(core, namespace) == [("TuneExperiment", uid)]
    cm = core.read_namespaced_config_map("fn-function", namespace)
    assert cm.data["function.py"] == shipped.payload.decode()
    assert experiment["metadata"]["annotations"][functions.FUNCTION_ANNOTATION] == shipped.summary

    # Fitting the same function again attaches; another function under the name is refused.
    tuner(train_a, namespace, api_client).submit()
    assert owners(core, namespace) == [("TuneExperiment", uid)]
    with pytest.raises(TuneError, match=r"already exists .* with another spec"):
        tuner(train_b, namespace, api_client).submit()
    assert core.read_namespaced_config_map("fn-function", namespace).data["function.py"] \
        == shipped.payload.decode()

    # Deleting the experiment: the garbage collector deletes its ConfigMap.
    client.CustomObjectsApi(api_client).delete_namespaced_custom_object(
        "kubetune.io", "v1alpha1", namespace, "tuneexperiments", "fn")
    deadline = time.monotonic() + 60
    while True:
        try:
            core.read_namespaced_config_map("fn-function", namespace)
        except ApiException as e:
            assert e.status == 404
            break
        assert time.monotonic() < deadline, "the ConfigMap outlived its experiment"
        time.sleep(0.5)
