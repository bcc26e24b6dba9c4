"""The Helm chart on a real API server: install, RBAC enforced, scrape relabelling.

The operator runs here as a local process (the image is never pulled: there is
no container runtime), authenticated with a bound token of the chart's own
ServiceAccount, so every call it makes is authorised by the API server against
the chart's Roles, not by the admin certificate.

Why a control plane of its own rather than the session's: the session's
`operator` fixture, once any module has requested it, keeps a cluster-wide
operator with admin rights running until the session ends, and it would
reconcile this module's experiment too, doing with admin rights whatever the
chart's rules forbid. One more control plane (about 15 s) makes "only the
ServiceAccount-bound operator worked here" true by construction, whatever order
the modules run in.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from kubetune.devcluster import ClusterConfig, LocalCluster
from kubetune.devcluster.processes import free_port
from tests.integration.kube import wait_for
from tests.support.operator import OperatorProcess, scripted_experiment
from tests.unit.test_chart_render import (
    CAPACITY_RULE,
    CHART,
    CRD_RULE,
    NAMESPACE_RULE,
    NAMESPACED_RULES,
    helm,
    render,
    set_args,
)

RELEASE, RELEASE_NS = "kt", "kubetune-system"
# Unique per run: trial checkpoints live under <root>/<namespace>/<trial> on this host.
WATCHED, UNWATCHED = f"tuned-{uuid.uuid4().hex[:6]}", "elsewhere"
SA = f"{RELEASE}-kubetune"
# Nothing matches this node selector: the chart's pods stay Pending instead of being
# handed to the local runner, which cannot start an image's entrypoint.
NOWHERE = {"kubetune.io/test-unschedulable": "true"}
QUALITIES = [0.9, 0.3, 0.8, 0.2, 0.7, 0.1, 0.85, 0.25]
# Installed too, so the API server validates the policies (nothing enforces them here: no CNI).
NETWORK_POLICIES = {"networkPolicy.enabled": True, "networkPolicy.prometheusClientNamespaces": [UNWATCHED],
                    "networkPolicy.metricsClientNamespaces": [UNWATCHED],
                    "networkPolicy.apiServer.cidrs": ["127.0.0.1/32"],
                    "networkPolicy.operatorEgress.restrict": True}
KINDS = ("tuneexperiments", "tunetrials")
VIEW_VERBS = ("get", "list", "watch")
WRITE_VERBS = ("create", "update", "patch", "delete")


@pytest.fixture(scope="module")
def chart_cluster() -> Iterator[LocalCluster]:
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    state_dir = tempfile.mkdtemp(prefix="kubetune-chart-", dir=base)
    local = LocalCluster(ClusterConfig(state_dir=Path(state_dir), nodes=1, gpus_per_node=4))
    local.up()
    try:
        yield local
    finally:
        local.down()


@pytest.fixture(scope="module")
def admin(chart_cluster: LocalCluster) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(chart_cluster.kubeconfig))


def create_namespace(admin: client.ApiClient, name: str) -> None:
    core = client.CoreV1Api(admin)
    core.create_namespace({"metadata": {"name": name}})
    wait_for(lambda: any(sa.metadata.name == "default"
                         for sa in core.list_namespaced_service_account(name).items),
             what=f"the default ServiceAccount of {name}")


def helm_cli(cluster: LocalCluster, *args: str) -> str:
    result = subprocess.run([helm(), *args, "--kubeconfig", str(cluster.kubeconfig)],
                            capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def release(chart_cluster: LocalCluster, admin: client.ApiClient) -> str:
    """The chart installed for one watched namespace, with its bundled Prometheus."""
    for ns in (RELEASE_NS, WATCHED, UNWATCHED):
        create_namespace(admin, ns)
    helm_cli(chart_cluster, "install", RELEASE, str(CHART), "--namespace", RELEASE_NS,
             *set_args({"watchNamespaces": [WATCHED], "nodeSelector": NOWHERE,
                        "prometheus.bundled.nodeSelector": NOWHERE} | NETWORK_POLICIES))
    return RELEASE


def token_kubeconfig(cluster: LocalCluster, admin: client.ApiClient, namespace: str,
                     service_account: str, path: Path) -> Path:
    """A kubeconfig holding a bound token of `service_account` (TokenRequest API)."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))
    token = client.CoreV1Api(admin).create_namespaced_service_account_token(
        service_account, namespace, request).status.token
    ca = (Path(cluster.state.state_dir) / "pki" / "ca.crt").read_bytes()
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "local", "cluster": {
            "server": cluster.state.apiserver_url,
            "certificate-authority-data": base64.b64encode(ca).decode()}}],
        "users": [{"name": service_account, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "local", "user": service_account}}],
        "current-context": "sa",
    }))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def sa_kubeconfig(chart_cluster: LocalCluster, admin: client.ApiClient, release: str,
                  tmp_path_factory: pytest.TempPathFactory) -> Path:
    return token_kubeconfig(chart_cluster, admin, RELEASE_NS, SA,
                            tmp_path_factory.mktemp("sa") / "kubeconfig")


