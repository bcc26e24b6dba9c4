"""Trial and pod manifests: names, owners, labels, env, substitution, GPUs untouched."""

from __future__ import annotations

import json

import pytest

from kubetune.controller.manifests import build_pod, build_trial, unknown_param_references

EXP = {"metadata": {"name": "mnist", "namespace": "ml", "uid": "e-uid"}}
TEMPLATE = {
    "metadata": {"labels": {"team": "vision"}},
    "spec": {"containers": [{
        "name": "train", "image": "kubetune-trainer:1",
        "command": ["python", "-m", "kubetune_trainer"],
        "args": ["--lr=${params.lr}", "--opt=${params.optimizer.name}"],
        "resources": {"limits": {"nvidia.com/gpu": "2"}},
    }]},
}
PARAMS = {"lr": 0.01, "optimizer": {"name": "sgd", "momentum": 0.9}}


def make_pod(**over):  # type: ignore[no-untyped-def]
    trial = build_trial(EXP, 4, PARAMS)
    trial["metadata"]["uid"] = "t-uid"
    return build_pod(template=over.get("template", TEMPLATE), trial=trial, attempt=2, params=PARAMS,
                     objective_metric="accuracy", milestones=[1, 3, 9], metrics_port=8000)


def test_trial_is_named_by_index_owned_by_its_experiment_and_labelled():
    trial = build_trial(EXP, 4, PARAMS)
    assert trial["metadata"]["name"] == "mnist-4"
    assert trial["metadata"]["ownerReferences"][0]["uid"] == "e-uid"
    assert trial["metadata"]["labels"] == {"kubetune.io/experiment": "mnist", "kubetune.io/trial": "mnist-4"}
    assert trial["spec"] == {"experiment": "mnist", "index": 4, "params": PARAMS}


def test_pod_is_named_by_attempt_owned_by_its_trial_and_never_restarts():
    pod = make_pod()
    meta = pod["metadata"]
    assert meta["name"] == "mnist-4-2" and meta["namespace"] == "ml"
    assert meta["ownerReferences"][0] == {"apiVersion": "kubetune.io/v1alpha1", "kind": "TuneTrial",
                                          "name": "mnist-4", "uid": "t-uid", "controller": True,
                                          "blockOwnerDeletion": True}
    assert meta["labels"] == {"team": "vision", "kubetune.io/experiment": "mnist",
                              "kubetune.io/trial": "mnist-4", "kubetune.io/attempt": "2"}
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["automountServiceAccountToken"] is False


def test_pod_gets_hyperparameters_as_env_and_in_args_and_gpus_pass_through():
    container = make_pod()["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert json.loads(env["KUBETUNE_CONFIG"]) == PARAMS
    assert env["KUBETUNE_PARAM_LR"] == "0.01"
    assert env["KUBETUNE_PARAM_OPTIMIZER_MOMENTUM"] == "0.9"
    assert env["KUBETUNE_MILESTONES"] == "1,3,9" and env["KUBETUNE_METRIC"] == "accuracy"
    assert env["KUBETUNE_CHECKPOINT_DIR"].endswith("/ml/mnist-e-uid/mnist-4")
    assert container["args"] == ["--lr=0.01", "--opt=sgd"]
    assert container["resources"] == {"limits": {"nvidia.com/gpu": "2"}}
    assert {"name": "metrics", "containerPort": 8000, "protocol": "TCP"} in container["ports"]


def test_integer_quantities_become_strings():
    template = json.loads(json.dumps(TEMPLATE))
    template["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": 1, "cpu": 2}}
    container = make_pod(template=template)["spec"]["containers"][0]
    assert container["resources"] == {"limits": {"nvidia.com/gpu": "1", "cpu": "2"}}


def test_template_env_wins_and_automount_can_be_turned_on():
    template = json.loads(json.dumps(TEMPLATE))
    template["spec"]["automountServiceAccountToken"] = True
    template["spec"]["containers"][0]["env"] = [{"name": "KUBETUNE_METRICS_PORT", "value": "9100"}]
    pod = make_pod(template=template)
    env = [e for e in pod["spec"]["containers"][0]["env"] if e["name"] == "KUBETUNE_METRICS_PORT"]
    assert env == [{"name": "KUBETUNE_METRICS_PORT", "value": "9100"}]
    assert pod["spec"]["automountServiceAccountToken"] is True
    assert TEMPLATE["spec"]["containers"][0].get("env") is None, "the template is not mutated"


@pytest.mark.parametrize(("arg", "unknown"), [("${params.lr}", []), ("${params.nope}", ["nope"]),
                                              ("${params.optimizer.beta}", ["optimizer.beta"])])
def test_unknown_param_references_are_found(arg: str, unknown: list[str]):
    template = {"spec": {"containers": [{"name": "t", "args": [arg]}]}}
    assert unknown_param_references(template, PARAMS) == unknown
