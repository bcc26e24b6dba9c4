"""The watch-fed view's read-your-writes: what the operator wrote shows until the watch has it."""

from __future__ import annotations

from typing import Any

import pytest

from kubetune.contract import EXPERIMENT_LABEL
from kubetune.controller import view
from kubetune.controller.planner import TrialView

pytestmark = pytest.mark.unit

KEY = ("ns", "exp")


def obj(name: str, rv: int, experiment: str = "exp", **extra: Any) -> dict[str, Any]:
    return {"kind": "Pod", "metadata": {"name": name, "namespace": "ns", "resourceVersion": str(rv),
                                        "labels": {EXPERIMENT_LABEL: experiment}, **extra}}


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_a_created_object_shows_until_the_watch_delivers_it() -> None:
    writes = view.Writes()
    writes.record("pods", obj("exp-0-1", 10), created=True)
    assert [p["metadata"]["name"] for p in writes.merge("pods", KEY, [])] == ["exp-0-1"]
    assert writes.merge("trials", KEY, []) == []  # another kind
    assert writes.merge("pods", ("ns", "other"), []) == []  # another experiment
    seen = [obj("exp-0-1", 10)]
    assert writes.merge("pods", KEY, seen) == seen
    assert len(writes) == 0  # confirmed: forgotten


def test_a_write_newer_than_the_view_wins_and_an_older_one_loses() -> None:
    writes = view.Writes()
    deleting = obj("exp-0-1", 12, deletionTimestamp="2026-01-01T00:00:00Z")
    writes.record("pods", deleting, created=False)
    stale = [obj("exp-0-1", 11)]
    assert writes.merge("pods", KEY, stale) == [deleting]
    newer = [obj("exp-0-1", 13)]
    assert writes.merge("pods", KEY, newer) == newer
    assert len(writes) == 0


def test_a_patched_object_gone_from_the_view_is_gone() -> None:
    writes = view.Writes()
    writes.record("pods", obj("exp-0-1", 12), created=False)
    assert writes.merge("pods", KEY, []) == []  # deleted since: not brought back
    assert len(writes) == 0


def test_an_unconfirmed_create_is_forgotten_after_a_while() -> None:
    clock = Clock()
    writes = view.Writes(clock=clock, keep_seconds=5)
    writes.record("trials", obj("exp-3", 20), created=True)
    clock.t = 4
    assert len(writes.merge("trials", KEY, [])) == 1
    clock.t = 6
    assert writes.merge("trials", KEY, []) == []


def test_answers_that_are_no_object_are_ignored() -> None:
    writes = view.Writes()
    writes.record("pods", {"kind": "Status", "metadata": {}}, created=False)
    writes.record("pods", {}, created=True)
    assert len(writes) == 0


def test_index_entries_are_keyed_by_namespace_and_experiment() -> None:
    assert view.entry(obj("exp-0-1", 1)) == {KEY: obj("exp-0-1", 1)}
    assert view.entry({"metadata": {"name": "x", "namespace": "ns", "labels": {}}}) == {}
    index = {KEY: [obj("a", 1), obj("b", 2)]}
    assert [b["metadata"]["name"] for b in view.snapshot(index, KEY)] == ["a", "b"]
    assert view.snapshot(index, ("ns", "none")) == []
    assert view.snapshot(None, KEY) == []


def trial(name: str, uid: str, rv: int, state: str = "Running", value: float = 0.5
          ) -> dict[str, Any]:
    return {"kind": "TuneTrial",
            "metadata": {"name": name, "namespace": "ns", "uid": uid, "resourceVersion": str(rv)},
            "spec": {"index": int(name.rsplit("-", 1)[1]), "params": {"lr": 0.1}},
            "status": {"state": state, "rungs": [{"milestone": 1, "value": value, "step": 1,
                                                  "decision": "continue"}]}}


def test_trial_views_are_parsed_once_per_version_and_dropped_when_the_trial_goes() -> None:
    views = view.TrialViews()
    a1, b1 = trial("exp-0", "ua", 5), trial("exp-1", "ub", 6)
    first = views.read(KEY, [a1, b1])
    assert first == [TrialView.from_body(a1), TrialView.from_body(b1)]
    assert first[0].records is first[0].records  # the scheduler gets one list per version
    # The same versions: the very same views, records and all.
    again = views.read(KEY, [dict(a1), dict(b1)])
    assert again[0] is first[0] and again[1] is first[1]
    # A new version of b is parsed anew; another experiment's views are its own.
    b2 = trial("exp-1", "ub", 9, state="Pruned", value=0.2)
    third = views.read(KEY, [a1, b2])
    assert third[0] is first[0] and third[1] is not first[1]
    assert third[1] == TrialView.from_body(b2) and third[1].state == "Pruned"
    assert third[1].records[0].value == 0.2
    assert views.read(("ns", "other"), [a1])[0] is not first[0]
    # A trial gone (deleted, recreated under its name with a new uid) is not kept.
    a_new = trial("exp-0", "ua2", 5)
    assert views.read(KEY, [a_new])[0] == TrialView.from_body(a_new)
    assert len(views) == 2  # exp-0 of KEY, exp-0 of the other experiment
    views.forget_experiment(KEY)
    assert len(views) == 1
