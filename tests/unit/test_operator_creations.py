"""A tick's creations in the background (controller/creations.py): the experiment is busy
until its batch ends, the batch's Events and status follow its creations, its error is kept
for the next tick, its end wakes the loop; a tick meanwhile writes only the decisions about
the trials whose creations are not in flight, and creates nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import kopf
import pytest

from kubetune.api import (
    ExperimentPhase,
    TrialState,
    TuneExperimentStatus,
    TuneTrialStatus,
    validate_experiment_spec,
)
from kubetune.controller import apply, concurrent, context
from kubetune.controller.creations import Creations
from kubetune.controller.metrics import OperatorMetrics
from kubetune.controller.planner import Plan
from kubetune.controller.planner.actions import NewPod, NewTrial
from kubetune.controller.settings import OperatorSettings

pytestmark = pytest.mark.unit

KEY = ("ns", "exp")


@pytest.fixture
def pool() -> Any:
    with ThreadPoolExecutor(4) as p:
        yield p


def _until(condition: Callable[[], bool], timeout: float = 5) -> bool:
    """Whether `condition` holds within `timeout` seconds (polled)."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_the_experiment_is_busy_until_every_chain_and_then_have_run(pool: Any) -> None:
    gate, gate_1, order, woken = threading.Event(), threading.Event(), [], []
    ended = threading.Event()
    creations = Creations(pool, wake=lambda key: (woken.append(key), ended.set()))
    creations.start(KEY, {"exp-0": [lambda: order.append("trial 0"), gate.wait,
                                    lambda: order.append("pod 0")],
                          "exp-1": [gate_1.wait, lambda: order.append("trial 1")], "exp-2": []},
                    lambda: order.append("then"))
    assert creations.creating(KEY) == {"exp-0", "exp-1"}  # a trial with nothing to do is not
    assert creations.creating(("ns", "other")) is None
    gate_1.set()  # a trial whose chain has ended is no longer in flight: ticks decide about it
    assert _until(lambda: creations.creating(KEY) == {"exp-0"})
    assert not creations.wait(KEY, 0.05)
    assert "then" not in order and not woken
    gate.set()
    assert ended.wait(5) and creations.wait(KEY, 5)
    assert order[-1] == "then" and order.index("pod 0") > order.index("trial 0")
    assert creations.creating(KEY) is None and woken == [KEY]
    assert creations.take_failure(KEY) is None


def test_every_chain_ended_the_batch_is_still_in_flight_until_then_has_run(pool: Any) -> None:
    gate, held, ended = threading.Event(), threading.Event(), threading.Event()
    creations = Creations(pool, wake=lambda _: ended.set())
    creations.start(KEY, {"exp-0": [gate.wait]}, lambda: held.wait(5))
    gate.set()
    assert _until(lambda: creations.creating(KEY) == frozenset())  # decide only: none created
    held.set()
    assert ended.wait(5) and creations.creating(KEY) is None


def test_a_failed_chain_skips_then_and_is_raised_once_by_the_next_tick(pool: Any) -> None:
    ended, ran = threading.Event(), []
    creations = Creations(pool, wake=lambda _: ended.set())

    def refused() -> None:
        raise ValueError("refused")

    creations.start(KEY, {"exp-0": [refused, lambda: ran.append("pod 0")],
                          "exp-1": [lambda: ran.append("trial 1")]}, lambda: ran.append("then"))
    assert ended.wait(5)
    assert ran == ["trial 1"]  # the other chain ran to its end; then() did not run
    error = creations.take_failure(KEY)
    assert isinstance(error, ValueError) and str(error) == "refused"
    assert creations.take_failure(KEY) is None
    assert creations.creating(KEY) is None


def test_an_error_of_then_is_kept_too(pool: Any) -> None:
    ended = threading.Event()
    creations = Creations(pool, wake=lambda _: ended.set())
    creations.start(KEY, {"exp-0": [lambda: None]}, lambda: 1 / 0)
    assert ended.wait(5)
    assert isinstance(creations.take_failure(KEY), ZeroDivisionError)


def test_without_a_pool_or_anything_to_create_it_all_runs_at_once() -> None:
    ran: list[str] = []
    creations = Creations(None)
    creations.start(KEY, {"exp-0": [lambda: ran.append("trial 0")]}, lambda: ran.append("then"))
    assert ran == ["trial 0", "then"] and creations.creating(KEY) is None
    with pytest.raises(ZeroDivisionError):
        Creations(None).start(KEY, {"exp-0": [lambda: 1 / 0]}, lambda: None)
    with ThreadPoolExecutor(1) as p:
        Creations(p).start(KEY, {"exp-0": []}, lambda: ran.append("then again"))
    assert ran[-1] == "then again"


