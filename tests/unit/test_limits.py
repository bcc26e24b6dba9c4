"""The bounds a TuneExperiment must keep: the models refuse what the CRD's CEL rules refuse,
with the same numbers, and the conditions and metrics tools read."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client import generate_latest

from kubetune import contract
from kubetune.api import (
    MAX_CONCURRENT_TRIALS,
    MAX_EXPERIMENT_NAME,
    MAX_TRIALS,
    ExperimentPhase,
    SpecError,
    validate_experiment_spec,
)
from kubetune.api.crdgen import build_crds
from kubetune.api.limits import (
    IMMUTABLE_FIELDS,
    LABEL_VALUE_LIMIT,
    MAX_CONFIG_BYTES,
    OPERATOR_ENV,
    owned_env_problem,
)
from kubetune.api.searchspace import grid_points, worst_config_bytes
from kubetune.client import tuner
from kubetune.controller.metrics import OperatorMetrics, package_version
from kubetune.controller.planner.status import (
    failure_conditions,
    outcome_conditions,
    phase_reason,
)


def spec(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "objective": {"metric": "accuracy", "mode": "max"},
        "searchSpace": {"lr": {"uniform": [0.0, 1.0]}},
        "trialTemplate": {"spec": {"containers": [{"name": "t", "image": "i", "env": [
            {"name": "KUBETUNE_CHECKPOINT_ROOT", "value": "/ckpt"}]}]}},
    }
    base.update(changes)
    return base


def refusal(raw: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as err:
        validate_experiment_spec(raw)
    return str(err.value)


def experiment_schema() -> dict[str, Any]:
    crd = build_crds()[0]
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


# -- names ------------------------------------------------------------------------------------
def test_the_longest_name_leaves_room_for_every_trial_index_and_the_tuner_agrees() -> None:
    trial = f"{'n' * MAX_EXPERIMENT_NAME}-{MAX_TRIALS - 1}"
    assert len(trial) <= LABEL_VALUE_LIMIT
    assert tuner._MAX_NAME == MAX_EXPERIMENT_NAME
    (rule,) = experiment_schema()["x-kubernetes-validations"]
    assert rule["rule"] == f"size(self.metadata.name) <= {MAX_EXPERIMENT_NAME}"
    assert "63" in rule["message"] and "label" in rule["message"]


# -- immutability -------------------------------------------------------------------------------
def test_what_defines_the_search_is_immutable_and_the_limits_are_not() -> None:
    rules = experiment_schema()["properties"]["spec"]["x-kubernetes-validations"]
    guarded = {r["fieldPath"].lstrip("."): r for r in rules if "oldSelf" in r["rule"]}
    # spec.workers is optional, so its rule also keeps it from being added or removed.
    assert set(guarded) == {*IMMUTABLE_FIELDS, "workers"}
    for field, rule in guarded.items():
        if field == "workers":
            assert rule["rule"] == ("has(self.workers) == has(oldSelf.workers) && "
                                    "(!has(self.workers) || self.workers == oldSelf.workers)")
        else:
            assert rule["rule"] == f"self.{field} == oldSelf.{field}"
        assert "create a new experiment" in rule["message"]
    assert not {"numSamples", "maxConcurrentTrials", "maxFailedTrials",
                "trialRetries"} & set(guarded)


# -- env the operator owns ------------------------------------------------------------------------
@pytest.mark.parametrize("name", [*OPERATOR_ENV, "KUBETUNE_PARAM_LR"])
def test_every_variable_the_operator_sets_is_refused_in_the_template(name: str) -> None:
    raw = spec()
    raw["trialTemplate"]["spec"]["containers"][0]["env"].append({"name": name, "value": "x"})
    message = refusal(raw)
    assert f"env {name} is set by the operator" in message
    assert "containers[0]" in message and "KUBETUNE_CHECKPOINT_ROOT" in message


def test_the_list_covers_what_the_manifest_writes() -> None:
    written = {contract.ENV_CONFIG, contract.ENV_EXPERIMENT, contract.ENV_TRIAL,
               contract.ENV_ATTEMPT, contract.ENV_METRIC, contract.ENV_MILESTONES,
               contract.ENV_METRICS_PORT, contract.ENV_CHECKPOINT_DIR,
               contract.ENV_START_CHECKPOINT, contract.ENV_KEEP_CHECKPOINT_STEPS}
    assert set(OPERATOR_ENV) == written
    assert owned_env_problem([contract.ENV_CHECKPOINT_ROOT, contract.ENV_LINGER_SECONDS,
                              contract.ENV_STOP_GRACE_SECONDS, "PATH"]) is None


def test_the_env_rule_in_the_crd_names_the_same_variables() -> None:
    pod = experiment_schema()["properties"]["spec"]["properties"]["trialTemplate"]
    env = pod["properties"]["spec"]["properties"]["containers"]["items"]["properties"]["env"]
    (rule,) = env["items"]["x-kubernetes-validations"]
    for name in OPERATOR_ENV:
        assert f"'{name}'" in rule["rule"]
    assert "startsWith('KUBETUNE_PARAM_')" in rule["rule"]
    assert "KUBETUNE_CHECKPOINT_ROOT" not in rule["rule"]


# -- bounds -----------------------------------------------------------------------------------------
def test_samples_and_concurrency_are_bounded() -> None:
    assert "spec.numSamples: must be <= 100000" in refusal(spec(numSamples=MAX_TRIALS + 1))
    assert "spec.maxConcurrentTrials" in refusal(
        spec(maxConcurrentTrials=MAX_CONCURRENT_TRIALS + 1))
    validate_experiment_spec(spec(numSamples=MAX_TRIALS,
                                  maxConcurrentTrials=MAX_CONCURRENT_TRIALS))


def test_the_grid_total_counts_nested_grids_and_is_bounded() -> None:
    space = {"a": {"grid": list(range(100))},
             "opt": {"space": {"b": {"grid": list(range(50))}, "c": {"uniform": [0, 1]}}}}
    parsed = validate_experiment_spec(spec(searchSpace=space, numSamples=20)).search_space
    assert grid_points(parsed) == 5000
    message = refusal(spec(searchSpace=space, numSamples=21))
    assert "numSamples=21 x 5000 grid points = 105000 trials" in message
    assert f"at most {MAX_TRIALS}" in message


def test_a_grid_that_would_overflow_int64_is_refused_not_sampled() -> None:
    space = {f"g{i}": {"grid": list(range(1024))} for i in range(8)}
    assert "trials; at most" in refusal(spec(searchSpace=space))


def test_the_worst_config_is_measured_as_kubetune_config_writes_it() -> None:
    space = {"lr": {"uniform": [0, 1]}, "opt": {"choice": ["sgd", {"name": "adam", "b": [1, 2]}]},
             "tag": {"value": "é"}, "n": {"space": {"k": {"grid": [1, 22, 333]}}}}
    parsed = validate_experiment_spec(spec(searchSpace=space)).search_space
    longest = {"lr": -2.2250738585072014e-308, "opt": {"name": "adam", "b": [1, 2]},
               "tag": "é", "n": {"k": 333}}
    assert worst_config_bytes(parsed) == len(json.dumps(longest, sort_keys=True))


def test_a_config_too_large_for_the_environment_is_refused() -> None:
    big = {"blob": {"value": "x" * MAX_CONFIG_BYTES}}
    message = refusal(spec(searchSpace=big))
    assert "bytes of JSON" in message and "128 KiB" in message
    fits = {"blob": {"value": "x" * (MAX_CONFIG_BYTES - 100)}}
    validate_experiment_spec(spec(searchSpace=fits))


@pytest.mark.parametrize("metric", ["val loss", 'a"b', "1st", "m" * 129, "lo\nss", "loss\n"])
def test_a_metric_name_the_series_cannot_carry_is_refused(metric: str) -> None:
    assert "spec.objective.metric" in refusal(spec(objective={"metric": metric, "mode": "min"}))


@pytest.mark.parametrize("metric", ["accuracy", "val_loss", "ptl/val_loss", "eval:f1", "top-5"])
def test_usual_metric_names_are_accepted(metric: str) -> None:
    validate_experiment_spec(spec(objective={"metric": metric, "mode": "min"}))


def test_a_parameter_name_too_long_is_refused_nested_too() -> None:
    assert "at most 128" in refusal(spec(searchSpace={"p" * 129: {"uniform": [0, 1]}}))
    nested = {"opt": {"space": {"q" * 129: {"uniform": [0, 1]}}}}
    assert "at most 128" in refusal(spec(searchSpace=nested))


def test_the_crd_publishes_the_same_bounds() -> None:
    props = experiment_schema()["properties"]["spec"]["properties"]
    assert props["numSamples"]["maximum"] == MAX_TRIALS
    assert props["maxConcurrentTrials"]["maximum"] == MAX_CONCURRENT_TRIALS
    assert props["objective"]["properties"]["metric"]["maxLength"] == 128
    (names,) = props["searchSpace"]["x-kubernetes-validations"]
    assert "size(k) <= 128" in names["rule"] and "matches" in names["rule"]


# -- conditions ------------------------------------------------------------------------------------
def _by_type(conditions: Any) -> dict[str, Any]:
    return {c.type: c for c in conditions}


def test_complete_is_true_only_on_success_and_failed_only_on_failure() -> None:
    now = "2026-01-01T00:00:00Z"
    ok = _by_type(outcome_conditions(ExperimentPhase.SUCCEEDED, "Succeeded", "best x", now, [], 3))
    assert (ok["Complete"].status, ok["Failed"].status) == ("True", "False")
    bad = _by_type(outcome_conditions(ExperimentPhase.FAILED, "TooManyFailedTrials", "3 failed",
                                      now, [], 3))
    assert (bad["Complete"].status, bad["Failed"].status) == ("False", "True")
    assert bad["Failed"].reason == "TooManyFailedTrials" and bad["Complete"].reason == "Failed"
    running = _by_type(outcome_conditions(ExperimentPhase.RUNNING, "Running", "1 running", now,
                                          [], 3))
    assert (running["Complete"].status, running["Failed"].status) == ("False", "False")
    assert all(c.observed_generation == 3 for c in [*ok.values(), *bad.values()])


def test_an_invalid_spec_fails_with_spec_valid_false_and_failed_true() -> None:
    conditions = _by_type(failure_conditions("InvalidSpec", "spec.x: bad", "2026-01-01T00:00:00Z",
                                             [], 2, spec_valid=False))
    assert conditions["SpecValid"].status == "False" and conditions["Failed"].status == "True"
    assert conditions["Complete"].status == "False"
    assert conditions["Failed"].reason == "InvalidSpec"


def test_the_failure_reason_follows_the_phase_message() -> None:
    assert phase_reason(ExperimentPhase.FAILED, "3 trials failed, reaching maxFailedTrials=3"
                        ) == "TooManyFailedTrials"
    assert phase_reason(ExperimentPhase.FAILED, "no trial completed with a finite objective value"
                        ) == "NoFiniteObjective"
    assert phase_reason(ExperimentPhase.SUCCEEDED, "best") == "Succeeded"


# -- operator metrics ---------------------------------------------------------------------------------
def test_the_operator_registry_has_process_metrics_and_its_build_info() -> None:
    text = generate_latest(OperatorMetrics().registry).decode()
    assert f'kubetune_build_info{{version="{package_version()}"}} 1.0' in text
    for series in ("process_resident_memory_bytes", "process_cpu_seconds_total",
                   "process_open_fds", "python_info"):
        assert series in text, series