@pytest.fixture(scope="module")
def as_operator(sa_kubeconfig: Path) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(sa_kubeconfig))


def can(api: client.ApiClient, verb: str, resource: str, namespace: str, group: str = "") -> bool:
    resource, _, sub = resource.partition("/")
    review = client.AuthorizationV1Api(api).create_self_subject_access_review(
        client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(
                verb=verb, group=group, resource=resource, subresource=sub or None,
                namespace=namespace or None))))
    return bool(review.status.allowed)


# -- install --------------------------------------------------------------------------------
def test_helm_install_creates_the_charts_objects_as_rendered(
        admin: client.ApiClient, release: str) -> None:
    apps, core = client.AppsV1Api(admin), client.CoreV1Api(admin)
    rbac = client.RbacAuthorizationV1Api(admin)
    deployment = apps.read_namespaced_deployment(SA, RELEASE_NS)
    assert deployment.spec.replicas == 1 and deployment.spec.strategy.type == "Recreate"
    container = deployment.spec.template.spec.containers[0]
    assert container.security_context.read_only_root_filesystem is True
    assert {e.name: e.value for e in container.env}["KUBETUNE_NAMESPACES"] == WATCHED
    assert core.read_namespaced_service_account(SA, RELEASE_NS)
    assert core.read_namespaced_service(f"{SA}-metrics", RELEASE_NS)
    assert core.read_namespaced_service(f"{SA}-prometheus", RELEASE_NS)
    assert "prometheus.yml" in core.read_namespaced_config_map(f"{SA}-prometheus", RELEASE_NS).data
    assert apps.read_namespaced_deployment(f"{SA}-prometheus", RELEASE_NS)
    # What the API server stores is what the chart renders.
    rendered = render({"watchNamespaces": [WATCHED]})
    want = next(o for o in rendered if o["kind"] == "Role" and o["metadata"]["name"] == SA)
    stored = admin.sanitize_for_serialization(rbac.read_namespaced_role(SA, WATCHED))
    assert sorted(map(json.dumps, stored["rules"])) == sorted(
        json.dumps({k: r[k] for k in ("apiGroups", "resources", "verbs")}) for r in want["rules"])
    assert rbac.read_namespaced_role_binding(SA, WATCHED).subjects[0].name == SA
    assert rbac.read_cluster_role(f"{SA}-cluster")
    with pytest.raises(ApiException) as nope:
        rbac.read_namespaced_role(SA, UNWATCHED)
    assert nope.value.status == 404
    # The chart's crds/ installed the CRDs.
    ext = client.ApiextensionsV1Api(admin)
    for name in ("tuneexperiments.kubetune.io", "tunetrials.kubetune.io"):
        crd = ext.read_custom_resource_definition(name)
        assert any(c.type == "Established" and c.status == "True" for c in crd.status.conditions)


def test_helm_install_stores_a_type_checked_admission_policy_and_the_network_policies(
        admin: client.ApiClient, release: str) -> None:
    adm = client.AdmissionregistrationV1Api(admin)
    name = f"{SA}-creator-may-create-pods"
    assert adm.read_validating_admission_policy_binding(name).spec.policy_name == name

    def checked() -> Any:
        policy = adm.read_validating_admission_policy(name)
        status = policy.status
        return status if status and status.observed_generation == policy.metadata.generation else None

    # The API server type-checks the CEL against the TuneExperiment schema: no warnings.
    status = wait_for(checked, timeout=30, what="the admission policy's type checking")
    assert not (status.type_checking and status.type_checking.expression_warnings), status
    net = client.NetworkingV1Api(admin)
    stored = {p.metadata.name: p for p in net.list_namespaced_network_policy(RELEASE_NS).items}
    assert set(stored) == {SA, f"{SA}-prometheus"}
    assert stored[SA].spec.policy_types == ["Ingress", "Egress"]


