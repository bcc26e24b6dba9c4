"""Every error of a tick lands on its experiment, on the real control plane: what the apiserver
refuses for good (Pod Security, an admission policy, a typo in the template, an object too
large to store) ends that experiment Failed with the apiserver's message and one Event, while
another experiment in the namespace keeps running; what may pass (a quota) is retried and
shows as a ReconcileError condition; results come from Prometheus when the termination
message cannot be read; and an experiment can always be deleted."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.integration.kube import wait_for
from tests.integration.test_operator import create, experiment, final_value, trials, wait_phase
from tests.support.operator import OperatorProcess, scripted_experiment

RESTRICTED_POD = {"runAsNonRoot": True, "runAsUser": 1000,
                  "seccompProfile": {"type": "RuntimeDefault"}}
RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def quick(name: str, qualities: list[float] | None = None, **spec: Any) -> dict[str, Any]:
    return scripted_experiment(name, qualities or [0.5, 0.6], sleep=0.05, **spec)


def container(body: dict[str, Any]) -> dict[str, Any]:
    return dict(body["spec"]["trialTemplate"]["spec"]["containers"][0])


def conditions(exp: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (exp.get("status") or {}).get("conditions") or []}


def events(api_client: client.ApiClient, namespace: str, name: str,
           reason: str | None = None) -> list[Any]:
    found = client.CoreV1Api(api_client).list_namespaced_event(namespace).items
    return [e for e in found if e.involved_object.name == name
            and e.involved_object.kind == "TuneExperiment" and reason in (None, e.reason)]


def assert_failed_with(api_client: client.ApiClient, namespace: str, name: str, reason: str,
                       *words: str) -> dict[str, Any]:
    exp = wait_phase(api_client, namespace, name, ("Succeeded", "Failed"), timeout=90)
    status = exp["status"]
    assert status["phase"] == "Failed", status
    for word in words:
        assert word in status["message"], (word, status["message"])
    failed = conditions(exp)["Failed"]
    assert (failed["status"], failed["reason"]) == ("True", reason), failed
    assert conditions(exp)["Complete"]["status"] == "False"
    found = wait_for(lambda: events(api_client, namespace, name, reason), timeout=30,
                     what=f"a {reason} Event on {name}")
    assert words[0] in found[0].message
    return exp


def assert_posted_once(api_client: client.ApiClient, namespace: str, name: str,
                       reason: str) -> None:
    time.sleep(3)  # several more ticks
    posted = events(api_client, namespace, name, reason)
    assert len(posted) == 1 and (posted[0].count or 1) == 1, posted


# -- permanent: refused by admission ------------------------------------------------------------
def test_a_pod_refused_by_pod_security_fails_its_experiment_and_another_keeps_running(
        api_client, namespace, operator: OperatorProcess):
    client.CoreV1Api(api_client).patch_namespace(namespace, {"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted"}}})
    compliant = quick("compliant")
    template = compliant["spec"]["trialTemplate"]["spec"]
    template["securityContext"] = RESTRICTED_POD
    template["containers"][0]["securityContext"] = RESTRICTED_CONTAINER
    create(api_client, namespace, compliant)
    create(api_client, namespace, quick("privileged"))

    assert_failed_with(api_client, namespace, "privileged", "Forbidden", "violates PodSecurity",
                       "restricted")
    assert not [t for t in trials(api_client, namespace) if t.startswith("privileged-")]
    ok = wait_phase(api_client, namespace, "compliant", ("Succeeded", "Failed"))
    assert ok["status"]["phase"] == "Succeeded", ok["status"]
    assert_posted_once(api_client, namespace, "privileged", "Forbidden")


@pytest.fixture
def admission_policies(api_client, namespace) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Refuse the TuneTrials of experiment `no-trials` and any status of `no-status` that has
    a bestTrial, in this namespace only (as a schema would refuse a value it cannot hold)."""
    adm = client.AdmissionregistrationV1Api(api_client)
    rules = {
        "trials": ({"apiGroups": ["kubetune.io"], "apiVersions": ["*"], "operations": ["CREATE"],
                    "resources": ["tunetrials"]},
                   "object.spec.experiment != 'no-trials'",
                   "TuneTrials of no-trials are refused by policy"),
        "status": ({"apiGroups": ["kubetune.io"], "apiVersions": ["*"], "operations": ["UPDATE"],
                    "resources": ["tuneexperiments/status"]},
                   "object.metadata.name != 'no-status' || !has(object.status) "
                   "|| !has(object.status.bestTrial)",
                   "a bestTrial on no-status is refused by policy"),
    }
    names = []
    for key, (rule, expression, message) in rules.items():
        name = f"{namespace}-{key}"
        names.append(name)
        adm.create_validating_admission_policy({
            "metadata": {"name": name},
            "spec": {"failurePolicy": "Fail", "matchConstraints": {"resourceRules": [rule]},
                     "validations": [{"expression": expression, "message": message,
                                      "reason": "Invalid"}]}})
        adm.create_validating_admission_policy_binding({
            "metadata": {"name": name},
            "spec": {"policyName": name, "validationActions": ["Deny"],
                     "matchResources": {"namespaceSelector": {"matchLabels": {
                         "kubernetes.io/metadata.name": namespace}}}}})
    probe = {"apiVersion": "kubetune.io/v1alpha1", "kind": "TuneTrial",
             "metadata": {"name": "probe", "namespace": namespace},
             "spec": {"experiment": "no-trials", "index": 0, "params": {}}}

    def policy_active() -> bool:
        try:
            client.CustomObjectsApi(api_client).create_namespaced_custom_object(
                "kubetune.io", "v1alpha1", namespace, "tunetrials", probe, dry_run="All")
        except ApiException as e:
            return "refused by policy" in (e.body or "")
        return False

    wait_for(policy_active, timeout=30, what="the admission policies to take effect")
    time.sleep(2)  # the status policy was created last; give it the same moment
    yield
    for name in names:
        adm.delete_validating_admission_policy_binding(name)
        adm.delete_validating_admission_policy(name)


