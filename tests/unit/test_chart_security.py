"""The chart's security options, rendered by the real helm binary (no cluster): the admission
policy that makes creating an experiment need the right to create pods, the users' roles, the
NetworkPolicies, the bundled Prometheus' security contexts, and the Kubernetes versions the
chart says it needs. What the API server does with these objects is tests/integration's."""

from __future__ import annotations

import re
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_chart_render import (
    CHART,
    FULLNAME,
    RELEASE,
    RELEASE_NS,
    find,
    helm_run,
    one,
    render,
    rule_table,
    set_args,
)

POLICY = f"{FULLNAME}-creator-may-create-pods"
VIEW_VERBS = {"get", "list", "watch"}
EDIT_VERBS = VIEW_VERBS | {"create", "update", "patch", "delete"}
AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-"


def pod_labels(objects: list[dict[str, Any]], name: str) -> dict[str, str]:
    return dict(one(objects, "Deployment", name)["spec"]["template"]["metadata"]["labels"])


def port_names(objects: list[dict[str, Any]], name: str) -> set[str]:
    pod = one(objects, "Deployment", name)["spec"]["template"]["spec"]
    return {p["name"] for c in pod["containers"] for p in c.get("ports", [])}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector (matchLabels and Exists/In expressions) against a pod's labels."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expr in selector.get("matchExpressions", []):
        value = labels.get(expr["key"])
        ok = {"Exists": value is not None, "In": value in expr.get("values", [])}[expr["operator"]]
        if not ok:
            return False
    return True


# -- the admission policy ---------------------------------------------------------------------
def test_admission_policy_refuses_experiments_whose_creator_may_not_create_pods() -> None:
    objects = render()
    policy = one(objects, "ValidatingAdmissionPolicy", POLICY)["spec"]
    assert policy["failurePolicy"] == "Fail"
    (rule,) = policy["matchConstraints"]["resourceRules"]
    # The experiments themselves, not their status subresource (which only the operator writes).
    assert rule == {"apiGroups": ["kubetune.io"], "apiVersions": ["*"],
                    "operations": ["CREATE", "UPDATE"], "resources": ["tuneexperiments"]}
    (check,) = policy["variables"]
    assert check["expression"].replace(" ", "") == (
        "authorizer.group('').resource('pods').namespace(request.namespace).check('create')")
    (validation,) = policy["validations"]
    assert validation["expression"] == f"variables.{check['name']}.allowed()"
    assert validation["reason"] == "Forbidden"
    message = validation["messageExpression"]
    for words in ("request.userInfo.username", "may not create pods in namespace",
                  'resource "pods", verb "create"'):
        assert words in message, (words, message)
    # Only creates, and updates that change the template, pay for the authorizer call.
    (condition,) = policy["matchConditions"]
    assert condition["expression"].startswith("request.operation == 'CREATE' ||")
    assert "object.spec.trialTemplate != oldObject.spec.trialTemplate" in condition["expression"]

    binding = one(objects, "ValidatingAdmissionPolicyBinding", POLICY)["spec"]
    assert binding == {"policyName": POLICY, "validationActions": ["Deny"]}, \
        "every namespace: one added to watchNamespaces later must not run unchecked experiments"


def test_admission_policy_values_set_failure_policy_actions_and_namespaces() -> None:
    selector = {"matchLabels": {"kubetune.io/tenants": "true"}}
    objects = render({"admissionPolicy.failurePolicy": "Ignore",
                      "admissionPolicy.validationActions": ["Warn", "Audit"],
                      "admissionPolicy.namespaceSelector": selector})
    assert one(objects, "ValidatingAdmissionPolicy", POLICY)["spec"]["failurePolicy"] == "Ignore"
    binding = one(objects, "ValidatingAdmissionPolicyBinding", POLICY)["spec"]
    assert binding["validationActions"] == ["Warn", "Audit"]
    assert binding["matchResources"] == {"namespaceSelector": selector}