def test_users_bound_to_the_builtin_view_and_edit_roles_get_exactly_the_kubetune_rights(
        chart_cluster: LocalCluster, admin: client.ApiClient, release: str, tmp_path: Path) -> None:
    core, rbac = client.CoreV1Api(admin), client.RbacAuthorizationV1Api(admin)
    users = {}
    for role in ("view", "edit", "admin"):
        account = f"user-{role}"
        core.create_namespaced_service_account(WATCHED, {"metadata": {"name": account}})
        rbac.create_namespaced_role_binding(WATCHED, {
            "metadata": {"name": account},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": WATCHED}]})
        users[role] = config.new_client_from_config(config_file=str(token_kubeconfig(
            chart_cluster, admin, WATCHED, account, tmp_path / f"{account}.kubeconfig")))
    # The controller-manager aggregates kubetune-view/-edit into the built-in roles.
    wait_for(lambda: can(users["view"], "list", "tunetrials", WATCHED, "kubetune.io")
             and can(users["edit"], "delete", "tuneexperiments", WATCHED, "kubetune.io"),
             timeout=30, what="the built-in roles to aggregate kubetune's")
    for role, api in users.items():
        for kind in KINDS:
            for verb in VIEW_VERBS:
                assert can(api, verb, kind, WATCHED, "kubetune.io"), (role, verb, kind)
            for verb in WRITE_VERBS:
                assert can(api, verb, kind, WATCHED, "kubetune.io") == (role != "view"), (role, verb, kind)
            # Only where bound, and no more than the roles list.
            assert not can(api, "get", kind, UNWATCHED, "kubetune.io"), (role, kind)
            assert not can(api, "update", f"{kind}/status", WATCHED, "kubetune.io"), (role, kind)
    exp = scripted_experiment("by-a-viewer", [0.5])
    with pytest.raises(ApiException) as refused:
        client.CustomObjectsApi(users["view"]).create_namespaced_custom_object(
            "kubetune.io", "v1alpha1", WATCHED, "tuneexperiments", exp)
    assert refused.value.status == 403


# -- the operator under the chart's RBAC ----------------------------------------------------------
def test_operator_with_the_charts_service_account_completes_an_experiment(
        chart_cluster: LocalCluster, admin: client.ApiClient, sa_kubeconfig: Path,
        tmp_path: Path) -> None:
    # With the chart's leader election: its Lease rule must let the operator lead.
    operator = OperatorProcess(chart_cluster, tmp_path, kubeconfig=sa_kubeconfig,
                               env={"KUBETUNE_NAMESPACES": WATCHED,
                                    "KUBETUNE_LEADER_ELECTION": "true",
                                    "KUBETUNE_LEASE_NAME": f"{SA}-leader",
                                    "KUBETUNE_LEASE_NAMESPACE": RELEASE_NS})
    operator.start()
    custom = client.CustomObjectsApi(admin)
    try:
        custom.create_namespaced_custom_object(
            "kubetune.io", "v1alpha1", WATCHED, "tuneexperiments",
            scripted_experiment("rbac", QUALITIES, concurrency=3, steps=9, sleep=0.1))

        def finished() -> dict[str, Any] | None:
            exp = custom.get_namespaced_custom_object("kubetune.io", "v1alpha1", WATCHED,
                                                      "tuneexperiments", "rbac")
            return exp if (exp.get("status") or {}).get("phase") in ("Succeeded", "Failed") else None

        exp = wait_for(finished, timeout=180, interval=0.5, what="the experiment to finish")
    finally:
        operator.kill()
    log = operator.log.read_text()
    assert exp["status"]["phase"] == "Succeeded", exp["status"]
    assert f"leads (Lease {RELEASE_NS}/{SA}-leader)" in log
    assert "kubetune.io/finalizer" in exp["metadata"].get("finalizers", []), "kopf patched its finalizer"
    trials = custom.list_namespaced_custom_object("kubetune.io", "v1alpha1", WATCHED, "tunetrials")["items"]
    states = {t["metadata"]["name"]: t["status"]["state"] for t in trials}
    assert len(states) == len(QUALITIES)
    pruned = [name for name, state in states.items() if state == "Pruned"]
    assert pruned, f"ASHA should prune some of these curves: {states}"
    live = {p.metadata.name for p in client.CoreV1Api(admin).list_namespaced_pod(WATCHED).items
            if not p.metadata.deletion_timestamp}
    assert not [p for p in live if any(p.startswith(f"{name}-") for name in pruned)], \
        "pruned trials' pods are deleted"
    events = client.CoreV1Api(admin).list_namespaced_event(WATCHED).items
    assert any(e.reason == "TrialCreated" for e in events), "the operator posts Events"
    # Every call was allowed: a refusal on any code path logs one of these (kopf's
    # APIForbiddenError, the API client's 403 "Forbidden", kopf's scanning fallbacks).
    for refusal in ("forbidden", "not enough permissions", "failed to post an event"):
        assert refusal not in log.lower(), f"the operator was refused something ({refusal!r}); see {operator.log}"


def test_service_account_holds_every_rule_it_needs_in_its_namespace(as_operator: client.ApiClient) -> None:
    for (group, resource), (verbs, why) in NAMESPACED_RULES.items():
        # Whole-trial admission lists a few kinds cluster-wide, read-only; nothing more.
        everywhere = CAPACITY_RULE.get((group, resource), (set(), ""))[0]
        for verb in verbs:
            assert can(as_operator, verb, resource, WATCHED, group), f"{verb} {resource}: {why}"
            assert can(as_operator, verb, resource, UNWATCHED, group) == (verb in everywhere), \
                f"{verb} {resource} in {UNWATCHED}"
    for (group, resource), (verbs, why) in CAPACITY_RULE.items():
        for verb in verbs:
            assert can(as_operator, verb, resource, UNWATCHED, group), f"{verb} {resource}: {why}"
        assert not can(as_operator, "get", resource, UNWATCHED, group), f"get {resource} in {UNWATCHED}"
    for (group, resource), (verbs, why) in (CRD_RULE | NAMESPACE_RULE).items():
        for verb in verbs:
            assert can(as_operator, verb, resource, "", group), f"{verb} {resource}: {why}"


@pytest.mark.parametrize(("verb", "resource", "namespace", "group"), [
    ("get", "secrets", WATCHED, ""),
    ("list", "secrets", WATCHED, ""),
    ("watch", "secrets", WATCHED, ""),
    ("list", "secrets", RELEASE_NS, ""),
    ("list", "secrets", "", ""),
    ("create", "pods", UNWATCHED, ""),
    # Whole-trial admission may list pods everywhere (read-only); it may not read one
    # or watch them outside the namespaces it serves.
    ("get", "pods", UNWATCHED, ""),
    ("watch", "pods", UNWATCHED, ""),
    ("list", "tuneexperiments", UNWATCHED, "kubetune.io"),
    ("update", "pods", WATCHED, ""),
    ("patch", "pods", WATCHED, ""),
    ("create", "pods/exec", WATCHED, ""),
    ("delete", "tuneexperiments", WATCHED, "kubetune.io"),
    ("delete", "tunetrials", WATCHED, "kubetune.io"),
    ("deletecollection", "pods", WATCHED, ""),
    ("get", "configmaps", WATCHED, ""),
    ("create", "serviceaccounts/token", RELEASE_NS, ""),
    ("patch", "customresourcedefinitions", "", "apiextensions.k8s.io"),
])
def test_service_account_is_denied_what_the_operator_never_does(
        as_operator: client.ApiClient, verb: str, resource: str, namespace: str, group: str) -> None:
    assert not can(as_operator, verb, resource, namespace, group)


def test_service_account_calls_for_secrets_or_foreign_pods_get_403(as_operator: client.ApiClient) -> None:
    core = client.CoreV1Api(as_operator)
    pod = {"metadata": {"name": "intruder"},
           "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}}
    for call in (lambda: core.list_namespaced_secret(WATCHED),
                 lambda: core.list_secret_for_all_namespaces(),
                 lambda: core.create_namespaced_pod(UNWATCHED, pod)):
        with pytest.raises(ApiException) as denied:
            call()
        assert denied.value.status == 403


def test_cluster_wide_release_reaches_every_namespace_but_never_secrets(
        chart_cluster: LocalCluster, admin: client.ApiClient, release: str, tmp_path: Path) -> None:
    wide_ns = "kubetune-wide"
    create_namespace(admin, wide_ns)
    notes = helm_cli(chart_cluster, "install", "kw", str(CHART), "--namespace", wide_ns, "--skip-crds",
             *set_args({"prometheus.bundled.enabled": False,
                        "prometheus.url": "http://prometheus.monitoring:9090",
                        "nodeSelector": NOWHERE, "userRoles.create": False}))
    api = config.new_client_from_config(config_file=str(token_kubeconfig(
        chart_cluster, admin, wide_ns, "kw-kubetune", tmp_path / "kubeconfig")))
    for ns in (WATCHED, UNWATCHED, "default"):
        assert can(api, "create", "pods", ns) and can(api, "delete", "pods", ns)
        assert can(api, "watch", "tuneexperiments", ns, "kubetune.io")
        assert not can(api, "get", "secrets", ns)
    assert can(api, "list", "tuneexperiments", "", "kubetune.io")  # the cluster-wide watch
    assert not can(api, "list", "secrets", "")
    assert not can(api, "list", "namespaces", ""), "cluster-wide kopf does not observe namespaces"
    # What helm prints after the install makes sense without a checkout of the project.
    assert "reconciles TuneExperiments in every namespace" in notes
    assert "kw-kubetune-creator-may-create-pods" in notes and "examples/" not in notes
    helm_cli(chart_cluster, "uninstall", "kw", "--namespace", wide_ns)


# -- the bundled Prometheus' relabelling, with a real Prometheus ----------------------------------
@dataclass
class PrometheusProcess:
    proc: subprocess.Popen[bytes]
    url: str

    def query(self, promql: str) -> list[dict[str, Any]]:
        resp = requests.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5)
        resp.raise_for_status()
        return list(resp.json()["data"]["result"])


def prometheus_with_kubernetes_sd() -> str:
    """A Prometheus that has kubernetes_sd_configs: Debian's package is built without it.

    $KUBETUNE_PROMETHEUS, else `prometheus` in the control plane's binary directory
    (built from the Go module proxy with only Kubernetes discovery), else $PATH's.
    """
    from kubetune.devcluster.binaries import find_binaries

    candidates = [os.environ.get("KUBETUNE_PROMETHEUS", ""),
                  str(find_binaries().directory / "prometheus"), shutil.which("prometheus") or ""]
    for path in filter(None, candidates):
        if os.access(path, os.X_OK) and _has_kubernetes_sd(path):
            return path
    pytest.skip("no Prometheus with kubernetes_sd_configs (Debian's is built without it): "
                "build one into the control plane's binary directory or set KUBETUNE_PROMETHEUS")


def _has_kubernetes_sd(prometheus: str) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp, "p.yml")
        cfg.write_text("scrape_configs: [{job_name: probe, kubernetes_sd_configs: [{role: pod}]}]\n")
        # The config is parsed before anything else; a build without the plugin exits at once.
        proc = subprocess.Popen([prometheus, f"--config.file={cfg}", f"--storage.tsdb.path={tmp}/db",
                                 f"--web.listen-address=127.0.0.1:{free_port()}"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            out, _ = proc.communicate(timeout=2)
            return b"kubernetes_sd_configs" not in out
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return True


@pytest.fixture
def chart_prometheus(chart_cluster: LocalCluster, admin: client.ApiClient,
                     tmp_path: Path) -> Iterator[tuple[PrometheusProcess, str]]:
    """A real Prometheus running the chart's scrape config against the local API server."""
    binary = prometheus_with_kubernetes_sd()
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    create_namespace(admin, namespace)
    rendered = render({"watchNamespaces": [namespace], "prometheus.bundled.scrapeInterval": "1s",
                       "prometheus.bundled.scrapeOperator": False})
    cm = next(o for o in rendered if o["kind"] == "ConfigMap")
    scrape = yaml.safe_load(cm["data"]["prometheus.yml"])
    # In a cluster Prometheus finds the API server and its credentials itself; here, say where.
    pki = Path(chart_cluster.state.state_dir) / "pki"
    for job in scrape["scrape_configs"]:
        for sd in job["kubernetes_sd_configs"]:
            sd["api_server"] = chart_cluster.state.apiserver_url
            sd["tls_config"] = {"ca_file": str(pki / "ca.crt"), "cert_file": str(pki / "admin.crt"),
                                "key_file": str(pki / "admin.key")}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(scrape))
    port = free_port()
    with open(tmp_path / "prometheus.log", "wb") as out:
        proc = subprocess.Popen(
            [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    prom = PrometheusProcess(proc, f"http://127.0.0.1:{port}")
    try:
        def ready() -> bool:
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            with contextlib.suppress(requests.RequestException):
                return requests.get(f"{prom.url}/-/ready", timeout=1).ok
            return False

        wait_for(ready, timeout=30, what="Prometheus to be ready")
        yield prom, namespace
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        client.CoreV1Api(admin).delete_namespace(namespace)


# Serves a kubetune_trial_metric series that claims another experiment, trial and namespace.
SPOOFING_TRIAL = """
import os, time
from prometheus_client import CollectorRegistry, Gauge, start_http_server
registry = CollectorRegistry()
gauge = Gauge("kubetune_trial_metric", "a spoofing trial",
              ["experiment", "trial", "namespace", "metric"], registry=registry)
gauge.labels(experiment="spoofed", trial="victim-0", namespace="victims", metric="accuracy").set(0.99)
start_http_server(int(os.environ["PORT"]), addr="127.0.0.1", registry=registry)
time.sleep(300)
"""


def metrics_pod(name: str, labels: dict[str, str]) -> tuple[dict[str, Any], int]:
    # The local runner gives a port named `metrics` a different free port (in
    # KUBETUNE_METRICS_PORT, since pods share the host network here), while
    # Prometheus' pod discovery targets podIP:containerPort as declared in the spec.
    # So this pod declares a free port under the name the chart keeps (`metrics`)
    # and its process serves on that declared port, read from a plain env var.
    port = free_port()
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "trial", "image": "kubetune/spoofer:test",
            "command": ["python", "-c", SPOOFING_TRIAL],
            "env": [{"name": "PORT", "value": str(port)}],
            "ports": [{"name": "metrics", "containerPort": port}],
        }]},
    }, port