def test_a_trial_or_status_the_apiserver_refuses_fails_its_experiment_with_the_message(
        api_client, namespace, operator: OperatorProcess, admission_policies):
    create(api_client, namespace, quick("allowed"))
    create(api_client, namespace, quick("no-trials"))
    create(api_client, namespace, quick("no-status"))

    assert_failed_with(api_client, namespace, "no-trials", "Invalid",
                       "TuneTrials of no-trials are refused by policy")
    exp = assert_failed_with(api_client, namespace, "no-status", "Invalid",
                             "a bestTrial on no-status is refused by policy")
    assert "bestTrial" not in exp["status"]
    ok = wait_phase(api_client, namespace, "allowed", ("Succeeded", "Failed"))
    assert ok["status"]["phase"] == "Succeeded", ok["status"]
    assert_posted_once(api_client, namespace, "no-trials", "Invalid")


# -- permanent: the template the apiserver refuses ---------------------------------------------
def test_a_typo_in_the_trial_template_fails_the_experiment_naming_each_unknown_field(
        api_client, namespace, operator: OperatorProcess):
    body = quick("typo")
    template = body["spec"]["trialTemplate"]["spec"]
    template["nodeSelctor"] = {"kubetune.io/gpu": "true"}
    main = template["containers"][0]
    main["resorces"] = main.pop("resources")
    create(api_client, namespace, body)  # the CRD keeps a PodSpec as written
    create(api_client, namespace, quick("fine"))

    exp = wait_phase(api_client, namespace, "typo", ("Succeeded", "Failed"), timeout=60)
    status = exp["status"]
    assert status["phase"] == "Failed", status
    assert "nodeSelctor" in status["message"] and "resorces" in status["message"], status
    spec_valid = conditions(exp)["SpecValid"]
    assert (spec_valid["status"], spec_valid["reason"]) == ("False", "InvalidSpec")
    wait_for(lambda: events(api_client, namespace, "typo", "InvalidSpec"), timeout=30,
             what="an InvalidSpec Event")
    assert not [t for t in trials(api_client, namespace) if t.startswith("typo-")]
    ok = wait_phase(api_client, namespace, "fine", ("Succeeded", "Failed"))
    assert ok["status"]["phase"] == "Succeeded", ok["status"]
    assert_posted_once(api_client, namespace, "typo", "InvalidSpec")


# -- permanent: too large to store; deletion always works ----------------------------------------
def ballast(body: dict[str, Any]) -> dict[str, Any]:
    """About 1 MB more spec: ten env variables of 100 kB (each under Linux's 128 KiB)."""
    body = copy.deepcopy(body)
    main = body["spec"]["trialTemplate"]["spec"]["containers"][0]
    main["env"] = [*main["env"], *({"name": f"BALLAST_{i}", "value": "x" * 100_000}
                                   for i in range(10))]
    return body


