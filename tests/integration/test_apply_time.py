"""What the apiserver refuses at apply time (names, edits, owned env, bounds), and the
conditions `kubectl wait` reads, on the real control plane."""

from __future__ import annotations

import copy
import shutil
import subprocess
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetune.api import MAX_EXPERIMENT_NAME
from tests.integration.kube import wait_for
from tests.support.operator import scripted_experiment

GROUP, VERSION, PLURAL = "kubetune.io", "v1alpha1", "tuneexperiments"


def custom(api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


def create(api_client: client.ApiClient, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    return dict(custom(api_client).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body))


def get(api_client: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    return dict(custom(api_client).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name))


def patch(api_client: client.ApiClient, namespace: str, name: str,
          body: dict[str, Any]) -> dict[str, Any]:
    return dict(custom(api_client).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, body))


def refused(call: Any) -> str:
    """The apiserver's 422 body for a call it must refuse."""
    with pytest.raises(ApiException) as err:
        call()
    assert err.value.status == 422, err.value.body
    return str(err.value.body)


def experiment(name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("scheduler", {"type": "fifo"})
    return scripted_experiment(name, [0.5, 0.6], sleep=0.05, steps=3, **spec)


# -- item: every name the CRD accepts works --------------------------------------------------
@pytest.mark.parametrize("length", [61, 63, 200])
def test_a_name_too_long_for_its_trials_labels_is_refused_with_the_reason(
        api_client, namespace, crds, length):
    name = "n" * length
    message = refused(lambda: create(api_client, namespace, experiment(name)))
    assert f"at most {MAX_EXPERIMENT_NAME} characters" in message
    assert "label values" in message and "63" in message


def test_the_longest_name_accepted_runs_past_ten_trials_with_labels_that_fit(
        api_client, namespace, operator, cluster):
    name = "x" * (MAX_EXPERIMENT_NAME - 4) + "-end"
    assert len(name) == MAX_EXPERIMENT_NAME
    qualities = [round(0.05 * i, 2) for i in range(1, 13)]  # 12 trials: index 10 and 11 too
    body = scripted_experiment(name, qualities, concurrency=6, steps=2, sleep=0.02,
                               scheduler={"type": "fifo"})
    create(api_client, namespace, body)
    done = wait_for(lambda: (e := get(api_client, namespace, name)).get("status", {})
                    .get("phase") in ("Succeeded", "Failed") and e, timeout=240,
                    what="the 50-character experiment to finish")
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert done["status"]["trials"]["succeeded"] == 12
    pods = client.CoreV1Api(api_client).list_namespaced_pod(namespace).items
    assert {p.metadata.labels["kubetune.io/trial"] for p in pods} >= {f"{name}-10", f"{name}-11"}
    assert all(len(v) <= 63 for p in pods for v in p.metadata.labels.values())
    _kubectl_wait(cluster, namespace, name, "Complete", timeout=5, expect_ok=True)
    _kubectl_wait(cluster, namespace, name, "Failed", timeout=2, expect_ok=False)


# -- item: immutability ------------------------------------------------------------------------
IMMUTABLE_EDITS = [
    ("objective", {"spec": {"objective": {"metric": "loss", "mode": "min"}}}),
    ("searchSpace", {"spec": {"searchSpace": {"quality": {"grid": [0.5, 0.7]}}}}),
    ("searchAlgorithm", {"spec": {"searchAlgorithm": {"seed": 7}}}),
    ("scheduler", {"spec": {"scheduler": {"type": "asha", "maxT": 3}}}),
    ("trialTemplate", {"spec": {"trialTemplate": {"spec": {"nodeSelector": {"pool": "a"}}}}}),
]


@pytest.mark.parametrize(("field", "edit"), IMMUTABLE_EDITS, ids=[e[0] for e in IMMUTABLE_EDITS])
def test_an_edit_of_what_defines_the_search_is_refused_with_what_to_do(
        api_client, namespace, crds, field, edit):
    name = f"imm-{field.lower()}"
    create(api_client, namespace, experiment(name))
    message = refused(lambda: patch(api_client, namespace, name, edit))
    assert f"spec.{field} cannot change" in message and "create a new experiment" in message
    assert get(api_client, namespace, name)["metadata"]["generation"] == 1


def test_a_changed_choice_value_inside_the_search_space_is_refused(api_client, namespace, crds):
    body = experiment("imm-choice", extra_space={"opt": {"choice": ["sgd", {"name": "adam"}]}})
    create(api_client, namespace, body)
    edited = copy.deepcopy(body["spec"]["searchSpace"])
    edited["opt"] = {"choice": ["sgd", {"name": "adamw"}]}
    message = refused(lambda: patch(api_client, namespace, "imm-choice",
                                    {"spec": {"searchSpace": edited}}))
    assert "spec.searchSpace cannot change" in message


def _swap(template: dict[str, Any], node: str, old: str, new: str) -> dict[str, Any]:
    edited = copy.deepcopy(template)
    target = edited["spec"] if node == "pod" else edited["spec"]["containers"][0]
    if node == "pod":
        target[new], target[old] = target[old], None  # null: the merge patch removes it
    else:
        target[new] = target.pop(old)  # a merge patch replaces the containers list whole
    return edited


@pytest.mark.parametrize(("node", "old", "new"), [("container", "command", "args"),
                                                  ("pod", "nodeSelector", "tolerations")])
def test_a_template_field_swapped_for_another_is_refused(api_client, namespace, crds, node, old,
                                                         new):
    body = experiment("imm-swap")
    body["spec"]["trialTemplate"]["spec"]["nodeSelector"] = {"pool": "a"}
    create(api_client, namespace, body)
    template = get(api_client, namespace, "imm-swap")["spec"]["trialTemplate"]
    edited = _swap(template, node, old, new)  # as many keys as before, one renamed
    message = refused(lambda: patch(api_client, namespace, "imm-swap",
                                    {"spec": {"trialTemplate": edited}}))
    assert "spec.trialTemplate cannot change" in message


def test_a_renamed_nested_parameter_is_refused(api_client, namespace, crds):
    body = experiment("imm-nested", extra_space={"opt": {"space": {"a": {"uniform": [0, 1]}}}})
    create(api_client, namespace, body)
    message = refused(lambda: patch(api_client, namespace, "imm-nested", {"spec": {"searchSpace": {
        "opt": {"space": {"a": None, "b": {"uniform": [0, 1]}}}}}}))
    assert "spec.searchSpace cannot change" in message


def test_the_limits_stay_editable_and_metadata_edits_pass(api_client, namespace, crds):
    create(api_client, namespace, experiment("editable"))
    edited = patch(api_client, namespace, "editable", {"spec": {
        "maxConcurrentTrials": 2, "numSamples": 3, "maxFailedTrials": 5, "trialRetries": 2}})
    assert edited["spec"]["maxConcurrentTrials"] == 2 and edited["spec"]["numSamples"] == 3
    assert edited["metadata"]["generation"] == 2
    # What kopf writes (finalizers, annotations) never touches the spec and passes.
    labelled = patch(api_client, namespace, "editable", {"metadata": {
        "labels": {"team": "a"}, "finalizers": ["kubetune.io/finalizer"]}})
    assert labelled["metadata"]["labels"] == {"team": "a"}
    patch(api_client, namespace, "editable", {"metadata": {"finalizers": None}})


# -- item: env the operator owns ------------------------------------------------------------------
@pytest.mark.parametrize("variable", ["KUBETUNE_CONFIG", "KUBETUNE_TRIAL", "KUBETUNE_PARAM_LR"])
def test_a_template_setting_an_operator_variable_is_refused_with_the_list(
        api_client, namespace, crds, variable):
    body = experiment("owned-env")
    body["spec"]["trialTemplate"]["spec"]["containers"][0]["env"].append(
        {"name": variable, "value": '{"lr": 1}'})
    message = refused(lambda: create(api_client, namespace, body))
    assert f"env {variable} is set by the operator" in message
    assert "KUBETUNE_CONFIG, KUBETUNE_EXPERIMENT, KUBETUNE_TRIAL" in message
    assert "KUBETUNE_CHECKPOINT_ROOT" in message  # named as the user's to set


def test_the_users_own_kubetune_variables_are_accepted(api_client, namespace, crds):
    body = experiment("user-env")
    env = body["spec"]["trialTemplate"]["spec"]["containers"][0]["env"]
    env.append({"name": "KUBETUNE_STOP_GRACE_SECONDS", "value": "5"})
    assert {e["name"] for e in env} >= {"KUBETUNE_CHECKPOINT_ROOT", "KUBETUNE_LINGER_SECONDS"}
    create(api_client, namespace, body)


# -- item: bounds at apply time --------------------------------------------------------------------
BOUNDS = [
    ("too-many-samples", {"numSamples": 100_001}, "numSamples"),
    ("too-concurrent", {"maxConcurrentTrials": 1001}, "maxConcurrentTrials"),
    ("metric-with-space", {"objective": {"metric": "val loss", "mode": "min"}},
     "objective.metric must match"),
    ("metric-too-long", {"objective": {"metric": "m" * 129, "mode": "min"}}, "objective.metric"),
    ("time-attr-quoted", {"scheduler": {"type": "asha", "timeAttr": 'ep"och'}},
     "scheduler.timeAttr must match"),
]


@pytest.mark.parametrize(("name", "spec", "words"), BOUNDS, ids=[b[0] for b in BOUNDS])
def test_a_bound_is_refused_at_apply_time(api_client, namespace, crds, name, spec, words):
    message = refused(lambda: create(api_client, namespace, experiment(name, **spec)))
    assert words in message, message


@pytest.mark.parametrize("param", ["learning rate", "1lr", "lr.x", "p" * 129])
def test_a_parameter_name_that_cannot_be_an_env_suffix_is_refused(
        api_client, namespace, crds, param):
    body = experiment("bad-param", extra_space={param: {"uniform": [0, 1]}})
    message = refused(lambda: create(api_client, namespace, body))
    assert "searchSpace parameter names must match" in message and "KUBETUNE_PARAM_" in message


# -- item: conditions tools understand ---------------------------------------------------------
def _kubectl(cluster: Any, namespace: str, *args: str, timeout: int = 30,
             ) -> subprocess.CompletedProcess[str]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    return subprocess.run([kubectl, "--kubeconfig", str(cluster.kubeconfig), "-n", namespace,
                           *args], capture_output=True, text=True, timeout=timeout + 30)


def _kubectl_wait(cluster: Any, namespace: str, name: str, condition: str, *, timeout: int,
                  expect_ok: bool) -> None:
    done = _kubectl(cluster, namespace, "wait", f"--for=condition={condition}",
                    f"--timeout={timeout}s", f"tuneexperiment/{name}", timeout=timeout)
    if expect_ok:
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode != 0 and "timed out" in done.stderr, (done.returncode, done.stderr)


def test_a_failed_experiment_is_failed_for_kubectl_wait_and_never_complete(
        api_client, namespace, operator, cluster):
    body = scripted_experiment("doomed", [0.5], steps=2, sleep=0.02, scheduler={"type": "fifo"},
                               extra_space={"fail_attempts": {"value": 9}},
                               trialRetries=0, maxFailedTrials=1)
    create(api_client, namespace, body)
    _kubectl_wait(cluster, namespace, "doomed", "Failed", timeout=120, expect_ok=True)
    _kubectl_wait(cluster, namespace, "doomed", "Complete", timeout=3, expect_ok=False)
    status = get(api_client, namespace, "doomed")["status"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert status["phase"] == "Failed"
    assert conditions["Failed"]["status"] == "True"
    assert conditions["Failed"]["reason"] == "TooManyFailedTrials"
    assert "maxFailedTrials=1" in conditions["Failed"]["message"]
    assert conditions["Complete"]["status"] == "False"
    generation = get(api_client, namespace, "doomed")["metadata"]["generation"]
    assert all(c["observedGeneration"] == generation for c in conditions.values())
    shown = _kubectl(cluster, namespace, "get", "tx", "doomed")
    assert "MESSAGE" in shown.stdout and "maxFailedTrials=1" in shown.stdout, shown
