"""Pod Security admission refuses a trial pod: the experiment ends Failed with the Pod Security
message (a Failed condition and one Event), the operator creates no trial and does not loop on
the error, and a compliant experiment in the same namespace runs to the end.

Runs the session's operator against the real API server, whose PodSecurity admission plugin
is on by default; the namespace enforces the `baseline` level by label, as a cluster admin
would set it for tenants."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from tests.integration.test_admission_policy import privileged_experiment
from tests.integration.test_operator import create, trials, wait_phase
from tests.integration.test_reconcile_errors import (
    assert_failed_with,
    assert_posted_once,
    conditions,
    quick,
)
from tests.support.operator import OperatorProcess

NAME = "psa-privileged"  # unique in the session's operator log
BASELINE = {"pod-security.kubernetes.io/enforce": "baseline",
            "pod-security.kubernetes.io/enforce-version": "latest"}


def test_privileged_template_in_a_baseline_namespace_ends_failed_with_the_pod_security_message(
        api_client: client.ApiClient, namespace: str, operator: OperatorProcess) -> None:
    client.CoreV1Api(api_client).patch_namespace(namespace, {"metadata": {"labels": BASELINE}})
    create(api_client, namespace, quick("compliant"))  # the default template passes baseline
    create(api_client, namespace, privileged_experiment(NAME))

    exp: dict[str, Any] = assert_failed_with(
        api_client, namespace, NAME, "Forbidden", 'violates PodSecurity "baseline:latest"')
    message = exp["status"]["message"]
    # Pod Security names every violation; the user sees each one to fix.
    for violation in ("privileged", "host namespaces", "hostNetwork=true", "hostPID=true",
                      "hostPath volumes"):
        assert violation in message, (violation, message)
    assert "spec.trialTemplate" in message, "the message says what to change"
    failed = conditions(exp)["Failed"]
    assert 'violates PodSecurity "baseline:latest"' in failed["message"]
    assert not [t for t in trials(api_client, namespace) if t.startswith(f"{NAME}-")], \
        "no TuneTrial for a pod that can never be created"
    pods = client.CoreV1Api(api_client).list_namespaced_pod(namespace).items
    assert not [p for p in pods if p.metadata.name.startswith(f"{NAME}-")]

    # No loop: one Event and one log line, however many ticks pass, and no traceback.
    assert_posted_once(api_client, namespace, NAME, "Forbidden")
    log = operator.log.read_text()
    mentions = [line for line in log.splitlines() if NAME in line]
    assert len(mentions) == 1 and "experiment failed" in mentions[0], mentions
    assert "Traceback" not in log[log.index(mentions[0]):], "see the operator's log"

    ok = wait_phase(api_client, namespace, "compliant", ("Succeeded", "Failed"))
    assert ok["status"]["phase"] == "Succeeded", ok["status"]
