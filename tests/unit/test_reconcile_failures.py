"""Every error of a tick is classified: permanent ones fail the experiment with the apiserver's
message, transient ones are retried with a doubling delay and reported at most once a minute
while they stay the same; both statuses are ones the CRD schema accepts."""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any, cast

import kopf
import pytest
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import MaxRetryError

from kubetune.api import SpecError, TuneExperimentStatus
from kubetune.controller import context, reconcile
from kubetune.controller.failures import (
    REPORT_EVERY_SECONDS,
    ErrorHistory,
    Failure,
    classify,
    failed_status,
    retrying_status,
)
from kubetune.controller.gateway import ApiCallError
from kubetune.controller.metrics import OperatorMetrics
from kubetune.controller.settings import OperatorSettings
from tests.unit.test_status_schema import EXPERIMENT_STATUS, assert_valid

PSA = ('pods "exp-0-1" is forbidden: violates PodSecurity "restricted:latest": '
       'allowPrivilegeEscalation != false')
RBAC = ('pods is forbidden: User "system:serviceaccount:kt:op" cannot create resource "pods" '
        'in API group "" in the namespace "ns"')


def api_error(status: int, message: str, verb: str = "create", resource: str = "pods",
              reason: str = "") -> ApiCallError:
    e = ApiException(status=status, reason=reason or "Error")
    e.body = json.dumps({"kind": "Status", "reason": reason, "message": message})
    return ApiCallError.from_api(e, verb, resource, "exp-0-1")


def test_the_apiservers_reason_and_message_are_read_from_its_status_body() -> None:
    e = api_error(422, "spec.index: Invalid value", resource="tunetrials", reason="Invalid")
    assert (e.status, e.reason, e.message) == (422, "Invalid", "spec.index: Invalid value")


@pytest.mark.parametrize(("error", "reason"), [
    (api_error(403, PSA), "Forbidden"),
    (api_error(403, "denied by ValidatingAdmissionPolicy 'no-root'", verb="dry-run create"),
     "Forbidden"),
    (api_error(422, "spec.index: Invalid value", resource="tunetrials"), "Invalid"),
    (api_error(422, "status.trials.total: Invalid value", verb="patch",
               resource="tuneexperiments/status"), "Invalid"),
    (api_error(400, "json: cannot unmarshal", verb="patch", resource="tunetrials/status"),
     "Invalid"),
    (api_error(413, "Request entity too large: limit is 3145728"), "TooLarge"),
    (api_error(500, "etcdserver: request is too large"), "TooLarge"),
    (SpecError("spec.trialTemplate", "unknown field"), "InvalidSpec"),
])
def test_a_spec_that_can_never_work_is_permanent(error: Exception, reason: str) -> None:
    failure = classify(error)
    assert failure.permanent and failure.reason == reason
    if isinstance(error, ApiCallError):
        assert error.message in failure.message  # the apiserver's own words reach the user


@pytest.mark.parametrize(("error", "reason"), [
    (api_error(500, "etcdserver: leader changed"), "APIUnavailable"),
    (api_error(503, "the server is currently unable to handle the request"), "APIUnavailable"),
    (api_error(429, "too many requests"), "TooManyRequests"),
    (api_error(403, RBAC), "Forbidden"),
    (api_error(403, 'pods "x" is forbidden: exceeded quota: q, requested: pods=1'),
     "QuotaExceeded"),
    (api_error(404, "not found", verb="get", resource="tunetrials"), "APIError"),
    (MaxRetryError(None, "/api", reason=None), "APIUnreachable"),  # type: ignore[arg-type]
    (ConnectionRefusedError(111, "refused"), "APIUnreachable"),
    (KeyError("metadata"), "InternalError"),
])
def test_what_may_pass_is_transient(error: Exception, reason: str) -> None:
    failure = classify(error)
    assert not failure.permanent and failure.reason == reason


def test_an_rbac_denial_names_the_operators_missing_permission() -> None:
    assert "operator's RBAC" in classify(api_error(403, RBAC)).message