def test_admission_policy_disabled_by_value_renders_no_policy() -> None:
    objects = render({"admissionPolicy.enabled": False})
    assert not find(objects, "ValidatingAdmissionPolicy")
    assert not find(objects, "ValidatingAdmissionPolicyBinding")


def test_cluster_older_than_1_30_is_refused_with_the_opt_out_unless_the_policy_is_off() -> None:
    old = helm_run("template", RELEASE, str(CHART), "--kube-version", "1.29.5", check=False)
    assert old.returncode != 0
    assert "Kubernetes 1.30 or newer" in old.stderr and "v1.29.5" in old.stderr
    assert "set admissionPolicy.enabled=false" in old.stderr
    for version in ("1.28.0", "1.29.5"):
        objects = render({"admissionPolicy.enabled": False}, "--kube-version", version)
        assert one(objects, "Deployment", FULLNAME)
        assert not find(objects, "ValidatingAdmissionPolicy")
    assert one(render({}, "--kube-version", "1.30.0"), "ValidatingAdmissionPolicy", POLICY)


def test_chart_kube_version_floor_is_what_the_crds_use() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["kubeVersion"] == ">=1.28.0-0"
    # The floor's reason: CEL rules that name the field they refuse (fieldPath, Kubernetes 1.28).
    crds = "\n".join(p.read_text() for p in (CHART / "crds").glob("*.yaml"))
    assert "fieldPath:" in crds and "x-kubernetes-validations" in crds
    below = helm_run("template", RELEASE, str(CHART), "--kube-version", "1.27.9",
                     *set_args({"admissionPolicy.enabled": False}), check=False)
    assert below.returncode != 0 and "kubeVersion" in below.stderr


def test_notes_name_no_file_of_a_checkout() -> None:
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    assert not re.search(r"\b(examples|charts|docs|hack|crds|tests)/", notes), notes
    assert "kubectl explain tuneexperiment" in notes


def test_packaged_chart_stands_alone_with_its_readme(tmp_path: Path) -> None:
    helm_run("package", str(CHART), "--destination", str(tmp_path))
    (package,) = tmp_path.glob("kubetune-*.tgz")
    with tarfile.open(package) as tar:
        names = set(tar.getnames())
    assert {"kubetune/README.md", "kubetune/values.schema.json", "kubetune/templates/NOTES.txt"} <= names
    assert "kubetune/README.md.gotmpl" not in names
    objects = [d for d in yaml.safe_load_all(helm_run("template", RELEASE, str(package)).stdout) if d]
    assert one(objects, "ValidatingAdmissionPolicy", POLICY)


# -- the users' roles ---------------------------------------------------------------------------
def test_user_roles_aggregate_read_into_view_and_writes_into_edit_and_admin() -> None:
    objects = render()
    view = one(objects, "ClusterRole", "kubetune-view")
    edit = one(objects, "ClusterRole", "kubetune-edit")
    kinds = {("kubetune.io", "tuneexperiments"), ("kubetune.io", "tunetrials")}
    assert rule_table(view["rules"]) == dict.fromkeys(kinds, VIEW_VERBS)
    assert rule_table(edit["rules"]) == dict.fromkeys(kinds, EDIT_VERBS)
    aggregated = {name: {k.removeprefix(AGGREGATE) for k, v in role["metadata"]["labels"].items()
                         if k.startswith(AGGREGATE) and v == "true"}
                  for name, role in (("view", view), ("edit", edit))}
    assert aggregated == {"view": {"view", "edit", "admin"}, "edit": {"edit", "admin"}}
    assert not find(objects, "ClusterRoleBinding", "kubetune-view"), "bound through the built-in roles"


