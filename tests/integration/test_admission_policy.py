"""The chart's admission policy on the real API server (RBAC on): creating a TuneExperiment
needs the right to create pods in its namespace.

The policy objects are the chart's own, rendered by helm with the values under test and
created on the session's control plane; the tenants are ServiceAccounts authenticated with
bound tokens (TokenRequest), so RBAC and the policy's `authorizer` judge them as they would
judge a real user. Each test removes what it installed: the policy binds every namespace.
"""

from __future__ import annotations

import base64
import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from kubetune.devcluster import LocalCluster
from tests.integration.kube import wait_for
from tests.support.operator import OperatorProcess, scripted_experiment
from tests.unit.test_chart_render import render

POLICY = "kt-kubetune-creator-may-create-pods"
GROUP, VERSION, PLURAL = "kubetune.io", "v1alpha1", "tuneexperiments"
POLICY_KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
# A ServiceAccount bound to cluster-admin, as a refused template would name it (nothing
# creates it: no pod is made from those templates).
CLUSTER_ADMIN_SA = "ops-admin"


def policy_objects(values: dict[str, Any]) -> list[dict[str, Any]]:
    """What the chart renders for the admission check with these values."""
    return [o for o in render(values) if o["kind"] in POLICY_KINDS]


@contextlib.contextmanager
def installed(admin: client.ApiClient, objects: list[dict[str, Any]]) -> Iterator[None]:
    adm = client.AdmissionregistrationV1Api(admin)
    create = {"ValidatingAdmissionPolicy": adm.create_validating_admission_policy,
              "ValidatingAdmissionPolicyBinding": adm.create_validating_admission_policy_binding}
    delete = {"ValidatingAdmissionPolicy": adm.delete_validating_admission_policy,
              "ValidatingAdmissionPolicyBinding": adm.delete_validating_admission_policy_binding}
    for obj in objects:
        create[obj["kind"]](obj)
    try:
        yield
    finally:
        for obj in reversed(objects):
            with contextlib.suppress(ApiException):
                delete[obj["kind"]](obj["metadata"]["name"])


def tenant(admin: client.ApiClient, cluster: LocalCluster, namespace: str, name: str,
           rules: list[dict[str, Any]], path: Path) -> tuple[client.ApiClient, Path]:
    """A ServiceAccount holding only `rules` in `namespace`: its API client and kubeconfig."""
    core, rbac = client.CoreV1Api(admin), client.RbacAuthorizationV1Api(admin)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    rbac.create_namespaced_role(namespace, {"metadata": {"name": name}, "rules": rules})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]})
    token = core.create_namespaced_service_account_token(name, namespace, client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))).status.token
    ca = (Path(cluster.state.state_dir) / "pki" / "ca.crt").read_bytes()
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": cluster.state.apiserver_url,
                                                   "certificate-authority-data": base64.b64encode(ca).decode()}}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": "local", "user": name, "namespace": namespace}}],
        "current-context": name,
    }))
    path.chmod(0o600)
    return config.new_client_from_config(config_file=str(path)), path