def test_the_delay_doubles_from_the_base_up_to_the_cap() -> None:
    history = ErrorHistory()
    failure = Failure(False, "APIUnavailable", "503")
    delays = [history.failed(failure, float(t), base=5, cap=60)[0] for t in range(6)]
    assert delays == [5, 10, 20, 40, 60, 60]
    history.succeeded()
    assert history.failed(failure, 10.0, base=5, cap=60)[0] == 5


def test_the_same_error_is_reported_once_a_minute_and_a_new_one_at_once() -> None:
    history = ErrorHistory()
    same = Failure(False, "APIUnavailable", "503")
    reports = [history.failed(same, t, 5, 60)[1] for t in (0.0, 5.0, 15.0, 35.0)]
    assert reports == [True, False, False, False]
    assert history.failed(same, REPORT_EVERY_SECONDS + 1, 5, 60)[1]
    assert history.failed(Failure(False, "TooManyRequests", "429"), 62.0, 5, 60)[1]


def test_a_permanent_failure_is_announced_once() -> None:
    history = ErrorHistory()
    failure = Failure(True, "Forbidden", PSA)
    assert history.first_report(failure, 0.0)
    assert not history.first_report(failure, 100.0)


STORED = {"phase": "Running", "message": "1 running",
          "conditions": [{"type": "SpecValid", "status": "True", "reason": "Valid",
                          "lastTransitionTime": "2026-01-01T00:00:00Z"},
                         {"type": "MetricsAvailable", "status": "True", "reason": "Queried",
                          "lastTransitionTime": "2026-01-01T00:00:00Z"}]}


def _conditions(status: TuneExperimentStatus) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status.merge_patch()["conditions"]}


def test_a_permanent_failure_writes_failed_with_the_message_and_keeps_other_conditions() -> None:
    failure = classify(api_error(403, PSA))
    status = failed_status(failure, 3, STORED, "2026-01-01T00:01:00Z")
    patch = status.merge_patch()
    assert_valid(EXPERIMENT_STATUS, {**STORED, **patch})
    assert patch["phase"] == "Failed" and PSA in patch["message"]
    assert patch["observedGeneration"] == 3
    conditions = _conditions(status)
    assert conditions["Failed"]["status"] == "True" and conditions["Failed"]["reason"] == "Forbidden"
    assert conditions["Complete"]["status"] == "False"
    assert conditions["SpecValid"]["status"] == "True"
    assert "MetricsAvailable" in conditions


def test_a_retried_failure_adds_a_reconcile_error_condition_and_leaves_the_phase() -> None:
    failure = classify(api_error(503, "unavailable"))
    status = retrying_status(failure, 10, 1, STORED, "2026-01-01T00:01:00Z")
    patch = status.merge_patch()
    assert_valid(EXPERIMENT_STATUS, {**STORED, **patch})
    assert "phase" not in patch and "unavailable" in patch["message"]
    error = _conditions(status)["ReconcileError"]
    assert (error["status"], error["reason"]) == ("True", "APIUnavailable")
    assert "retrying in 10s" in error["message"]
    assert {"SpecValid", "MetricsAvailable"} <= set(_conditions(status))


# -- reconcile_once, the one failure path, with a gateway that refuses ----------------------
class RefusingGateway:
    def __init__(self, error: Exception) -> None:
        self.error = error
        self.statuses: list[dict[str, Any]] = []

    def list_trials(self, namespace: str, experiment: str) -> list[dict[str, Any]]:
        raise self.error

    def list_pods(self, namespace: str, experiment: str) -> list[dict[str, Any]]:
        return []

    def patch_experiment_status(self, namespace: str, name: str,
                                status: TuneExperimentStatus) -> None:
        self.statuses.append(status.merge_patch())


class Logger:
    def __getattr__(self, _: str) -> Any:
        return lambda *a, **k: None


BODY = {"metadata": {"name": "exp", "namespace": "ns", "uid": "u", "generation": 1},
        "spec": {"objective": {"metric": "accuracy", "mode": "max"},
                 "searchSpace": {"lr": {"choice": [0.1, 0.2]}},
                 "trialTemplate": {"spec": {"containers": [{"name": "t", "image": "i"}]}}}}


