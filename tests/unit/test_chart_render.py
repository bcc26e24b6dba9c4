"""The Helm chart, rendered by the real helm binary (no cluster): lint, security
context, RBAC rules (exact, justified, never Secrets), Prometheus wiring, the
values schema and the CRD copies."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kubetune"
RELEASE, RELEASE_NS = "kt", "kubetune-system"
FULLNAME = f"{RELEASE}-kubetune"

# Every rule the operator holds in a namespace it reconciles, and the code that needs it.
# A change to the chart's rules or to the operator's API calls must change this table.
NAMESPACED_RULES: dict[tuple[str, str], tuple[set[str], str]] = {
    ("kubetune.io", "tuneexperiments"): (
        {"list", "watch", "patch"}, "kopf watches experiments, patches its finalizer and annotations"),
    ("kubetune.io", "tuneexperiments/status"): (
        {"patch"}, "Gateway.patch_experiment_status"),
    ("kubetune.io", "tunetrials"): (
        {"get", "list", "watch", "create"},
        "Gateway.list_trials, create_trial, get_trial (after a 409); the watch-fed view"),
    ("kubetune.io", "tunetrials/status"): ({"patch"}, "Gateway.patch_trial_status"),
    ("kubetune.io", "tuneexperiments/finalizers"): (
        {"update"}, "blockOwnerDeletion on trials (OwnerReferencesPermissionEnforcement)"),
    ("kubetune.io", "tunetrials/finalizers"): (
        {"update"}, "blockOwnerDeletion on pods (OwnerReferencesPermissionEnforcement)"),
    ("", "pods"): ({"list", "watch", "create", "delete"},
                   "Gateway.list_pods, create_pod, delete_pod; the watch-fed view"),
    ("", "events"): ({"create"}, "kopf.event posts core v1 Events"),
    ("batch", "jobs"): ({"list", "watch", "create", "delete"},
                        "Gateway.list_jobs, create_job, delete_job (multi-worker trials); "
                        "the watch-fed view"),
    ("", "services"): ({"create"}, "Gateway.create_service (a multi-worker trial's workers)"),
}
# Whole-trial admission reads every node's GPUs and what the cluster's pods and worker Jobs
# ask for (Gateway.capacity_objects); listed first, so a namespaced rule's verbs win.
CAPACITY_RULE = {
    ("", "nodes"): ({"list"}, "Gateway.capacity_objects: allocatable nvidia.com/gpu"),
    ("", "pods"): ({"list"}, "Gateway.capacity_objects: GPUs requested per node"),
    ("batch", "jobs"): ({"list"}, "Gateway.capacity_objects: worker pods not made yet"),
}
CRD_RULE = {("apiextensions.k8s.io", "customresourcedefinitions"): (
    {"list", "watch"}, "kopf's resource observer")}
NAMESPACE_RULE = {("", "namespaces"): (
    {"list", "watch"}, "kopf's namespace observer, only when namespaces are listed")}


@cache
def helm() -> str:
    from kubetune.devcluster.binaries import find_binaries

    path = find_binaries().helm  # cached by `make binaries`; built from the Go proxy otherwise
    assert path, "helm is missing from the control plane's binaries"
    return path


def helm_run(command: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([helm(), command, *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {command} failed:\n{result.stdout}\n{result.stderr}")
    return result


def set_args(values: dict[str, Any]) -> list[str]:
    """--set-json for each value, so lists and booleans keep their types."""
    import json

    return [arg for key, value in values.items() for arg in ("--set-json", f"{key}={json.dumps(value)}")]


def render(values: dict[str, Any] | None = None, *extra: str,
           namespace: str = RELEASE_NS) -> list[dict[str, Any]]:
    """`helm template` of the chart: the list of rendered objects."""
    out = helm_run("template", RELEASE, str(CHART), "--namespace", namespace,
                   *set_args(values or {}), *extra).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None,
         namespace: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind
            and (name is None or o["metadata"]["name"] == name)
            and (namespace is None or o["metadata"].get("namespace") == namespace)]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None,
        namespace: str | None = None) -> dict[str, Any]:
    found = find(objects, kind, name, namespace)
    assert len(found) == 1, f"expected one {kind} {name or ''} in {namespace or 'any namespace'}, got {len(found)}"
    return found[0]


def rule_table(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    table: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        assert not rule.get("resourceNames") and not rule.get("nonResourceURLs"), rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                table.setdefault((group, resource), set()).update(rule["verbs"])
    return table


def expected(*tables: dict[tuple[str, str], tuple[set[str], str]]) -> dict[tuple[str, str], set[str]]:
    return {key: verbs for table in tables for key, (verbs, _why) in table.items()}


def operator_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = one(objects, "Deployment", FULLNAME)
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["operator"]
    return dict(containers[0])


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


def scrape_config(objects: list[dict[str, Any]]) -> dict[str, Any]:
    cm = one(objects, "ConfigMap", f"{FULLNAME}-prometheus")
    return dict(yaml.safe_load(cm["data"]["prometheus.yml"]))


# The main value combinations a user picks between.
COMBINATIONS: dict[str, dict[str, Any]] = {
    "defaults (cluster-wide, bundled Prometheus)": {},
    "watched namespaces": {"watchNamespaces": ["team-a", "team-b"]},
    "external Prometheus": {"prometheus.bundled.enabled": False,
                            "prometheus.url": "http://prometheus.monitoring:9090"},
    "prometheus-operator": {"prometheus.bundled.enabled": False, "prometheus.podMonitor.enabled": True,
                            "prometheus.url": "http://prometheus-operated.monitoring:9090",
                            "watchNamespaces": ["team-a"]},
    "admission policy off, no user roles": {"admissionPolicy.enabled": False,
                                            "userRoles.create": False},
    "admission policy warn-only in labelled namespaces": {
        "admissionPolicy.validationActions": ["Warn", "Audit"],
        "admissionPolicy.failurePolicy": "Ignore",
        "admissionPolicy.namespaceSelector": {"matchLabels": {"kubetune.io/tenants": "true"}}},
    "network policies, watched namespaces, restricted operator egress": {
        "networkPolicy.enabled": True, "watchNamespaces": ["team-a"],
        "networkPolicy.prometheusClientNamespaces": ["grafana"],
        "networkPolicy.metricsClientNamespaces": ["monitoring"],
        "networkPolicy.apiServer.cidrs": ["10.0.0.1/32"],
        "networkPolicy.operatorEgress.restrict": True},
    "network policies, external Prometheus": {
        "networkPolicy.enabled": True, "prometheus.bundled.enabled": False,
        "prometheus.url": "http://prometheus.monitoring:9090"},
    "OpenShift restricted SCC (no fixed UIDs)": {
        "podSecurityContext": {"runAsUser": None, "runAsGroup": None},
        "prometheus.bundled.podSecurityContext": {"runAsUser": None, "runAsGroup": None,
                                                  "fsGroup": None}},
}


@pytest.fixture(scope="module", params=list(COMBINATIONS), ids=list(COMBINATIONS))
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(COMBINATIONS[request.param])


# -- lint ---------------------------------------------------------------------------------
@pytest.mark.parametrize("values", list(COMBINATIONS.values()), ids=list(COMBINATIONS))
def test_chart_lints_clean_in_strict_mode(values: dict[str, Any]) -> None:
    result = helm_run("lint", "--strict", str(CHART), *set_args(values))
    assert "0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


# -- CRDs ---------------------------------------------------------------------------------
def test_chart_crds_are_byte_identical_to_the_generated_crds() -> None:
    generated = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    copied = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert generated, "no generated CRDs in crds/"
    assert sorted(copied) == sorted(generated), "chart CRDs differ from crds/: run `make crds`"
    for name, body in generated.items():
        assert copied[name] == body, f"charts/kubetune/crds/{name} is stale: run `make crds`"


# -- the operator's Deployment ---------------------------------------------------------------
def test_operator_runs_once_non_root_read_only_without_privileges(rendered: list[dict[str, Any]]) -> None:
    deployment = one(rendered, "Deployment", FULLNAME)
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}, "a rolling update would run two operators at once"
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == FULLNAME
    assert pod.get("automountServiceAccountToken", True) is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"].get("runAsUser") != 0  # unset: the image's user (10001)
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = operator_container(rendered)
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["runAsNonRoot"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "privileged" not in sc or sc["privileged"] is False
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    # The read-only root gets one writable scratch directory.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts == {"/tmp": "tmp"}
    assert {v["name"]: v for v in pod["volumes"]}["tmp"]["emptyDir"]


def test_probes_hit_kopf_healthz_on_the_health_port(rendered: list[dict[str, Any]]) -> None:
    container = operator_container(rendered)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = env_of(container)
    assert ports == {"metrics": int(env["KUBETUNE_METRICS_PORT"]),
                     "health": int(env["KUBETUNE_HEALTH_PORT"])}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_operator_env_carries_namespaces_tick_and_prometheus_url() -> None:
    env = env_of(operator_container(render({"watchNamespaces": ["a", "b"], "tickSeconds": 0.5})))
    assert env["KUBETUNE_NAMESPACES"] == "a,b"
    assert env["KUBETUNE_TICK_SECONDS"] == "0.5"
    assert env["KUBETUNE_PROMETHEUS_URL"] == f"http://{FULLNAME}-prometheus.{RELEASE_NS}.svc:9090"
    env = env_of(operator_container(render(COMBINATIONS["external Prometheus"])))
    assert env["KUBETUNE_NAMESPACES"] == ""  # cluster-wide
    assert env["KUBETUNE_PROMETHEUS_URL"] == "http://prometheus.monitoring:9090"


def test_metrics_service_selects_the_operator_pod_by_its_metrics_port() -> None:
    objects = render()
    service = one(objects, "Service", f"{FULLNAME}-metrics")
    labels = one(objects, "Deployment", FULLNAME)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics",
                                         "protocol": "TCP"}]


# -- RBAC -------------------------------------------------------------------------------
def test_cluster_wide_install_gets_one_cluster_role_with_exactly_the_operator_rules() -> None:
    objects = render()
    # The one Role of a cluster-wide install is leader election's, on its Lease.
    assert [r["metadata"]["name"] for r in [*find(objects, "Role"), *find(objects, "RoleBinding")]
            ] == [f"{FULLNAME}-leader-election"] * 2
    role = one(objects, "ClusterRole", FULLNAME)
    assert rule_table(role["rules"]) == expected(CAPACITY_RULE, NAMESPACED_RULES, CRD_RULE)
    binding = one(objects, "ClusterRoleBinding", FULLNAME)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": FULLNAME}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME,
                                    "namespace": RELEASE_NS}]


def test_watched_namespaces_get_a_role_each_and_only_read_only_cluster_rights() -> None:
    objects = render({"watchNamespaces": ["team-a", "team-b"]})
    for ns in ("team-a", "team-b"):
        role = one(objects, "Role", FULLNAME, ns)
        assert rule_table(role["rules"]) == expected(NAMESPACED_RULES)
        binding = one(objects, "RoleBinding", FULLNAME, ns)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                      "name": FULLNAME}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME,
                                        "namespace": RELEASE_NS}]
    assert {r["metadata"]["namespace"] for r in find(objects, "Role", FULLNAME)} == {"team-a", "team-b"}
    cluster = one(objects, "ClusterRole", f"{FULLNAME}-cluster")
    assert rule_table(cluster["rules"]) == expected(CRD_RULE, NAMESPACE_RULE, CAPACITY_RULE)
    assert all(verbs <= {"get", "list", "watch"} for verbs in rule_table(cluster["rules"]).values())
    assert one(objects, "ClusterRoleBinding", f"{FULLNAME}-cluster")["roleRef"]["name"] == f"{FULLNAME}-cluster"
    assert not find(objects, "ClusterRole", FULLNAME), "no cluster-wide rights on namespaced objects"


def test_bundled_prometheus_discovers_pods_read_only_where_the_operator_works() -> None:
    cluster_wide = render()
    role = one(cluster_wide, "ClusterRole", f"{FULLNAME}-prometheus")
    assert rule_table(role["rules"]) == {("", "pods"): {"list", "watch"}}
    namespaced = render({"watchNamespaces": ["team-a"]})
    assert not find(namespaced, "ClusterRole", f"{FULLNAME}-prometheus")
    role = one(namespaced, "Role", f"{FULLNAME}-prometheus", "team-a")
    assert rule_table(role["rules"]) == {("", "pods"): {"list", "watch"}}
    binding = one(namespaced, "RoleBinding", f"{FULLNAME}-prometheus", "team-a")
    assert binding["subjects"][0]["name"] == f"{FULLNAME}-prometheus"


def test_no_rbac_rule_grants_secrets_or_wildcards(rendered: list[dict[str, Any]]) -> None:
    rules = [rule for o in rendered if o["kind"] in ("Role", "ClusterRole") for rule in o["rules"]]
    assert rules
    for rule in rules:
        assert "secrets" not in rule["resources"], rule
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], rule
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), rule


def test_rbac_create_false_renders_no_rbac_objects_for_the_operator() -> None:
    rbac_kinds = ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
    objects = render({"rbac.create": False})
    # The users' roles are userRoles.create's, not the operator's.
    assert sorted(o["metadata"]["name"] for o in objects if o["kind"] in rbac_kinds) == [
        "kubetune-edit", "kubetune-view"]
    objects = render({"rbac.create": False, "userRoles.create": False})
    assert not [o for o in objects if o["kind"] in rbac_kinds]


# -- Prometheus -------------------------------------------------------------------------
def test_bundled_scrape_config_takes_identity_labels_from_the_pod() -> None:
    config = scrape_config(render({"watchNamespaces": ["team-a"]}))
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "kubetune-trials")
    assert job["honor_labels"] is False
    sd = job["kubernetes_sd_configs"]
    assert sd[0]["role"] == "pod" and sd[0]["namespaces"] == {"names": ["team-a"]}
    targets = {r.get("target_label"): r["source_labels"] for r in job["relabel_configs"]
               if r.get("action", "replace") == "replace"}
    assert targets == {
        "namespace": ["__meta_kubernetes_namespace"],
        "experiment": ["__meta_kubernetes_pod_label_kubetune_io_experiment"],
        "trial": ["__meta_kubernetes_pod_label_kubetune_io_trial"],
        "attempt": ["__meta_kubernetes_pod_label_kubetune_io_attempt"],
        "pod": ["__meta_kubernetes_pod_name"],
    }
    keeps = {r["source_labels"][0]: r["regex"] for r in job["relabel_configs"] if r.get("action") == "keep"}
    assert keeps["__meta_kubernetes_pod_container_port_name"] == "metrics"
    assert keeps["__meta_kubernetes_pod_label_kubetune_io_trial"] == ".+"
    assert keeps["__meta_kubernetes_pod_label_batch_kubernetes_io_job_completion_index"] == "|0"
    cluster_wide = scrape_config(render())["scrape_configs"][0]["kubernetes_sd_configs"][0]
    assert "namespaces" not in cluster_wide, "cluster-wide: discover trial pods in every namespace"


def test_bundled_prometheus_is_hardened_and_restarts_on_config_change() -> None:
    objects = render()
    deployment = one(objects, "Deployment", f"{FULLNAME}-prometheus")
    pod = deployment["spec"]["template"]["spec"]
    sc = pod["containers"][0]["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    checksum = deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    changed = one(render({"prometheus.bundled.scrapeInterval": "1s"}), "Deployment",
                  f"{FULLNAME}-prometheus")["spec"]["template"]["metadata"]["annotations"]
    assert changed["checksum/config"] != checksum


def test_external_prometheus_renders_no_bundled_objects() -> None:
    objects = render(COMBINATIONS["external Prometheus"])
    assert not [o for o in objects if "prometheus" in o["metadata"]["name"]]
    assert not find(objects, "PodMonitor")


def test_podmonitor_selects_trial_pods_and_labels_them_from_the_pod() -> None:
    objects = render(COMBINATIONS["prometheus-operator"]
                     | {"prometheus.podMonitor.labels": {"release": "kube-prometheus-stack"}})
    monitor = one(objects, "PodMonitor", f"{FULLNAME}-trials", RELEASE_NS)
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    spec = monitor["spec"]
    assert spec["selector"] == {"matchExpressions": [{"key": "kubetune.io/trial", "operator": "Exists"}]}
    assert spec["namespaceSelector"] == {"matchNames": ["team-a"]}
    (endpoint,) = spec["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics" and endpoint["honorLabels"] is False
    index = "__meta_kubernetes_pod_label_batch_kubernetes_io_job_completion_index"
    assert {"sourceLabels": [index], "regex": "|0", "action": "keep"} in endpoint["relabelings"]
    assert {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]
            if "targetLabel" in r} == {
        "experiment": ["__meta_kubernetes_pod_label_kubetune_io_experiment"],
        "trial": ["__meta_kubernetes_pod_label_kubetune_io_trial"],
        "attempt": ["__meta_kubernetes_pod_label_kubetune_io_attempt"],
    }
    cluster_wide = render({"prometheus.podMonitor.enabled": True})
    assert one(cluster_wide, "PodMonitor")["spec"]["namespaceSelector"] == {"any": True}


def test_no_prometheus_at_all_fails_with_a_message() -> None:
    result = helm_run("template", RELEASE, str(CHART),
                      *set_args({"prometheus.bundled.enabled": False}), check=False)
    assert result.returncode != 0
    assert "set prometheus.url, or prometheus.bundled.enabled=true" in result.stderr


# -- the values schema ---------------------------------------------------------------------
@pytest.mark.parametrize(("values", "complaint"), [
    ({"watchNamespaces": "team-a"}, "/watchNamespaces"),
    ({"watchNamespaces": ["Team_A"]}, "/watchNamespaces/0"),
    ({"tickSeconds": 0}, "/tickSeconds"),
    ({"image.pullPolicy": "Sometimes"}, "/image/pullPolicy"),
    ({"prometheus.url": "prometheus:9090"}, "/prometheus/url"),
    ({"prometheus.bundled.scrapeInterval": "5"}, "/prometheus/bundled/scrapeInterval"),
    ({"ports.health": 70000}, "/ports/health"),
    ({"watchNamespace": ["team-a"]}, "watchNamespace"),  # a typo is not silently ignored
], ids=lambda v: str(v))
def test_values_schema_rejects_a_bad_value(values: dict[str, Any], complaint: str) -> None:
    for command in ("lint", "template"):
        args = ("--strict",) if command == "lint" else (RELEASE,)
        result = helm_run(command, *args, str(CHART), *set_args(values), check=False)
        assert result.returncode != 0, f"helm {command} accepted {values}"
        assert complaint in result.stdout + result.stderr


def _keys(node: dict[str, Any], schema: dict[str, Any], path: str = "") -> Iterator[str]:
    """Dotted keys of values.yaml that the schema declares one by one (not free-form maps)."""
    props = schema.get("properties")
    if props is None:
        return
    for key, value in node.items():
        sub = props[key]
        sub = SCHEMA["definitions"][sub["$ref"].rsplit("/", 1)[1]] if "$ref" in sub else sub
        yield f"{path}{key}"
        if isinstance(value, dict):
            yield from _keys(value, sub, f"{path}{key}.")


SCHEMA: dict[str, Any] = yaml.safe_load((CHART / "values.schema.json").read_text())


def test_values_yaml_comments_every_key() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    values = yaml.safe_load("\n".join(lines))
    declared = list(_keys(values, SCHEMA))
    assert len(declared) > 40
    # Walk the file: each key line's dotted path, and whether a comment sits right above it.
    commented: dict[str, bool] = {}
    stack: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        m = re.match(r"^( *)([A-Za-z][A-Za-z0-9]*):", line)
        if not m:
            continue
        indent, key = len(m.group(1)), m.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([k for _, k in stack] + [key])
        stack.append((indent, key))
        above = lines[i - 1].strip() if i else ""
        commented[path] = above.startswith("#")
    missing = [key for key in declared if not commented.get(key)]
    assert not missing, f"values.yaml keys without a comment above them: {missing}"
