"""Multi-worker trials read their Jobs from the watch-fed view: the operator's own Job
writes show until the watch has them, and no tick lists the experiment's Jobs."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any, cast

import kopf
import pytest
from kubernetes.client.exceptions import ApiException

from kubetune import contract
from kubetune.contract import EXPERIMENT_LABEL
from kubetune.controller import context, distributed, gateway, reconcile, view
from kubetune.controller.gateway import Gateway
from kubetune.controller.metrics import OperatorMetrics
from kubetune.controller.settings import OperatorSettings

pytestmark = pytest.mark.unit

KEY = ("ns", "exp")


def job(name: str, rv: int, **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": str(rv),
                         "labels": {EXPERIMENT_LABEL: "exp", contract.TRIAL_LABEL: "exp-0",
                                    contract.ATTEMPT_LABEL: "1"}, **meta},
            "spec": {"completions": 2, "parallelism": 2}}


def names(bodies: list[dict[str, Any]]) -> list[str]:
    return [b["metadata"]["name"] for b in bodies]


# -- Writes for "jobs", as for "pods" ---------------------------------------------------------
def test_a_created_job_shows_until_the_watch_delivers_it() -> None:
    writes = view.Writes()
    writes.record("jobs", job("exp-0-a1", 10), created=True)
    assert names(writes.merge("jobs", KEY, [])) == ["exp-0-a1"]
    assert writes.merge("pods", KEY, []) == []  # another kind
    assert names(writes.merge("jobs", KEY, [])) == ["exp-0-a1"]  # still not delivered
    delivered = [job("exp-0-a1", 11)]  # the Job controller has written its status since
    assert writes.merge("jobs", KEY, delivered) == delivered
    assert len(writes) == 0  # confirmed: forgotten


def test_a_deleted_job_shows_as_deleting_then_goes_with_the_view() -> None:
    writes = view.Writes()
    deleting = job("exp-0-a1", 12, deletionTimestamp="2026-01-01T00:00:00Z",
                   finalizers=["foregroundDeletion"])
    writes.record("jobs", deleting, created=False)
    assert writes.merge("jobs", KEY, [job("exp-0-a1", 11)]) == [deleting]  # the view lags
    assert writes.merge("jobs", KEY, []) == []  # gone since: not brought back
    assert len(writes) == 0


def test_observe_merges_the_pending_jobs_with_the_views() -> None:
    writes = view.Writes()
    writes.record("jobs", job("exp-0-a1", 10), created=True)
    observed = view.observe(writes, KEY, [], [], [job("exp-1-a1", 5)])
    assert sorted(names(observed.jobs)) == ["exp-0-a1", "exp-1-a1"]
    assert observed.trials == [] and observed.pods == []


# -- distributed.read folds the Jobs it is given ---------------------------------------------
class NoListing:
    """A gateway that refuses every read: a tick fed by the view lists nothing."""

    def __getattr__(self, name: str) -> Any:
        def refused(*_: Any, **__: Any) -> Any:
            raise AssertionError(f"Gateway.{name} called")
        return refused


def test_read_folds_the_given_jobs_with_their_pods() -> None:
    worker = {"metadata": {"name": "exp-0-a1-0-x", "labels": {
        EXPERIMENT_LABEL: "exp", contract.TRIAL_LABEL: "exp-0", contract.ATTEMPT_LABEL: "1",
        "batch.kubernetes.io/job-name": "exp-0-a1", contract.JOB_COMPLETION_INDEX: "0"},
        "annotations": {contract.JOB_COMPLETION_INDEX: "0"}}, "spec": {}, "status": {}}
    plain = {"metadata": {"name": "exp-1-1", "labels": {
        EXPERIMENT_LABEL: "exp", contract.TRIAL_LABEL: "exp-1", contract.ATTEMPT_LABEL: "1"}},
        "spec": {}, "status": {}}
    groups, pods = distributed.read([job("exp-0-a1", 3)], [worker, plain])
    assert groups.job_of_view["exp-0-a1-0-x"] == "exp-0-a1"
    assert [w.pod for w in groups.workers["exp-0-a1"]] == ["exp-0-a1-0-x"]
    assert names(pods) == ["exp-1-1"]


# -- the gateway reports its Job writes -------------------------------------------------------
class FakeBatch:
    """BatchV1Api's two Job writes, answering as the apiserver does (or refusing)."""

    refuse = 0
    """The HTTP status a create is refused with (0: it is not)."""

    def __init__(self, _api: Any) -> None:
        pass

    def create_namespaced_job(self, namespace: str, body: dict[str, Any],
                              **_: Any) -> Any:
        if FakeBatch.refuse:
            raise ApiException(status=FakeBatch.refuse, reason="Conflict")
        return SimpleNamespace(data=json.dumps({**body, "metadata": {
            **body["metadata"], "resourceVersion": "7", "uid": "j"}}).encode())

    def delete_namespaced_job(self, name: str, namespace: str, **_: Any) -> Any:
        return SimpleNamespace(data=json.dumps(job(name, 9, deletionTimestamp="t")).encode())