def test_bundled_prometheus_attributes_a_spoofing_trial_to_its_own_experiment(
        admin: client.ApiClient, chart_prometheus: tuple[PrometheusProcess, str]) -> None:
    prom, namespace = chart_prometheus
    core = client.CoreV1Api(admin)
    trial_labels = {"kubetune.io/experiment": "honest", "kubetune.io/trial": "honest-3",
                    "kubetune.io/attempt": "1"}
    for name, labels in (("honest-3-1", trial_labels), ("not-a-trial", {"app": "other"})):
        body, port = metrics_pod(name, labels)
        core.create_namespaced_pod(namespace, body)
        # Both serve: only the chart's rules keep the second out of Prometheus.
        wait_for(lambda p=port: _serves(p), timeout=60, what=f"{name} to serve metrics")

    series = wait_for(lambda: prom.query("kubetune_trial_metric"), timeout=30, interval=0.5,
                      what="Prometheus to scrape the trial pod")
    assert len(series) == 1, f"only the trial pod is a target: {series}"
    labels = series[0]["metric"]
    assert labels["experiment"] == "honest" and labels["exported_experiment"] == "spoofed"
    assert labels["trial"] == "honest-3" and labels["exported_trial"] == "victim-0"
    assert labels["namespace"] == namespace and labels["exported_namespace"] == "victims"
    assert labels["pod"] == "honest-3-1" and labels["attempt"] == "1"
    assert labels["job"] == "kubetune-trials" and labels["metric"] == "accuracy"
    # The operator's selector finds it under its real experiment, never under the claimed one.
    real = f'kubetune_trial_metric{{namespace="{namespace}",experiment="honest"}}'
    assert len(prom.query(real)) == 1
    assert prom.query('kubetune_trial_metric{experiment="spoofed"}') == []


def _serves(port: int) -> bool:
    with contextlib.suppress(requests.RequestException):
        return "kubetune_trial_metric" in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=1).text
    return False


def test_chart_pods_wait_unscheduled_rather_than_run_here(admin: client.ApiClient, release: str) -> None:
    # The Deployment exists and asks for a pod; with no image runtime here it is kept
    # off the nodes (NOWHERE), so nothing pretends to run the real image.
    def pending() -> list[Any] | None:
        pods = client.CoreV1Api(admin).list_namespaced_pod(
            RELEASE_NS, label_selector="app.kubernetes.io/component=operator").items
        return pods or None

    pods = wait_for(pending, timeout=30, what="the operator Deployment's pod")
    assert all(p.status.phase == "Pending" and not p.spec.node_name for p in pods)