def test_user_roles_take_a_name_prefix_or_are_left_out() -> None:
    names = {o["metadata"]["name"] for o in render({"userRoles.namePrefix": "tuning"})
             if o["kind"] == "ClusterRole"}
    assert {"tuning-view", "tuning-edit"} <= names and "kubetune-view" not in names
    objects = render({"userRoles.create": False})
    assert not find(objects, "ClusterRole", "kubetune-view")
    assert not find(objects, "ClusterRole", "kubetune-edit")


# -- NetworkPolicies ----------------------------------------------------------------------------
def test_network_policies_are_off_by_default() -> None:
    assert not find(render(), "NetworkPolicy")


def test_only_the_operator_and_listed_namespaces_may_query_the_bundled_prometheus() -> None:
    objects = render({"networkPolicy.enabled": True, "watchNamespaces": ["team-a"],
                      "networkPolicy.prometheusClientNamespaces": ["grafana"]})
    policy = one(objects, "NetworkPolicy", f"{FULLNAME}-prometheus", RELEASE_NS)["spec"]
    assert selects(policy["podSelector"], pod_labels(objects, f"{FULLNAME}-prometheus"))
    assert not selects(policy["podSelector"], pod_labels(objects, FULLNAME))
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert "http" in port_names(objects, f"{FULLNAME}-prometheus")
    operator_peer, namespace_peer = ingress["from"]
    assert set(operator_peer) == {"podSelector"}, "the operator's pods in the release namespace"
    assert selects(operator_peer["podSelector"], pod_labels(objects, FULLNAME))
    assert namespace_peer == {"namespaceSelector": {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["grafana"]}]}}