def test_create_and_delete_job_report_the_apiservers_answer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gateway.client, "BatchV1Api", FakeBatch)
    seen: list[tuple[str, str, str, bool]] = []
    gw = Gateway(cast(Any, object.__new__(gateway.client.ApiClient)),
                 written=lambda kind, answer, created: seen.append(
                     (kind, answer["metadata"]["name"], answer["metadata"]["resourceVersion"],
                      created)))
    monkeypatch.setattr(gw, "core", NoListing())
    gw.create_job(job("exp-0-a1", 0))
    gw.delete_job("ns", "exp-0-a1", 5)
    assert seen == [("jobs", "exp-0-a1", "7", True), ("jobs", "exp-0-a1", "9", False)]
    # A Job that exists already (a previous tick's or process's) is adopted: no answer to keep.
    monkeypatch.setattr(FakeBatch, "refuse", 409)
    gw.create_job(job("exp-0-a1", 0))
    assert len(seen) == 2


# -- two ticks of a multi-worker experiment, the second fed the first one's writes ------------
SPEC: dict[str, Any] = {
    "objective": {"metric": "accuracy", "mode": "max"},
    "searchSpace": {"quality": {"grid": [0.5]}},
    "maxConcurrentTrials": 1, "scheduler": {"type": "fifo"},
    "workers": {"count": 2},
    "trialTemplate": {"spec": {"containers": [{
        "name": "trial", "image": "i", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}},
}
BODY = {"metadata": {"name": "exp", "namespace": "ns", "uid": "u", "generation": 1},
        "spec": SPEC}


class WritingGateway:
    """The writes of a tick, answered as the apiserver would and reported to `writes`; any
    list of the experiment's objects fails the test."""

    def __init__(self, writes: view.Writes) -> None:
        self.writes = writes
        self.version = 100
        self.jobs: list[str] = []

    def _answer(self, kind: str, body: dict[str, Any], created: bool) -> dict[str, Any]:
        self.version += 1
        answer = {**body, "metadata": {**body["metadata"], "uid": f"uid-{self.version}",
                                       "resourceVersion": str(self.version)}}
        self.writes.record(kind, answer, created=created)
        return answer

    def create_trial(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._answer("trials", body, True)

    def create_job(self, body: dict[str, Any]) -> None:
        self.jobs.append(body["metadata"]["name"])
        self._answer("jobs", body, True)

    def create_service(self, body: dict[str, Any]) -> None:
        pass

    def dry_run_pod(self, body: dict[str, Any]) -> None:
        pass

    def capacity_objects(self) -> tuple[list[Any], list[Any], list[Any]]:
        node = {"metadata": {"name": "n0"}, "status": {"allocatable": {"nvidia.com/gpu": "4"}}}
        return [node], [], []

    def patch_trial_status(self, namespace: str, name: str, status: Any) -> bool:
        return True

    def patch_experiment_status(self, namespace: str, name: str, status: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:  # list_trials, list_pods, list_jobs, ...
        raise AssertionError(f"Gateway.{name} called")


class NoMetrics:
    def snapshot(self, *_: Any, **__: Any) -> Any:
        return SimpleNamespace(trials={})


def test_the_tick_after_a_job_create_sees_the_job_and_lists_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kopf, "event", lambda *_a, **_k: None)
    writes = view.Writes()
    gw = WritingGateway(writes)
    ctx = context.OperatorContext(
        settings=OperatorSettings(tick_seconds=1), gateway=cast(Any, gw),
        prometheus=cast(Any, NoMetrics()), metrics=OperatorMetrics(), writes=writes)
    logger = cast(Any, SimpleNamespace(info=lambda *_: None, warning=lambda *_: None))
    for _ in range(3):  # the watch delivers nothing meanwhile: the view stays empty
        reconcile.tick(ctx, cast(Any, BODY), logger, view.observe(writes, KEY, [], [], []))
    assert gw.jobs == ["exp-0-a1"], "the Job is created once; the next ticks see it"
