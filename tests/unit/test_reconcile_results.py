"""Results come from Prometheus whenever a trial's result is not final yet: the tick reads it
while any trial is unsettled, and asks for the last report of finished pods, whose series
Prometheus has marked stale."""

from __future__ import annotations

import json
from typing import Any

from kubetune.controller.planner import PodView, TrialMetrics, TrialView, plan_tick
from kubetune.controller.prometheus import experiment_query
from kubetune.controller.reconcile import Awaiting, awaiting_results

NOW = "2026-01-01T00:00:00Z"


def trial(name: str, state: str | None = None) -> TrialView:
    return TrialView(name=name, index=int(name.rsplit("-", 1)[1]), params={},
                     status={"state": state} if state else {})


def pod(name: str, phase: str) -> PodView:
    trial_name, attempt = name.rsplit("-", 1)
    return PodView(name=name, trial=trial_name, attempt=int(attempt), phase=phase)


def test_nothing_is_read_before_any_trial_or_once_every_result_is_final() -> None:
    assert awaiting_results([], []) is None
    assert awaiting_results([trial("e-0", "Succeeded"), trial("e-1", "Pruned")],
                            [pod("e-0-1", "Succeeded")]) is None


def test_a_finished_pod_whose_trial_is_not_recorded_yet_is_read() -> None:
    assert awaiting_results([trial("e-0", "Running")],
                            [pod("e-0-1", "Succeeded")]) == Awaiting(["e-0-1"], [])


def test_only_the_latest_attempt_of_an_unsettled_trial_is_asked_for() -> None:
    pods = [pod("e-0-1", "Failed"), pod("e-0-2", "Succeeded"), pod("e-1-1", "Running")]
    assert awaiting_results([trial("e-0", "Running"), trial("e-1", "Running")],
                            pods) == Awaiting(["e-0-2"], ["e-1-1"])


def test_a_running_trial_is_read_without_any_finished_pod() -> None:
    assert awaiting_results([trial("e-0", "Running")],
                            [pod("e-0-1", "Running")]) == Awaiting([], ["e-0-1"])


def test_a_pruned_trials_pod_still_stopping_keeps_the_read() -> None:
    assert awaiting_results([trial("e-0", "Pruned")], [pod("e-0-1", "Running")]) == Awaiting([], [])


def test_the_query_adds_the_last_report_of_finished_pods_only_when_there_are_some() -> None:
    live = experiment_query("ns", "exp")
    assert "last_over_time" not in live and 'experiment="exp"' in live
    query = experiment_query("ns", "exp", ["exp-1-1", "exp-0-2"])
    assert query.startswith(live + " or last_over_time(")
    assert 'pod=~"exp-0-2|exp-1-1"' in query and query.endswith("[1h])")


def test_running_pods_are_read_past_a_staleness_marker_over_the_last_minute() -> None:
    live = experiment_query("ns", "exp")
    query = experiment_query("ns", "exp", ["exp-0-2"], ["exp-1-1", "exp-2-1"])
    running, finished = query.removeprefix(live + " or ").split(" or ")
    assert running.startswith("last_over_time(") and 'pod=~"exp-1-1|exp-2-1"' in running
    assert running.endswith("[1m])")
    assert 'pod=~"exp-0-2"' in finished and finished.endswith("[1h])")
    assert experiment_query("ns", "exp", [], ["exp-1-1"]).endswith("[1m])")


def test_a_dot_in_a_pod_name_matches_only_a_dot() -> None:
    assert 'pod=~"a\\\\.b-0-1"' in experiment_query("ns", "a.b", ["a.b-0-1"])


# -- the planner takes both sources ---------------------------------------------------------
def _settle(message: str, metrics: TrialMetrics | None) -> dict[str, Any]:
    from tests.unit.test_planner import experiment, pod
    from tests.unit.test_planner import trial as running

    plan = plan_tick(experiment(numSamples=1, scheduler={"type": "fifo"}), [running(0)],
                     [pod(0, "Succeeded", message=message)],
                     {"exp-0": metrics} if metrics else {}, NOW)
    return plan.trial_status["exp-0"].merge_patch()


def test_a_garbled_termination_message_takes_the_result_from_prometheus() -> None:
    patch = _settle("{not json", TrialMetrics(step=9, metrics={"accuracy": 0.9, "loss": 0.1}))
    assert patch["state"] == "Succeeded"
    assert patch["metrics"] == {"accuracy": 0.9, "loss": 0.1} and patch["step"] == 9


def test_a_message_without_the_objective_is_completed_by_prometheus() -> None:
    patch = _settle(json.dumps({"step": 9, "metrics": {"loss": 0.05}}),
                    TrialMetrics(step=8, metrics={"accuracy": 0.9, "loss": 0.1}))
    assert patch["state"] == "Succeeded"
    assert patch["metrics"] == {"accuracy": 0.9, "loss": 0.05}  # the message wins where it has a value
    assert patch["step"] == 9


def test_a_trial_neither_source_has_fails_naming_the_objective() -> None:
    patch = _settle("{not json", None)
    assert patch["state"] == "Failed" and "'accuracy'" in patch["message"]


def test_a_trial_container_done_while_a_sidecar_runs_is_asked_for() -> None:
    sidecar = PodView(name="e-0-1", trial="e-0", attempt=1, phase="Running",
                      main_terminated=True, exit_code=0)
    assert awaiting_results([trial("e-0", "Running")], [sidecar]) == Awaiting(["e-0-1"], [])
