"""The rule that keeps a replica from acting without the Lease, and the election's settings.

The election against a real apiserver (two operators, a SIGKILL, the takeover) is
tests/integration/test_leader_election.py; here: the clock rule, what counts as a renewal,
the settings and the standby's health endpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetune.controller import leader
from kubetune.controller.main import parse_settings
from kubetune.controller.settings import OperatorSettings
from kubetune.devcluster.processes import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Exited(Exception):
    pass


def _exit(code: int) -> None:
    raise Exited(code)


def leadership(clock: Clock, **settings: Any) -> leader.Leadership:
    ours = OperatorSettings(leader_election=True, lease_namespace="ops", **settings)
    return leader.Leadership(client.ApiClient(), ours, "op-0_abc", clock=clock,
                             exit_process=_exit)


def test_a_leader_that_has_not_renewed_within_the_deadline_exits_before_acting() -> None:
    clock = Clock()
    lead = leadership(clock, renew_deadline_seconds=10, lease_duration_seconds=15)
    lead.check()  # a standby has nothing to lose
    lead.leading.set()
    lead._written(100.0)
    clock.now = 110.0
    lead.check()  # exactly at the deadline: still safe
    clock.now = 110.01
    with pytest.raises(Exited):
        lead.check()


def test_the_deadline_counts_from_when_the_last_good_renewal_started() -> None:
    clock = Clock()
    lead = leadership(clock, renew_deadline_seconds=3, lease_duration_seconds=4,
                      retry_period_seconds=1)

    class Leases:
        def __init__(self) -> None:
            self.fail = False

        def read_namespaced_lease(self, name: str, namespace: str) -> Any:
            return client.V1Lease(metadata=client.V1ObjectMeta(name=name, resource_version="1"),
                                  spec=client.V1LeaseSpec())

        def create_namespaced_lease(self, namespace: str, body: Any) -> Any:
            clock.now += 2.5  # a slow write: the renewal counts from its start
            if self.fail:
                raise ApiException(status=409, reason="Conflict")
            return body

        replace_namespaced_lease = None

    leases = Leases()
    lead.lock.api_instance = leases
    record = leader.leaderelection.LeaderElectionRecord("op-0_abc", "4", "now", "now")
    record.acquire_time = record.renew_time = "2026-01-01 00:00:00"
    assert lead.lock.create("lease", "ops", record)
    assert lead.renewed_at == 100.0
    leases.fail = True
    assert not lead.lock.create("lease", "ops", record)
    assert lead.renewed_at == 100.0, "a refused write is no renewal"
    lead.leading.set()
    with pytest.raises(Exited):
        lead.check()  # 105 - 100 > 3


def test_a_releasing_leader_writes_no_more_renewals_and_is_not_stopped() -> None:
    clock = Clock()
    lead = leadership(clock)
    lead.leading.set()
    lead._written(0.0)
    lead.releasing = True
    lead.lock.closed = True
    lead.check()
    lead._stopped_leading()
    record = leader.leaderelection.LeaderElectionRecord("op-0_abc", "15", "x", "x")
    assert not lead.lock.update("lease", "ops", record)


def test_losing_the_lease_exits_the_process() -> None:
    lead = leadership(Clock())
    lead.leading.set()
    with pytest.raises(Exited):
        lead._stopped_leading()


@pytest.mark.parametrize(("duration", "renew", "retry"), [(10, 10, 2), (15, 10, 9), (5, 3, 0)])
def test_lease_timings_must_leave_a_standby_waiting_longer_than_a_leader_renews(
        duration: int, renew: int, retry: int) -> None:
    with pytest.raises(ValueError, match="lease duration > renew deadline"):
        OperatorSettings(lease_duration_seconds=duration, renew_deadline_seconds=renew,
                         retry_period_seconds=retry)


def test_leader_election_settings_from_the_environment_and_flags() -> None:
    assert not parse_settings([], {}).leader_election
    env = {"KUBETUNE_LEADER_ELECTION": "true", "KUBETUNE_LEASE_NAME": "kt",
           "KUBETUNE_LEASE_NAMESPACE": "ops", "KUBETUNE_LEASE_DURATION_SECONDS": "4",
           "KUBETUNE_LEASE_RENEW_DEADLINE_SECONDS": "3",
           "KUBETUNE_LEASE_RETRY_PERIOD_SECONDS": "1", "KUBETUNE_POD_NAME": "kt-abc"}
    got = parse_settings([], env)
    assert (got.leader_election, got.lease_name, got.lease_namespace, got.lease_duration_seconds,
            got.renew_deadline_seconds, got.retry_period_seconds, got.identity) == (
        True, "kt", "ops", 4, 3, 1, "kt-abc")
    flags = parse_settings(["--leader-elect", "--lease-name", "x", "--lease-namespace", "y"], {})
    assert (flags.leader_election, flags.lease_name, flags.lease_namespace) == (True, "x", "y")
    assert not parse_settings([], {"KUBETUNE_LEADER_ELECTION": "false"}).leader_election


def test_a_malformed_leader_setting_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_settings([], {"KUBETUNE_LEADER_ELECTION": "maybe"})
    assert "$KUBETUNE_LEADER_ELECTION must be true or false" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_settings([], {"KUBETUNE_LEASE_DURATION_SECONDS": "5"})  # not above renew (10)
    assert "lease duration > renew deadline" in capsys.readouterr().err


def test_each_process_is_a_new_candidate_named_after_its_pod(tmp_path: Path) -> None:
    ours = OperatorSettings(identity="kubetune-7d9f-x2")
    a, b = leader.replica_identity(ours), leader.replica_identity(ours)
    assert a != b and a.startswith("kubetune-7d9f-x2_") and b.startswith("kubetune-7d9f-x2_")
    sa = tmp_path / "namespace"
    sa.write_text("kubetune-system\n")
    assert leader.lease_namespace(OperatorSettings(), sa) == "kubetune-system"
    assert leader.lease_namespace(OperatorSettings(), tmp_path / "absent") == "default"
    assert leader.lease_namespace(OperatorSettings(lease_namespace="ops"), sa) == "ops"


def test_a_standby_answers_its_liveness_probe() -> None:
    port = free_port()
    server = leader.standby_health(port)
    try:
        ok = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert ok.status_code == 200 and "standby" in ok.text
        assert requests.get(f"http://127.0.0.1:{port}/x", timeout=5).status_code == 404
    finally:
        server.shutdown()
        server.server_close()