def test_a_second_batch_while_one_is_in_flight_is_refused(pool: Any) -> None:
    gate = threading.Event()
    creations = Creations(pool)
    creations.start(KEY, {"exp-0": [gate.wait]}, lambda: None)
    with pytest.raises(RuntimeError, match="in flight already"):
        creations.start(KEY, {"exp-1": [lambda: None]}, lambda: None)
    gate.set()
    assert creations.wait(KEY, 5)


class RecordingGateway:
    """The writes _apply makes, in order."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, str]] = []

    def patch_trial_status(self, namespace: str, name: str, status: TuneTrialStatus) -> None:
        self.writes.append(("patch trial", name))

    def delete_pod(self, namespace: str, name: str, grace: int) -> None:
        self.writes.append(("delete pod", name))

    hold: threading.Event | None = None
    """Set: each TuneTrial's creation waits for it."""

    def create_trial(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.hold is not None:
            assert self.hold.wait(5)
        self.writes.append(("create trial", body["metadata"]["name"]))
        return {**body, "metadata": {**body["metadata"], "uid": "trial-uid"}}

    def create_pod(self, body: dict[str, Any]) -> None:
        self.writes.append(("create pod", body["metadata"]["name"]))

    def dry_run_pod(self, body: dict[str, Any]) -> None:
        self.writes.append(("dry run", body["metadata"]["name"]))

    def patch_experiment_status(self, namespace: str, name: str, status: Any) -> None:
        self.writes.append(("patch experiment", name))


BODY = {"apiVersion": "kubetune.io/v1alpha1", "kind": "TuneExperiment",
        "metadata": {"name": "exp", "namespace": "ns", "uid": "u", "generation": 1},
        "spec": {"objective": {"metric": "accuracy", "mode": "max"},
                 "searchSpace": {"lr": {"choice": [0.1, 0.2]}},
                 "trialTemplate": {"spec": {"containers": [{"name": "t", "image": "i"}]}}}}


def _plan() -> Plan:
    """Decisions about exp-0 (not being created) and exp-1 (being created), and a new trial."""
    plan = Plan()
    for name in ("exp-0", "exp-1"):
        plan.patch_trial(name, state=TrialState.PRUNED, reason="Pruned", message="pruned")
        plan.delete_pods.append((f"{name}-1", 30))
        plan.event("TuneTrial", name, "Normal", "TrialPruned", "pruned")
    plan.experiment_status = TuneExperimentStatus(phase=ExperimentPhase.RUNNING)
    plan.new_trials.append(NewTrial(2, {"lr": 0.1}))
    plan.new_pods.append(NewPod("exp-2", 2, 1, {"lr": 0.1}, [1]))
    plan.event("TuneTrial", "exp-2", "Normal", "TrialCreated", "trial 2")
    plan.event("TuneExperiment", "exp", "Warning", "TrialRecreated", "exp-1 was deleted")
    return plan


class Logger:
    def __getattr__(self, _: str) -> Any:
        return lambda *a, **k: None


def _apply(monkeypatch: pytest.MonkeyPatch, creating: frozenset[str] | None,
           creations: Creations | None = None) -> RecordingGateway:
    monkeypatch.setattr(kopf, "event", lambda _b, **k: None)
    gw = RecordingGateway()
    ctx: Any = context.OperatorContext(settings=OperatorSettings(tick_seconds=1),
                                         gateway=cast(Any, gw), prometheus=cast(Any, None),
                                         metrics=OperatorMetrics(), creations=creations)
    spec = validate_experiment_spec(dict(BODY["spec"]))  # type: ignore[arg-type]
    pod_trials = {"exp-0-1": "exp-0", "exp-1-1": "exp-1"}
    apply.apply_plan(ctx, cast(Any, BODY), spec, _plan(), [], Logger(),  # type: ignore[arg-type]
                     None, pod_trials, creating)
    return gw


def test_a_tick_that_decides_only_writes_no_creation_and_nothing_about_trials_in_flight(
        monkeypatch: pytest.MonkeyPatch) -> None:
    gw = _apply(monkeypatch, frozenset({"exp-1"}))
    assert sorted(gw.writes) == [("delete pod", "exp-0-1"), ("patch trial", "exp-0")]
    # exp-0 is recorded before its pod goes
    assert gw.writes.index(("patch trial", "exp-0")) < gw.writes.index(("delete pod", "exp-0-1"))


def _in_order(gw: RecordingGateway) -> None:
    kinds = [w[0] for w in gw.writes]
    assert kinds.count("patch trial") == 2 and kinds.count("delete pod") == 2
    assert kinds.index("create trial") > max(i for i, k in enumerate(kinds) if k == "delete pod")
    assert kinds.index("create pod") > kinds.index("create trial")
    assert kinds[-1] == "patch experiment"


def test_a_full_tick_writes_decisions_then_creations_then_the_status(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _in_order(_apply(monkeypatch, None))


def test_a_full_tick_returns_with_its_creations_in_flight_and_they_end_the_same_way(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with ThreadPoolExecutor(4) as pool:
        creations = Creations(pool)
        held = threading.Event()
        monkeypatch.setattr(RecordingGateway, "hold", held, raising=False)
        gw = _apply(monkeypatch, None, creations)
        assert creations.creating(KEY) == {"exp-2"}  # the tick has returned before them
        assert not [w for w in gw.writes if w[0] in ("create pod", "patch experiment")]
        held.set()
        assert creations.wait(KEY, 5)
    _in_order(gw)


def test_a_tick_that_decides_only_holds_the_events_of_its_decisions_alone() -> None:
    plan = _plan()
    kept = [e for e in plan.events if apply.decision_event(e, frozenset({"exp-1"}))]
    assert [(e.name, e.reason) for e in kept] == [("exp-0", "TrialPruned")]


def test_the_writers_run_every_waiting_decision_before_any_waiting_creation() -> None:
    writers = concurrent.Writers(1)
    gate, busy, ran = threading.Event(), threading.Event(), []
    writers.submit(lambda: (busy.set(), gate.wait()))
    assert busy.wait(5)  # the one thread is busy while the rest waits
    futures = [writers.submit(ran.append, "create 0"),
               writers.submit_at(concurrent.MARK, ran.append, "mark 0"),
               writers.submit_at(concurrent.DECISION, ran.append, "decide 0"),
               writers.submit(ran.append, "create 1"),
               writers.submit_at(concurrent.DECISION, ran.append, "decide 1")]
    gate.set()
    for f in futures:
        f.result(5)
    assert ran == ["decide 0", "decide 1", "mark 0", "create 0", "create 1"]
    failing = writers.submit_at(concurrent.DECISION, lambda: 1 / 0)
    assert isinstance(failing.exception(5), ZeroDivisionError)
    writers.shutdown()
    with pytest.raises(RuntimeError):
        writers.submit(ran.append, "late")


def test_a_tick_writes_the_trials_it_ends_before_those_it_only_marks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Running marks planned first still wait for the decisions that end a trial or delete
    its pod, whichever comes first in the plan; the tick waits for both."""
    monkeypatch.setattr(kopf, "event", lambda _b, **k: None)
    gw = RecordingGateway()
    writers = concurrent.Writers(1)
    gate, busy = threading.Event(), threading.Event()
    writers.submit(lambda: (busy.set(), gate.wait()))
    assert busy.wait(5)  # the one thread is busy until every chain is waiting
    ctx: Any = context.OperatorContext(settings=OperatorSettings(tick_seconds=1),
                                         gateway=cast(Any, gw), prometheus=cast(Any, None),
                                         metrics=OperatorMetrics(), writers=writers)
    plan = Plan()
    plan.patch_trial("exp-0", state=TrialState.RUNNING, reason="Running", message="started")
    plan.patch_trial("exp-1", state=TrialState.PRUNED, reason="Pruned", message="pruned")
    plan.delete_pods.append(("exp-1-1", 30))
    plan.patch_trial("exp-2", reason="Running", message="a rung recorded")
    plan.delete_pods.append(("exp-2-1", 30))  # a pod going ends its trial's attempt
    plan.patch_trial("exp-3", state=TrialState.SUCCEEDED, reason="Succeeded", message="done")
    spec = validate_experiment_spec(dict(BODY["spec"]))  # type: ignore[arg-type]
    done = threading.Event()
    tick = threading.Thread(target=lambda: (apply.apply_plan(
        ctx, cast(Any, BODY), spec, plan, [], Logger(), None,  # type: ignore[arg-type]
        {"exp-1-1": "exp-1", "exp-2-1": "exp-2"}, frozenset()), done.set()))
    tick.start()
    assert _until(lambda: len(writers._waiting) == 4)
    assert not done.is_set()
    gate.set()
    assert done.wait(5)
    tick.join(5)
    writers.shutdown()
    assert gw.writes == [("patch trial", "exp-1"), ("delete pod", "exp-1-1"),
                         ("patch trial", "exp-2"), ("delete pod", "exp-2-1"),
                         ("patch trial", "exp-3"), ("patch trial", "exp-0")]
