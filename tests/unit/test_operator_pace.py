"""Progress-only status writes are paced per experiment, any other change goes out at once;
Normal decision Events are merged over ticks (kubetune/controller/pace.py)."""

from __future__ import annotations

import pytest

from kubetune.controller.pace import DecisionEvents, StatusPace, progress_only
from kubetune.controller.planner.actions import Event
from kubetune.controller.planner.events import aggregate, decision_message, decisions

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_progress_only_changes_wait_other_changes_do_not() -> None:
    clock = Clock()
    pace = StatusPace(clock=clock, seconds=5)
    assert pace.due("a", progress_only=True)  # the first write of an experiment
    clock.t += 1
    assert not pace.due("a", progress_only=True)
    assert pace.due("b", progress_only=True), "per experiment"
    assert pace.due("a", progress_only=False), "a phase or best-trial change is not held back"
    clock.t += 4
    assert not pace.due("a", progress_only=True), "counted from the last write, whatever it was"
    clock.t += 1.5
    assert pace.due("a", progress_only=True)
    pace.forget("a")
    assert pace.due("a", progress_only=True)


def _status(running: int, created: int, *, phase: str = "Running", best: str = "e-1",
            cutoff: float = 0.5, metrics: str = "True") -> dict:
    message = f"{running} running, {created}/100 trials created" if phase == "Running" \
        else "best trial e-1: acc=0.9"
    return {"phase": phase, "message": message, "observedGeneration": 1,
            "trials": {"running": running, "created": created},
            "rungs": [{"milestone": 1, "recorded": created, "cutoff": cutoff, "bracket": 0}],
            "bestTrial": {"name": best, "metric": 0.5},
            "conditions": [
                {"type": "MetricsAvailable", "status": metrics, "reason": "Queried",
                 "message": "metrics read from Prometheus"},
                {"type": "Complete", "status": "False", "reason": "Running", "message": message},
            ]}


def test_progress_is_the_counts_the_rung_table_and_the_running_message() -> None:
    stored = _status(3, 10)
    assert progress_only(stored, _status(4, 11, cutoff=0.6))
    assert not progress_only(stored, _status(3, 10, phase="Succeeded"))
    assert not progress_only(stored, _status(4, 11, best="e-7")), "a new best trial goes at once"
    assert not progress_only(stored, _status(4, 11, metrics="False")), "a condition's status"
    other = _status(3, 10)
    other["message"] = other["conditions"][1]["message"] = "2 trial pod(s) cannot be scheduled"
    assert not progress_only(stored, other), "a message that says something else goes at once"


def _decided(reason: str, *trials: int) -> list[Event]:
    return [Event("TuneTrial", f"e-{i}", "Normal", reason, f"words of {i}") for i in trials]


def test_decision_events_are_merged_over_ticks_and_flushed_when_due_or_ended() -> None:
    clock = Clock()
    held = DecisionEvents(clock=clock, seconds=30)
    first = held.due("a", _decided("TrialCreated", 0, 1))
    assert [e.name for e in first] == ["e-0", "e-1"], "the first of a reason goes at once"
    clock.t += 2
    warning = Event("TuneTrial", "e-0", "Warning", "TrialFailed", "exit 1")
    done = Event("TuneExperiment", "e", "Normal", "ExperimentSucceeded", "best e-1")
    assert held.due("a", [*_decided("TrialCreated", 2), warning]) == [warning], \
        "a Warning never waits; a Normal decision within the window does"
    assert held.due("b", _decided("TrialCreated", 9)) != [], "per experiment"
    clock.t += 10
    assert [e.name for e in held.due("a", _decided("TrialPruned", 0))] == ["e-0"], \
        "per reason: the first prune goes at once"
    assert held.due("a", _decided("TrialCreated", 3)) == []
    clock.t += 18
    posted = held.due("a", _decided("TrialCreated", 4))
    assert [e.name for e in posted] == ["e-2", "e-3", "e-4"], "30 s after the last, in order"
    (event,) = aggregate(posted, "e")
    assert set(decisions(event.message, "e")) == {"e-2", "e-3", "e-4"}
    clock.t += 1
    assert held.due("a", _decided("TrialPruned", 1)) == []
    assert [e.name for e in held.due("a", [done], ended=True)] == ["e-1", "e"], \
        "an ended experiment posts what it held, before its own Event"
    held.forget("b")


def test_decisions_that_fill_a_message_go_out_at_once() -> None:
    clock = Clock()
    held = DecisionEvents(clock=clock, seconds=30, limit=200)
    held.due("a", _decided("TrialPruned", 0))
    batches: list[list[Event]] = []
    for i in range(1, 40):
        clock.t += 0.1
        if posted := held.due("a", _decided("TrialPruned", i)):
            batches.append(posted)
    assert len(batches) >= 2, "full messages are posted before the window ends"
    assert [e.name for b in batches for e in b] == [f"e-{i}" for i in range(1, len(
        [e for b in batches for e in b]) + 1)], "in order, each once"
    for batch in batches:
        message = decision_message([(e.name, e.message) for e in batch], 200)
        assert not message.endswith("more"), "posted before a name must be cut"
        assert len(message.encode()) >= 150, "and not before the message is nearly full"
