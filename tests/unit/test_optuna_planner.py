"""The planner's model-based search: history from the TuneTrials, one tick's trials see each other."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kubetune.api import SchedulerSpec, SpecError, validate_experiment_spec
from kubetune.contract import ENV_CONFIG
from kubetune.controller.planner import ExperimentView, PodView, TrialView, plan_tick
from kubetune.controller.planner.suggest import history_record
from kubetune.search.optuna import HistoryRecord, OptunaSuggester

NOW = "2026-01-01T00:00:00Z"
SPACE = {"x": {"uniform": [0.0, 1.0]}, "depth": {"randint": [1, 5]}}
ALGORITHM = {"type": "tpe", "seed": 9, "nStartupTrials": 3}


def experiment(status: dict[str, Any] | None = None, **algorithm: Any) -> ExperimentView:
    raw = {
        "objective": {"metric": "loss", "mode": "min"},
        "searchSpace": SPACE,
        "searchAlgorithm": {**ALGORITHM, **algorithm},
        "numSamples": 12,
        "maxConcurrentTrials": 3,
        "scheduler": {"type": "asha", "maxT": 9, "gracePeriod": 1, "reductionFactor": 3},
        "trialTemplate": {"spec": {"containers": [{"name": "t", "image": "x"}]}},
    }
    return ExperimentView(name="exp", namespace="ns", generation=1,
                          spec=validate_experiment_spec(raw), status=status or {})


def finished(index: int, params: dict[str, Any], state: str, value: float) -> TrialView:
    status: dict[str, Any] = {"state": state, "podName": f"exp-{index}-1"}
    if state == "Succeeded":
        status["metrics"] = {"loss": value}
    else:
        status["prunedAt"] = {"milestone": 1, "value": value}
        status["rungs"] = [{"milestone": 1, "value": value, "step": 1, "decision": "stop"}]
    return TrialView(name=f"exp-{index}", index=index, params=params, status=status)


def done_pod(index: int) -> PodView:
    return PodView(name=f"exp-{index}-1", trial=f"exp-{index}", attempt=1, phase="Succeeded",
                   exit_code=0)


def fresh() -> OptunaSuggester:
    return OptunaSuggester("tpe", SPACE, "min", 9, {"nStartupTrials": 3})


def test_trials_created_in_one_tick_see_the_earlier_ones_as_running() -> None:
    plan = plan_tick(experiment(), [], [], None, NOW)
    configs = [t.params for t in plan.new_trials]
    assert [t.index for t in plan.new_trials] == [0, 1, 2]
    history: list[HistoryRecord] = []
    for i, config in enumerate(configs):
        assert config == fresh().suggest(i, history, reuse=False)
        history.append(HistoryRecord(i, config, "running"))
    assert [p.params for p in plan.new_pods] == configs


def test_new_trials_follow_the_finished_ones_as_told_to_a_fresh_study() -> None:
    first = plan_tick(experiment(), [], [], None, NOW)
    values = [0.3, 0.1, 0.7]
    states = ["Succeeded", "Pruned", "Succeeded"]
    trials = [finished(t.index, t.params, s, v)
              for t, s, v in zip(first.new_trials, states, values, strict=True)]
    pods = [done_pod(t.index) for t in trials]
    plan = plan_tick(experiment(status={"trials": {"created": 3}}), trials, pods, {}, NOW)
    assert [t.index for t in plan.new_trials] == [3, 4, 5]
    history = [
        HistoryRecord(0, trials[0].params, "complete", 0.3, {}),
        HistoryRecord(1, trials[1].params, "pruned", 0.1, {1: 0.1}),
        HistoryRecord(2, trials[2].params, "complete", 0.7, {}),
    ]
    for new in plan.new_trials:
        assert new.params == fresh().suggest(new.index, history, reuse=False)
        history.append(HistoryRecord(new.index, new.params, "running"))
    again = plan_tick(experiment(status={"trials": {"created": 3}}), trials, pods, {}, NOW)
    assert [t.params for t in again.new_trials] == [t.params for t in plan.new_trials]


def test_stopped_trials_as_complete_tells_the_value_where_they_stopped() -> None:
    spec = experiment(stoppedTrialsAs="complete").spec
    pruned = finished(1, {"x": 0.5, "depth": 2}, "Pruned", 0.25)
    record = history_record(spec, pruned, "Pruned", None)
    assert (record.state, record.value, dict(record.intermediate)) == ("pruned", 0.25, {1: 0.25})
    suggester = OptunaSuggester("tpe", SPACE, "min", 9, stopped_as="complete")
    assert suggester.frozen(record).state.name == "COMPLETE"


def test_a_deleted_trial_comes_back_with_the_config_its_pod_ran_with() -> None:
    first = plan_tick(experiment(), [], [], None, NOW)
    kept = [TrialView(name=f"exp-{t.index}", index=t.index, params=t.params,
                      status={"state": "Running", "podName": f"exp-{t.index}-1"})
            for t in first.new_trials]
    deleted = kept.pop(1)
    pods = [PodView(name=f"exp-{t.index}-1", trial=f"exp-{t.index}", attempt=1, phase="Running",
                    config=json.loads(json.dumps(t.params)))
            for t in first.new_trials]
    plan = plan_tick(experiment(status={"trials": {"created": 3}}), kept, pods, None, NOW)
    (recreated,) = plan.new_trials
    assert recreated.index == 1 and recreated.params == deleted.params
    assert any(e.reason == "TrialRecreated" and "same config" in e.message for e in plan.events)


def test_a_pod_view_reads_the_config_from_its_environment() -> None:
    body = {"metadata": {"name": "exp-0-1", "labels": {}},
            "spec": {"containers": [{"name": "t", "image": "x",
                                     "env": [{"name": ENV_CONFIG, "value": '{"x": 0.5}'}]}]}}
    assert PodView.from_body(body).config == {"x": 0.5}


def test_new_configs_are_recorded_in_the_status_once() -> None:
    first = plan_tick(experiment(), [], [], None, NOW)
    assert first.experiment_status is not None
    recorded = first.experiment_status.merge_patch()["trialConfigs"]
    assert recorded == {str(t.index): t.params for t in first.new_trials}
    running = [TrialView(name=f"exp-{t.index}", index=t.index, params=t.params,
                         status={"state": "Running"}) for t in first.new_trials]
    pods = [PodView(name=f"exp-{t.index}-1", trial=f"exp-{t.index}", attempt=1, phase="Running")
            for t in first.new_trials]
    again = plan_tick(experiment(status={"trials": {"created": 3}, "trialConfigs": recorded}),
                      running, pods, None, NOW)
    assert again.experiment_status is not None
    assert "trialConfigs" not in again.experiment_status.merge_patch()
    # A trial created before its config was recorded (operator killed in between) is recorded.
    late = plan_tick(experiment(status={"trials": {"created": 3}}), running, pods, None, NOW)
    assert late.experiment_status is not None
    assert late.experiment_status.merge_patch()["trialConfigs"] == recorded


def test_a_deleted_finished_trial_whose_pods_are_gone_comes_back_with_its_recorded_config() -> None:
    first = plan_tick(experiment(), [], [], None, NOW)
    recorded = {str(t.index): t.params for t in first.new_trials}
    done = [finished(t.index, t.params, "Succeeded", 0.5) for t in first.new_trials]
    gone = done.pop(0)
    pods = [done_pod(t.index) for t in done]
    status = {"trials": {"created": 3}, "trialConfigs": recorded}
    plan = plan_tick(experiment(status=status), done, pods, {}, NOW)
    recreated = next(t for t in plan.new_trials if t.index == 0)
    assert recreated.params == gone.params
    # The trials created in the same tick saw it running with that config.
    history = [HistoryRecord(0, gone.params, "running"),
               *(HistoryRecord(t.index, t.params, "complete", 0.5, {}) for t in done)]
    new = next(t for t in plan.new_trials if t.index == 3)
    assert new.params == fresh().suggest(3, history, reuse=False)


@pytest.mark.parametrize("scheduler", [
    {"type": "asha", "maxT": 9, "gracePeriod": 1, "reductionFactor": 3},
    {"type": "median", "gracePeriod": 1, "minSamplesRequired": 2},
    {"type": "fifo"},
])
def test_tpe_runs_under_every_scheduler(scheduler: dict[str, Any]) -> None:
    exp = experiment()
    exp = ExperimentView(name="exp", namespace="ns", generation=1, status={},
                         spec=exp.spec.model_copy(update={
                             "scheduler": SchedulerSpec.model_validate(scheduler)}))
    plan = plan_tick(exp, [], [], None, NOW)
    assert len(plan.new_trials) == 3
    history: list[HistoryRecord] = []
    for new in plan.new_trials:
        assert new.params == fresh().suggest(new.index, history, reuse=False)
        history.append(HistoryRecord(new.index, new.params, "running"))


def test_a_trial_the_median_rule_stopped_is_told_with_its_value_where_it_stopped() -> None:
    spec = experiment().spec
    stopped = TrialView(name="exp-2", index=2, params={"x": 0.1, "depth": 1},
                        status={"state": "Pruned", "prunedAt": {"milestone": 4, "value": 0.6}})
    record = history_record(spec, stopped, "Pruned", None)
    assert (record.state, record.value, dict(record.intermediate)) == ("pruned", 0.6, {4: 0.6})


def test_gp_without_torch_fails_the_spec_saying_what_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import kubetune.search.optuna as search_optuna

    monkeypatch.setattr(search_optuna, "gp_available", lambda: False)
    with pytest.raises(SpecError) as err:
        plan_tick(experiment(type="gp", nStartupTrials=None), [], [], None, NOW)
    assert err.value.field == "spec.searchAlgorithm.type"
    assert "torch" in str(err.value) and "kubetune[operator,gp]" in str(err.value)