EXPERIMENTS_ONLY = [{"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["create", "get", "list"]}]
WITH_PODS = [*EXPERIMENTS_ONLY, {"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}]


def can(api: client.ApiClient, verb: str, resource: str, namespace: str, group: str = "") -> bool:
    review = client.AuthorizationV1Api(api).create_self_subject_access_review({"spec": {
        "resourceAttributes": {"verb": verb, "resource": resource, "namespace": namespace,
                               "group": group}}})
    return bool(review.status.allowed)


def create_as(api: client.ApiClient, namespace: str, body: dict[str, Any],
              dry_run: bool = False) -> None:
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body, **({"dry_run": "All"} if dry_run else {}))


def refusal(api: client.ApiClient, namespace: str, body: dict[str, Any],
            dry_run: bool = False) -> ApiException | None:
    try:
        create_as(api, namespace, body, dry_run)
    except ApiException as e:
        return e
    return None


def wait_until_policy(active: bool, api: client.ApiClient, namespace: str) -> None:
    """Policies take effect once the API server's informers see them: probe with a dry run."""
    probe = scripted_experiment("probe", [0.5])

    def settled() -> bool:
        e = refusal(api, namespace, probe, dry_run=True)
        return (e is not None and e.status == 403 and POLICY in str(e.body)) == active

    wait_for(settled, timeout=30, interval=0.2,
             what=f"the admission policy to be {'in force' if active else 'gone'}")


KUBECTL = shutil.which("kubectl")


def kubectl_apply(kubeconfig: Path, body: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    assert KUBECTL
    manifest = tmp_path / f"{body['metadata']['name']}.yaml"
    manifest.write_text(yaml.safe_dump(body))
    return subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), "apply", "-f", str(manifest)],
                          capture_output=True, text=True, timeout=60, check=False)


def stored(admin: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return dict(client.CustomObjectsApi(admin).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name))
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def privileged_experiment(name: str, service_account: str | None = None) -> dict[str, Any]:
    """A template that takes over the node: privileged, root, the host's / mounted, host
    network and PID namespace, and optionally a (powerful) ServiceAccount's token."""
    body = scripted_experiment(name, [0.5])
    pod = body["spec"]["trialTemplate"]["spec"]
    pod.update({"hostNetwork": True, "hostPID": True,
                "volumes": [{"name": "host", "hostPath": {"path": "/"}}]})
    if service_account:
        pod.update({"serviceAccountName": service_account, "automountServiceAccountToken": True})
    pod["containers"][0].update({"securityContext": {"privileged": True, "runAsUser": 0},
                                 "volumeMounts": [{"name": "host", "mountPath": "/host"}]})
    return body


def test_tenant_who_may_not_create_pods_is_refused_naming_the_missing_permission(
        cluster: LocalCluster, api_client: client.ApiClient, crds: None, namespace: str,
        tmp_path: Path) -> None:
    api, _ = tenant(api_client, cluster, namespace, "tenant", EXPERIMENTS_ONLY,
                    tmp_path / "tenant.kubeconfig")
    assert can(api, "create", PLURAL, namespace, GROUP)
    assert not can(api, "create", "pods", namespace), "`kubectl auth can-i create pods` says no"
    with installed(api_client, policy_objects({})):
        wait_until_policy(True, api, namespace)
        e = refusal(api, namespace, privileged_experiment("escalate", CLUSTER_ADMIN_SA))
        assert e is not None and e.status == 403, e
        message = yaml.safe_load(e.body)["message"]
        assert f'user "system:serviceaccount:{namespace}:tenant" may not create pods in namespace ' \
               f'"{namespace}"' in message, message
        assert 'resource "pods", verb "create"' in message and POLICY in message, message
    assert stored(api_client, namespace, "escalate") is None


@pytest.mark.skipif(KUBECTL is None, reason="no kubectl on PATH (the API client's calls are tested without it)")
def test_kubectl_apply_refuses_the_tenant_and_admits_one_who_may_create_pods(
        cluster: LocalCluster, api_client: client.ApiClient, crds: None, namespace: str,
        tmp_path: Path) -> None:
    narrow, narrow_config = tenant(api_client, cluster, namespace, "tenant", EXPERIMENTS_ONLY,
                                   tmp_path / "tenant.kubeconfig")
    _, pods_config = tenant(api_client, cluster, namespace, "pod-tenant", WITH_PODS,
                            tmp_path / "pod-tenant.kubeconfig")
    with installed(api_client, policy_objects({})):
        wait_until_policy(True, narrow, namespace)
        refused = kubectl_apply(narrow_config, privileged_experiment("escalate", CLUSTER_ADMIN_SA), tmp_path)
        assert refused.returncode != 0, refused.stdout
        assert "(Forbidden)" in refused.stderr, refused.stderr
        assert f'user "system:serviceaccount:{namespace}:tenant" may not create pods' in refused.stderr
        assert 'resource "pods", verb "create"' in refused.stderr, refused.stderr
        applied = kubectl_apply(pods_config, scripted_experiment("allowed", [0.5]), tmp_path)
        assert applied.returncode == 0 and "created" in applied.stdout, applied.stderr
    assert stored(api_client, namespace, "escalate") is None
    assert stored(api_client, namespace, "allowed") is not None


@pytest.mark.skipif(KUBECTL is None, reason="no kubectl on PATH (the API client's calls are tested without it)")
def test_warn_only_policy_admits_the_tenant_with_the_message_as_a_warning(
        cluster: LocalCluster, api_client: client.ApiClient, crds: None, namespace: str,
        tmp_path: Path) -> None:
    _, narrow_config = tenant(api_client, cluster, namespace, "tenant", EXPERIMENTS_ONLY,
                              tmp_path / "tenant.kubeconfig")
    objects = policy_objects({"admissionPolicy.validationActions": ["Warn"]})
    with installed(api_client, objects):
        # Until the policy is in force kubectl applies without a warning: try again under a new
        # name (deleting the first would wait on the operator's finalizer). For a moment the
        # apiserver may still enforce an earlier test's Deny binding of the same name: refused,
        # try again. A Warn binding that denied would never give the warning looked for.
        attempts: list[str] = []

        def warned() -> subprocess.CompletedProcess[str] | None:
            attempts.append(f"warned-{len(attempts)}")
            applied = kubectl_apply(narrow_config, scripted_experiment(attempts[-1], [0.5]),
                                    tmp_path)
            if applied.returncode != 0:
                assert "denied request" in applied.stderr, applied.stderr
                return None
            return applied if "may not create pods" in applied.stderr else None

        applied = wait_for(warned, timeout=30, interval=0.5, what="a warning from the policy")
        assert applied.stderr.startswith("Warning:") and POLICY in applied.stderr, applied.stderr
    assert stored(api_client, namespace, attempts[-1]) is not None


def test_tenant_who_may_create_pods_gets_its_experiment(
        cluster: LocalCluster, api_client: client.ApiClient, crds: None, namespace: str,
        tmp_path: Path) -> None:
    api, _ = tenant(api_client, cluster, namespace, "pod-tenant", WITH_PODS,
                    tmp_path / "pod-tenant.kubeconfig")
    narrow, _ = tenant(api_client, cluster, namespace, "tenant", EXPERIMENTS_ONLY,
                       tmp_path / "tenant.kubeconfig")
    with installed(api_client, policy_objects({})):
        wait_until_policy(True, narrow, namespace)  # in force: the narrow tenant is refused
        create_as(api, namespace, scripted_experiment("allowed", [0.5]))
    exp = stored(api_client, namespace, "allowed")
    assert exp is not None and exp["spec"]["trialTemplate"]["spec"]["containers"]


def test_edits_that_leave_the_template_alone_are_not_checked(
        cluster: LocalCluster, api_client: client.ApiClient, crds: None, namespace: str,
        tmp_path: Path) -> None:
    # A labeller who may patch experiments but not create pods (as for the operator's own
    # finalizer and annotation patches, or a user's `kubectl label`).
    labeller, _ = tenant(api_client, cluster, namespace, "labeller", [
        {"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["get", "patch"]}],
        tmp_path / "labeller.kubeconfig")
    narrow, _ = tenant(api_client, cluster, namespace, "tenant", EXPERIMENTS_ONLY,
                       tmp_path / "tenant.kubeconfig")
    create_as(api_client, namespace, scripted_experiment("labelled", [0.5]))
    with installed(api_client, policy_objects({})):
        wait_until_policy(True, narrow, namespace)
        client.CustomObjectsApi(labeller).patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "labelled", {"metadata": {"labels": {"team": "a"}}})
    assert (stored(api_client, namespace, "labelled") or {})["metadata"]["labels"] == {"team": "a"}


def test_policy_disabled_by_value_gives_the_old_behaviour(
        cluster: LocalCluster, api_client: client.ApiClient, crds: None, namespace: str,
        operator: OperatorProcess, tmp_path: Path) -> None:
    objects = policy_objects({"admissionPolicy.enabled": False})
    assert objects == [], "admissionPolicy.enabled=false renders no policy"
    api, _ = tenant(api_client, cluster, namespace, "tenant", EXPERIMENTS_ONLY,
                    tmp_path / "tenant.kubeconfig")
    with installed(api_client, objects):
        wait_until_policy(False, api, namespace)  # none left over from another test
        create_as(api, namespace, privileged_experiment("unchecked"))
    # The hole the policy closes: the operator creates the tenant's pod, as written, with
    # its own rights, although the tenant may not create pods.
    core = client.CoreV1Api(api_client)

    def privileged_pod() -> Any:
        pods = [p for p in core.list_namespaced_pod(namespace).items
                if (p.metadata.labels or {}).get("kubetune.io/experiment") == "unchecked"]
        return next((p for p in pods if p.spec.host_pid and p.spec.host_network
                     and p.spec.containers[0].security_context.privileged), None)

    pod = wait_for(privileged_pod, timeout=60, what="the operator to create the tenant's pod")
    assert pod.spec.volumes[0].host_path.path == "/"