def test_bundled_prometheus_may_reach_trial_pods_metrics_port_dns_and_the_api_server() -> None:
    objects = render({"networkPolicy.enabled": True, "watchNamespaces": ["team-a"],
                      "networkPolicy.apiServer.cidrs": ["10.0.0.1/32"]})
    egress = one(objects, "NetworkPolicy", f"{FULLNAME}-prometheus")["spec"]["egress"]
    trials, operator, dns, apiserver = egress
    # The scrape config keeps only the container port named `metrics` of pods labelled as trials.
    assert trials["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    (peer,) = trials["to"]
    assert peer["podSelector"] == {"matchExpressions": [{"key": "kubetune.io/trial",
                                                         "operator": "Exists"}]}
    assert peer["namespaceSelector"]["matchExpressions"][0]["values"] == ["team-a"]
    assert selects(operator["to"][0]["podSelector"], pod_labels(objects, FULLNAME))
    assert operator["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert "metrics" in port_names(objects, FULLNAME)
    assert {p["port"] for p in dns["ports"]} == {53} and "to" not in dns
    assert apiserver == {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}],
                         "to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}]}
    cluster_wide = render({"networkPolicy.enabled": True})
    trials = one(cluster_wide, "NetworkPolicy", f"{FULLNAME}-prometheus")["spec"]["egress"][0]
    assert trials["to"][0]["namespaceSelector"] == {}, "trial pods in every namespace"


def test_operator_accepts_only_metrics_scrapes_and_restricts_egress_on_request() -> None:
    objects = render({"networkPolicy.enabled": True,
                      "networkPolicy.metricsClientNamespaces": ["monitoring"]})
    policy = one(objects, "NetworkPolicy", FULLNAME)["spec"]
    assert selects(policy["podSelector"], pod_labels(objects, FULLNAME))
    assert policy["policyTypes"] == ["Ingress"], "egress stays open unless restricted"
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    prometheus_peer, namespace_peer = ingress["from"]
    assert selects(prometheus_peer["podSelector"], pod_labels(objects, f"{FULLNAME}-prometheus"))
    assert namespace_peer["namespaceSelector"]["matchExpressions"][0]["values"] == ["monitoring"]

    extra = {"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}], "ports": [{"port": 9090}]}
    restricted = one(render({"networkPolicy.enabled": True,
                             "networkPolicy.operatorEgress.restrict": True,
                             "networkPolicy.operatorEgress.extra": [extra]}),
                     "NetworkPolicy", FULLNAME)["spec"]
    assert restricted["policyTypes"] == ["Ingress", "Egress"]
    dns, apiserver, prometheus, added = restricted["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert {p["port"] for p in apiserver["ports"]} == {443, 6443} and "to" not in apiserver
    assert prometheus["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert added == extra

    alone = one(render({"networkPolicy.enabled": True, "prometheus.bundled.enabled": False,
                        "prometheus.url": "http://prometheus.monitoring:9090"}),
                "NetworkPolicy", FULLNAME)["spec"]
    assert alone["ingress"] == [], "no bundled Prometheus and no namespace listed: no one scrapes it"


# -- the bundled Prometheus' security contexts --------------------------------------------------
def test_bundled_prometheus_security_contexts_default_to_a_fixed_non_root_user() -> None:
    pod = one(render(), "Deployment", f"{FULLNAME}-prometheus")["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534,
                                      "fsGroup": 65534, "seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def test_security_contexts_without_fixed_ids_for_openshift() -> None:
    objects = render({"podSecurityContext": {"runAsUser": None, "runAsGroup": None},
                      "prometheus.bundled.podSecurityContext": {
                          "runAsUser": None, "runAsGroup": None, "fsGroup": None},
                      "prometheus.bundled.securityContext": {"readOnlyRootFilesystem": False}})
    for name in (FULLNAME, f"{FULLNAME}-prometheus"):
        pod = one(objects, "Deployment", name)["spec"]["template"]["spec"]
        assert pod["securityContext"] == {"runAsNonRoot": True,
                                          "seccompProfile": {"type": "RuntimeDefault"}}, name
    prometheus = one(objects, "Deployment", f"{FULLNAME}-prometheus")["spec"]["template"]["spec"]
    container = prometheus["containers"][0]["securityContext"]
    assert container["readOnlyRootFilesystem"] is False and container["capabilities"] == {"drop": ["ALL"]}


def test_null_security_contexts_render_none() -> None:
    objects = render({"podSecurityContext": None, "securityContext": None,
                      "prometheus.bundled.podSecurityContext": None,
                      "prometheus.bundled.securityContext": None})
    for name in (FULLNAME, f"{FULLNAME}-prometheus"):
        pod = one(objects, "Deployment", name)["spec"]["template"]["spec"]
        assert "securityContext" not in pod and "securityContext" not in pod["containers"][0]


# -- the values schema --------------------------------------------------------------------------
@pytest.mark.parametrize(("values", "complaint"), [
    ({"admissionPolicy.failurePolicy": "Sometimes"}, "/admissionPolicy/failurePolicy"),
    ({"admissionPolicy.validationActions": ["Deny", "Warn"]}, "/admissionPolicy/validationActions"),
    ({"admissionPolicy.validationActions": []}, "/admissionPolicy/validationActions"),
    ({"admissionPolicy.namespaceSelector": {"matchLabel": {"a": "b"}}},
     "/admissionPolicy/namespaceSelector"),
    ({"userRoles.namePrefix": "Kube_Tune"}, "/userRoles/namePrefix"),
    ({"networkPolicy.prometheusClientNamespaces": "grafana"}, "/networkPolicy/prometheusClientNamespaces"),
    ({"networkPolicy.apiServer.cidrs": ["10.0.0.1"]}, "/networkPolicy/apiServer/cidrs/0"),
    ({"networkPolicy.operatorEgress.restrict": "yes"}, "/networkPolicy/operatorEgress/restrict"),
], ids=lambda v: str(v))
def test_values_schema_rejects_a_bad_security_value(values: dict[str, Any], complaint: str) -> None:
    result = helm_run("template", RELEASE, str(CHART), *set_args(values), check=False)
    assert result.returncode != 0, f"helm template accepted {values}"
    assert complaint in result.stderr, result.stderr