def test_a_trial_pod_too_large_to_store_fails_the_experiment_and_large_ones_delete(
        api_client, namespace, operator: OperatorProcess):
    # The 60 kB parameter reaches the pod twice as env and ten times in args: 1.7 MB with the
    # ballast, past etcd's 1.5 MiB, while the experiment itself stays near 1 MB.
    huge = ballast(quick("too-large", extra_space={"blob": {"value": "y" * 60_000}}))
    huge["spec"]["trialTemplate"]["spec"]["containers"][0]["args"] = ["${params.blob}"] * 10
    create(api_client, namespace, huge)
    running = ballast(scripted_experiment("large", [0.5, 0.6], sleep=1.0, steps=30))
    create(api_client, namespace, running)

    assert_failed_with(api_client, namespace, "too-large", "TooLarge", "too-large-0-1")
    wait_for(lambda: experiment(api_client, namespace, "large").get("status", {}).get(
        "trials", {}).get("running"), timeout=60, what="the 1 MB experiment's trials to run")

    custom = client.CustomObjectsApi(api_client)
    for name in ("too-large", "large"):
        custom.delete_namespaced_custom_object("kubetune.io", "v1alpha1", namespace,
                                               "tuneexperiments", name)

    def gone() -> bool:
        left = custom.list_namespaced_custom_object("kubetune.io", "v1alpha1", namespace,
                                                    "tuneexperiments")["items"]
        return not left
    wait_for(gone, timeout=60, what="both experiments to be deleted")


# -- transient: retried with backoff, shown, and then done --------------------------------------
def test_a_pod_quota_is_retried_with_a_reconcile_error_condition_until_it_is_lifted(
        api_client, namespace, operator: OperatorProcess):
    core = client.CoreV1Api(api_client)
    core.create_namespaced_resource_quota(namespace, {"metadata": {"name": "no-pods"},
                                                      "spec": {"hard": {"pods": "0"}}})
    wait_for(lambda: (core.read_namespaced_resource_quota("no-pods", namespace).status.hard
                      or None), timeout=30, what="the quota's status")
    create(api_client, namespace, quick("quota"))

    def retrying() -> dict[str, Any] | None:
        exp = experiment(api_client, namespace, "quota")
        return exp if "ReconcileError" in conditions(exp) else None

    exp = wait_for(retrying, timeout=60, what="a ReconcileError condition")
    error = conditions(exp)["ReconcileError"]
    assert (error["status"], error["reason"]) == ("True", "QuotaExceeded")
    assert "exceeded quota" in error["message"]
    assert (exp["status"].get("phase") or "Pending") != "Failed"
    time.sleep(12)  # a few retries, 5 s then 10 s apart
    assert len(events(api_client, namespace, "quota", "ReconcileError")) == 1
    assert 'kubetune_reconcile_errors_total{reason="QuotaExceeded"}' in operator.metrics()

    core.delete_namespaced_resource_quota("no-pods", namespace)
    done = wait_phase(api_client, namespace, "quota", ("Succeeded", "Failed"), timeout=180)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert "ReconcileError" not in conditions(done)


# -- results: from Prometheus when the termination message cannot be read -------------------------
def test_a_garbled_termination_message_still_gives_the_result_prometheus_has(
        api_client, namespace, operator: OperatorProcess):
    # Steps slow enough (about 6 s a trial) for Prometheus to discover and scrape the pods
    # while they run: its discovery hands new targets over at most every 5 s.
    body = scripted_experiment("garbled", [0.5, 0.9], sleep=0.6,
                               extra_space={"garbage_message": {"value": True}},
                               scheduler={"type": "fifo"})
    create(api_client, namespace, body)
    exp = wait_phase(api_client, namespace, "garbled", ("Succeeded", "Failed"), timeout=120)
    assert exp["status"]["phase"] == "Succeeded", exp["status"]
    pods = client.CoreV1Api(api_client).list_namespaced_pod(namespace).items
    messages = {p.status.container_statuses[0].state.terminated.message for p in pods
                if p.status.container_statuses and p.status.container_statuses[0].state.terminated}
    assert messages == {"{not a termination message"}, messages  # the path under test
    for name, trial in trials(api_client, namespace).items():
        status = trial["status"]
        assert status["state"] == "Succeeded", (name, status)
        quality = trial["spec"]["params"]["quality"]
        assert status["metrics"]["accuracy"] == pytest.approx(final_value(quality, 9)), status
        assert status["step"] == 9
    assert exp["status"]["bestTrial"]["name"] == "garbled-1"