def _run(error: Exception, monkeypatch: pytest.MonkeyPatch, history: ErrorHistory,
         ) -> tuple[RefusingGateway, list[tuple[str, str]], OperatorMetrics]:
    events: list[tuple[str, str]] = []
    monkeypatch.setattr(kopf, "event",
                        lambda _b, **k: events.append((k["reason"], k["message"])))
    gw = RefusingGateway(error)
    metrics = OperatorMetrics()
    ctx: Any = context.OperatorContext(settings=OperatorSettings(tick_seconds=1), gateway=cast(Any, gw),
                                         prometheus=cast(Any, None), metrics=metrics)
    with contextlib.suppress(kopf.TemporaryError):
        reconcile.reconcile_once(ctx, BODY, history, Logger())  # type: ignore[arg-type]
    return gw, events, metrics


def _errors(metrics: OperatorMetrics, reason: str) -> float:
    return metrics.registry.get_sample_value("kubetune_reconcile_errors_total",
                                             {"reason": reason}) or 0.0


def test_a_permanent_refusal_fails_the_experiment_once_and_is_counted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    history = ErrorHistory()
    gw, events, metrics = _run(api_error(422, "bad trial", resource="tunetrials"), monkeypatch,
                               history)
    assert gw.statuses[0]["phase"] == "Failed" and "bad trial" in gw.statuses[0]["message"]
    assert [r for r, _ in events] == ["Invalid"]
    assert _errors(metrics, "Invalid") == 1
    assert history.failed_generation == 1


def test_a_transient_error_raises_a_temporary_error_with_the_backoff(
        monkeypatch: pytest.MonkeyPatch) -> None:
    history = ErrorHistory()
    events: list[tuple[str, str]] = []
    monkeypatch.setattr(kopf, "event",
                        lambda _b, **k: events.append((k["reason"], k["message"])))
    gw = RefusingGateway(api_error(503, "unavailable", verb="list", resource="tunetrials"))
    ctx: Any = context.OperatorContext(settings=OperatorSettings(tick_seconds=1), gateway=cast(Any, gw),
                                         prometheus=cast(Any, None), metrics=OperatorMetrics())
    delays = []
    for _ in range(3):
        with pytest.raises(kopf.TemporaryError) as raised:
            reconcile.reconcile_once(ctx, BODY, history, Logger())  # type: ignore[arg-type]
        delays.append(raised.value.delay)
    assert delays == [5, 10, 20]
    assert [r for r, _ in events] == ["ReconcileError"]  # reported once, not per try
    assert len(gw.statuses) == 1 and "phase" not in gw.statuses[0]


def test_an_unexpected_exception_is_retried_not_raised_as_is(
        monkeypatch: pytest.MonkeyPatch) -> None:
    history = ErrorHistory()
    _, events, metrics = _run(ZeroDivisionError("division by zero"), monkeypatch, history)
    assert events and "ZeroDivisionError" in events[0][1]
    assert _errors(metrics, "InternalError") == 1
    assert history.consecutive == 1


def test_retries_wait_at_most_a_minute() -> None:
    assert OperatorSettings(tick_seconds=1).max_retry_seconds == 60.0


def test_kopfs_own_records_of_an_experiment_stay_small_whatever_its_spec() -> None:
    from kubetune.controller import handlers

    settings = kopf.OperatorSettings()
    handlers._configure_kopf(settings)
    body = kopf.Body({"apiVersion": "kubetune.io/v1alpha1", "kind": "TuneExperiment",
                      "metadata": {"name": "exp", "annotations": {"big": "x" * 200_000}},
                      "spec": {"trialTemplate": {"spec": {"containers": [
                          {"name": "t", "env": [{"name": "B", "value": "y" * 1_000_000}]}]}}}})
    essence = settings.persistence.diffbase_storage.build(body=body)
    assert len(json.dumps(essence)) < 100  # the diff base kopf writes as an annotation
    assert settings.posting.level > logging.ERROR  # kopf's log lines never become Events
