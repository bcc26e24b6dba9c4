"""The chart's leader election and experiment Prometheus values, rendered by the real helm:
the operator's env says what the values say, the Lease rule is the release namespace's
only, and more than one replica without leader election is refused."""

from __future__ import annotations

import pytest

from kubetune.controller.main import parse_settings
from tests.unit.test_chart_render import (
    CHART,
    FULLNAME,
    RELEASE_NS,
    env_of,
    find,
    helm_run,
    one,
    operator_container,
    render,
)


def test_leader_election_is_on_by_default_with_the_lease_in_the_release_namespace() -> None:
    objects = render()
    env = env_of(operator_container(objects))
    settings = parse_settings([], env)  # what the operator makes of the chart's env
    assert settings.leader_election
    assert (settings.lease_name, settings.lease_namespace) == (f"{FULLNAME}-leader", RELEASE_NS)
    assert (settings.lease_duration_seconds, settings.renew_deadline_seconds,
            settings.retry_period_seconds) == (15, 10, 2)
    assert settings.experiment_prometheus_prefixes == ()
    assert one(objects, "Deployment", FULLNAME)["spec"]["replicas"] == 1


def test_the_lease_role_grants_get_and_update_on_that_lease_only() -> None:
    objects = render({"replicaCount": 2, "leaderElection.leaseName": "kt-lock"})
    role = one(objects, "Role", f"{FULLNAME}-leader-election", RELEASE_NS)
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "resourceNames": ["kt-lock"], "verbs": ["get", "update"]}]
    binding = one(objects, "RoleBinding", f"{FULLNAME}-leader-election", RELEASE_NS)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME,
                                    "namespace": RELEASE_NS}]
    assert one(objects, "Deployment", FULLNAME)["spec"]["replicas"] == 2
    assert parse_settings([], env_of(operator_container(objects))).lease_name == "kt-lock"


def test_without_leader_election_there_is_no_lease_rule_and_one_replica_only() -> None:
    objects = render({"leaderElection.enabled": False})
    assert not find(objects, "Role", f"{FULLNAME}-leader-election")
    assert not parse_settings([], env_of(operator_container(objects))).leader_election
    out = helm_run("template", "kt", str(CHART), "--set", "replicaCount=2",
                   "--set", "leaderElection.enabled=false", check=False)
    assert out.returncode != 0 and "replicaCount > 1 needs leaderElection.enabled" in out.stderr


def test_allowed_experiment_prometheus_prefixes_reach_the_operator() -> None:
    objects = render({"experimentPrometheus.allowedUrlPrefixes":
                      ["http://prometheus.monitoring:9090", "https://thanos.example.com/q/"]})
    settings = parse_settings([], env_of(operator_container(objects)))
    assert settings.experiment_prometheus_prefixes == ("http://prometheus.monitoring:9090",
                                                       "https://thanos.example.com/q/")


@pytest.mark.parametrize("prefix", ["prometheus:9090", "http://user@prom:9090",
                                    "http://prom:9090/?q=1"])
def test_a_prefix_that_is_no_plain_url_is_refused_by_the_schema(prefix: str) -> None:
    out = helm_run("template", "kt", str(CHART), "--set-json",
                   f'experimentPrometheus.allowedUrlPrefixes=["{prefix}"]', check=False)
    assert out.returncode != 0 and "allowedUrlPrefixes" in out.stderr
