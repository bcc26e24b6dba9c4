"""The pydantic models of TuneExperiment and TuneTrial: defaults, validation, messages."""

from __future__ import annotations

import ast
import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from kubetune.api import (
    API_VERSION,
    EXPERIMENT_PLURAL,
    GROUP,
    TRIAL_PLURAL,
    VERSION,
    BestTrial,
    Condition,
    ExperimentPhase,
    RungRecord,
    RungSummary,
    SchedulerSpec,
    SpecError,
    TrialState,
    TuneExperiment,
    TuneExperimentSpec,
    TuneExperimentStatus,
    TuneTrial,
    TuneTrialStatus,
    to_rfc3339,
    validate_experiment_spec,
)

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "kubetune"

MANIFEST = """
apiVersion: kubetune.io/v1alpha1
kind: TuneExperiment
metadata: {name: mnist, namespace: ml}
spec:
  objective: {metric: accuracy, mode: max}
  searchSpace:
    lr:          {loguniform: [1.0e-5, 1.0e-1]}
    hidden_size: {choice: [64, 128, 256]}
    momentum:    {uniform: [0.5, 0.99]}
    layers:      {randint: [1, 4]}
    batch_size:  {grid: [32, 64]}
  searchAlgorithm: {type: random, seed: 7}
  numSamples: 20
  maxConcurrentTrials: 4
  maxFailedTrials: 3
  scheduler: {type: asha, timeAttr: training_iteration, maxT: 81, gracePeriod: 1, reductionFactor: 3}
  trialTemplate:
    metadata: {labels: {team: vision}}
    spec:
      restartPolicy: Never
      containers:
      - name: trainer
        image: ghcr.io/example/mnist:1
        resources: {limits: {nvidia.com/gpu: 1}}
"""


def spec_with(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "objective": {"metric": "loss", "mode": "min"},
        "searchSpace": {"lr": {"uniform": [0, 1]}},
        "trialTemplate": {"spec": {"containers": [{"name": "t", "image": "x"}]}},
    }
    spec.update(changes)
    return spec


def space_error(space: dict[str, Any]) -> SpecError:
    with pytest.raises(SpecError) as caught:
        validate_experiment_spec(spec_with(searchSpace=space))
    return caught.value


def test_api_constants_name_the_group_and_plurals() -> None:
    assert (GROUP, VERSION, API_VERSION) == ("kubetune.io", "v1alpha1", "kubetune.io/v1alpha1")
    assert (EXPERIMENT_PLURAL, TRIAL_PLURAL) == ("tuneexperiments", "tunetrials")


def test_design_manifest_parses_with_its_values() -> None:
    experiment = TuneExperiment.model_validate(yaml.safe_load(MANIFEST))
    spec = experiment.spec
    assert spec.objective.mode == "max"
    assert spec.search_algorithm.seed == 7
    assert spec.num_samples == 20 and spec.max_concurrent_trials == 4
    assert spec.scheduler.type == "asha" and spec.scheduler.reduction_factor == 3
    assert spec.search_space["batch_size"].kind == "grid"
    assert spec.search_space["lr"].arguments == [1e-5, 1e-1]


def test_minimal_spec_gets_ray_like_defaults() -> None:
    spec = validate_experiment_spec(spec_with())
    assert spec.search_algorithm.type == "random" and spec.search_algorithm.seed == 0
    assert spec.num_samples == 1
    assert spec.max_concurrent_trials == 1
    assert spec.max_failed_trials == 3
    assert spec.trial_retries == 1
    assert spec.prune_grace_period_seconds == 30
    assert spec.metrics_port == 8000
    assert spec.prometheus is None
    assert spec.scheduler == SchedulerSpec(
        type="fifo",
        time_attr="training_iteration",
        max_t=100,
        grace_period=1,
        reduction_factor=4,
        brackets=1,
        min_samples_required=3,
    )


def test_dump_by_alias_round_trips_in_camel_case() -> None:
    spec = TuneExperiment.model_validate(yaml.safe_load(MANIFEST)).spec
    dumped = spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert "searchSpace" in dumped and "maxConcurrentTrials" in dumped
    assert dumped["scheduler"]["timeAttr"] == "training_iteration"
    assert TuneExperimentSpec.model_validate(dumped) == spec


def test_snake_case_field_names_are_accepted_in_python() -> None:
    spec = TuneExperimentSpec.model_validate(
        {**spec_with(), "max_concurrent_trials": 5, "num_samples": 2}
    )
    assert (spec.max_concurrent_trials, spec.num_samples) == (5, 2)


def test_null_constant_survives_a_dump_without_nones() -> None:
    spec = validate_experiment_spec(spec_with(searchSpace={"dropout": {"value": None}}))
    dumped = spec.model_dump(by_alias=True, exclude_none=True)
    assert dumped["searchSpace"] == {"dropout": {"value": None}}
    assert validate_experiment_spec(dumped).search_space["dropout"].kind == "value"


def test_trial_template_returns_the_whole_pod_template_as_a_copy() -> None:
    spec = TuneExperiment.model_validate(yaml.safe_load(MANIFEST)).spec
    template = spec.trial_template.pod_template()
    assert template["metadata"] == {"labels": {"team": "vision"}}
    assert template["spec"]["restartPolicy"] == "Never"
    assert template["spec"]["containers"][0]["resources"] == {"limits": {"nvidia.com/gpu": 1}}
    template["spec"]["containers"].clear()
    assert spec.trial_template.pod_template()["spec"]["containers"]


def test_spec_error_reads_field_colon_message() -> None:
    error = space_error({"lr": {"loguniform": [0, 1]}})
    assert isinstance(error, ValueError)
    assert error.field == "spec.searchSpace.lr"
    assert str(error) == "spec.searchSpace.lr: loguniform needs 0 < low < high, got [0, 1]"


def test_spec_error_mentions_the_other_problems_too() -> None:
    with pytest.raises(SpecError) as caught:
        validate_experiment_spec(spec_with(numSamples=0, maxConcurrentTrials=0))
    assert caught.value.field == "spec.numSamples"
    assert "spec.maxConcurrentTrials: must be >= 1, got 0" in str(caught.value)


@pytest.mark.parametrize(
    ("space", "field", "message"),
    [
        ({"x": {"uniform": [1, 0]}}, "spec.searchSpace.x", "uniform needs low < high, got [1, 0]"),
        ({"x": {"uniform": [1, 1]}}, "spec.searchSpace.x", "uniform needs low < high"),
        ({"x": {"quniform": [0, 1, 0]}}, "spec.searchSpace.x", "quniform needs q > 0"),
        ({"x": {"quniform": [0.05, 1, 0.1]}}, "spec.searchSpace.x", "low=0.05 is not a multiple"),
        ({"x": {"loguniform": [-1, 1]}}, "spec.searchSpace.x", "loguniform needs 0 < low < high"),
        ({"x": {"loguniform": [1, 10, 1]}}, "spec.searchSpace.x", "needs a logarithm base > 1"),
        ({"x": {"qloguniform": [0, 1, 0.1]}}, "spec.searchSpace.x", "needs 0 < low < high"),
        ({"x": {"qloguniform": [0.1, 1, -0.1]}}, "spec.searchSpace.x", "needs q > 0"),
        ({"x": {"randn": [0, 0]}}, "spec.searchSpace.x", "randn needs sd > 0, got [0, 0]"),
        ({"x": {"qrandn": [0, 1, 0]}}, "spec.searchSpace.x", "qrandn needs q > 0"),
        ({"x": {"randint": [4, 1]}}, "spec.searchSpace.x", "randint needs low < high"),
        ({"x": {"qrandint": [1, 10, 0]}}, "spec.searchSpace.x", "qrandint needs q > 0"),
        ({"x": {"qrandint": [1, 3, 5]}}, "spec.searchSpace.x", "no multiple of q=5"),
        ({"x": {"lograndint": [0, 8]}}, "spec.searchSpace.x", "lograndint needs 0 < low < high"),
        ({"x": {"qlograndint": [1, 64, 2, 0]}}, "spec.searchSpace.x", "base > 1"),
        ({"x": {"uniform": [0]}}, "spec.searchSpace.x", "uniform takes [low, high], got [0]"),
        ({"x": {"quniform": [0, 1]}}, "spec.searchSpace.x", "quniform takes [low, high, q]"),
        ({"x": {"randint": [1.5, 4]}}, "spec.searchSpace.x.randint[0]", "must be an integer"),
        ({"x": {"uniform": ["0", 1]}}, "spec.searchSpace.x.uniform[0]", "must be a number"),
        ({"x": {"uniform": [True, 1]}}, "spec.searchSpace.x.uniform[0]", "must be a number"),
        ({"x": {"uniform": [0, math.inf]}}, "spec.searchSpace.x.uniform[1]", "finite"),
        ({"x": {"choice": []}}, "spec.searchSpace.x", "choice needs at least one value"),
        ({"x": {"grid": []}}, "spec.searchSpace.x", "grid needs at least one value"),
        ({"x": {"uniform": None}}, "spec.searchSpace.x", "uniform needs [low, high], got null"),
        ({"x": {"uniformm": [0, 1]}}, "spec.searchSpace.x", "did you mean 'uniform'"),
        ({"x": {"uniform": [0, 1], "choice": [1]}}, "spec.searchSpace.x", "exactly one"),
        ({"x": {}}, "spec.searchSpace.x", "is empty"),
        ({"x": 0.5}, "spec.searchSpace.x", "for a constant write {value: 0.5}"),
        ({}, "spec.searchSpace", "needs at least one parameter"),
        ({"a.b": {"value": 1}}, "spec.searchSpace", "parameter name 'a.b'"),
        (
            {"opt": {"space": {"m": {"uniform": [1, 0]}}}},
            "spec.searchSpace.opt.space.m",
            "uniform needs low < high",
        ),
        ({"opt": {"space": {}}}, "spec.searchSpace.opt.space", "needs at least one parameter"),
        (
            {"a_b": {"value": 1}, "a": {"space": {"b": {"value": 2}}}},
            "spec.searchSpace",
            "KUBETUNE_PARAM_A_B",
        ),
    ],
)
def test_invalid_search_space_is_rejected_naming_field_and_rule(
    space: dict[str, Any], field: str, message: str
) -> None:
    error = space_error(space)
    assert error.field == field
    assert message in error.message


def test_unknown_domain_lists_the_known_ones() -> None:
    error = space_error({"x": {"beta": [1, 2]}})
    assert "unknown domain 'beta'" in error.message
    assert "uniform, quniform, loguniform" in error.message and "space" in error.message


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        (
            {"objective": {"metric": "a", "mode": "maximize"}},
            "spec.objective.mode",
            "one of 'min' or 'max', got 'maximize'",
        ),
        (
            {"objective": {"metric": "", "mode": "max"}},
            "spec.objective.metric",
            "must not be empty",
        ),
        ({"numSamples": 0}, "spec.numSamples", "must be >= 1, got 0"),
        ({"maxConcurrentTrials": 0}, "spec.maxConcurrentTrials", "must be >= 1, got 0"),
        ({"maxFailedTrials": -1}, "spec.maxFailedTrials", "must be >= 0"),
        ({"trialRetries": -1}, "spec.trialRetries", "must be >= 0"),
        ({"scheduler": {"gracePeriod": 200}}, "spec.scheduler", "gracePeriod must be <= maxT"),
        ({"scheduler": {"reductionFactor": 1.5}}, "spec.scheduler.reductionFactor", ">= 2"),
        ({"scheduler": {"type": "hyperband"}}, "spec.scheduler.type", "'asha', 'fifo', 'median' or 'pbt'"),
        ({"searchAlgorithm": {"seed": -1}}, "spec.searchAlgorithm.seed", ">= 0"),
        ({"searchAlgorithm": {"type": "grid"}}, "spec", "needs at least one {grid: [...]}"),
        ({"metricsPort": 70000}, "spec.metricsPort", "<= 65535"),
        ({"pruneGracePeriodSeconds": -5}, "spec.pruneGracePeriodSeconds", ">= 0"),
        ({"prometheus": {"url": "prometheus:9090"}}, "spec.prometheus.url", "must match"),
        (
            {"trialTemplate": {"spec": {"containers": []}}},
            "spec.trialTemplate.spec.containers",
            "at least 1",
        ),
        ({"trialTemplate": {"metadata": {}}}, "spec.trialTemplate.spec", "is required"),
        ({"maxConcurrentTrial": 2}, "spec.maxConcurrentTrial", "not a known field"),
    ],
)
def test_invalid_spec_fields_are_rejected_with_their_path(
    changes: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(SpecError) as caught:
        validate_experiment_spec(spec_with(**changes))
    assert caught.value.field == field
    assert message in caught.value.message


def test_missing_required_fields_are_named() -> None:
    with pytest.raises(SpecError) as caught:
        validate_experiment_spec({"searchSpace": {"lr": {"uniform": [0, 1]}}})
    fields = {caught.value.field, *(field for field, _ in caught.value.others)}
    assert fields == {"spec.objective", "spec.trialTemplate"}
    assert caught.value.message == "is required"


def test_grid_algorithm_accepts_a_grid_in_a_nested_space() -> None:
    spec = validate_experiment_spec(
        spec_with(
            searchAlgorithm={"type": "grid"},
            searchSpace={"opt": {"space": {"name": {"grid": ["sgd", "adam"]}}}},
        )
    )
    assert spec.search_space["opt"].arguments["name"].kind == "grid"


def test_every_domain_kind_is_accepted_with_valid_arguments() -> None:
    space = {
        "a": {"uniform": [0, 1]},
        "b": {"quniform": [0, 1, 0.25]},
        "c": {"loguniform": [1e-5, 1e-1]},
        "c2": {"loguniform": [1e-5, 1e-1, 2]},
        "d": {"qloguniform": [0.001, 1, 0.001]},
        "e": {"randn": []},
        "e1": {"randn": [3]},
        "e2": {"randn": [3, 0.5]},
        "f": {"qrandn": [0, 1, 0.5]},
        "g": {"randint": [1, 4]},
        "h": {"qrandint": [1, 10]},
        "h2": {"qrandint": [2, 10, 2]},
        "i": {"lograndint": [1, 1024]},
        "j": {"qlograndint": [8, 1024, 8]},
        "j2": {"qlograndint": [8, 1024, 8, 2]},
        "k": {"choice": ["sgd", {"name": "adam", "betas": [0.9, 0.99]}, None]},
        "l": {"grid": [32, 64]},
        "m": {"value": {"nested": True}},
        "n": {"space": {"inner": {"space": {"deep": {"grid": [1, 2]}}}}},
    }
    spec = validate_experiment_spec(spec_with(searchSpace=space))
    assert {name: d.kind for name, d in spec.search_space.items()}["n"] == "space"
    assert len(spec.search_space) == len(space)


def test_spec_rejects_values_that_json_cannot_carry() -> None:
    error = space_error({"when": {"value": datetime(2024, 1, 1, tzinfo=UTC)}})
    assert error.field.startswith("spec.searchSpace.when")


def test_non_finite_observations_become_absent() -> None:
    record = RungRecord.from_dict(
        {"milestone": 3, "value": math.nan, "step": 3, "cutoff": math.inf, "decision": "stop"}
    )
    assert record.value is None and record.cutoff is None
    (in_status,) = TuneTrialStatus.model_validate(
        {"rungs": [{"milestone": 3, "value": math.nan, "step": 3, "decision": "stop"}]}
    ).rungs or []
    assert in_status == record
    status = TuneTrialStatus(metrics={"loss": math.nan, "acc": 0.5}, objective=-math.inf)
    assert status.metrics == {"loss": None, "acc": 0.5} and status.objective is None
    # Written as a merge patch, None removes the stored values rather than keeping stale ones.
    assert status.merge_patch() == {"metrics": {"loss": None, "acc": 0.5}, "objective": None}
    assert RungSummary(milestone=1, cutoff=math.nan).cutoff is None


def test_best_trial_metric_must_be_finite() -> None:
    with pytest.raises(ValidationError):
        BestTrial(name="t-1", metric=math.nan)


def test_status_from_a_newer_operator_with_unknown_fields_still_parses() -> None:
    status = TuneExperimentStatus.model_validate({"phase": "Running", "gpuHoursUsed": 3.5})
    assert status.phase is ExperimentPhase.RUNNING


def test_status_dump_uses_camel_case_and_leaves_out_unset_fields() -> None:
    status = TuneTrialStatus(state=TrialState.RUNNING, pod_name="e-0-1", attempts=1)
    assert status.model_dump(by_alias=True, exclude_none=True, mode="json") == {
        "state": "Running",
        "podName": "e-0-1",
        "attempts": 1,
    }


@pytest.mark.parametrize("value", ["2024-05-01T12:00:00Z", "2024-05-01T12:00:00.5+02:00"])
def test_rfc3339_timestamps_are_accepted(value: str) -> None:
    assert Condition(type="Running", status="True", last_transition_time=value)


@pytest.mark.parametrize("value", ["yesterday", "2024-05-01T12:00:00"])
def test_timestamps_without_a_zone_or_unparseable_are_rejected(value: str) -> None:
    with pytest.raises(ValidationError, match=r"RFC 3339|time zone"):
        TuneTrialStatus(start_time=value)


def test_to_rfc3339_writes_utc_seconds_with_z() -> None:
    moment = datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert to_rfc3339(moment) == "2024-05-01T12:00:00Z"
    with pytest.raises(ValueError, match="aware"):
        to_rfc3339(datetime(2024, 5, 1))


def test_final_trial_states_are_succeeded_pruned_and_failed() -> None:
    assert {s for s in TrialState if s.is_final} == {
        TrialState.SUCCEEDED,
        TrialState.PRUNED,
        TrialState.FAILED,
    }


def test_trial_object_defaults_api_version_and_kind() -> None:
    trial = TuneTrial.model_validate(
        {
            "metadata": {"name": "e-0"},
            "spec": {"experiment": "e", "index": 0, "params": {"lr": 0.1}},
        }
    )
    dumped = trial.model_dump(by_alias=True, exclude_none=True)
    assert dumped["apiVersion"] == "kubetune.io/v1alpha1" and dumped["kind"] == "TuneTrial"
    assert dumped["spec"] == {"experiment": "e", "index": 0, "params": {"lr": 0.1}}


def _kubetune_imports(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize(
    ("package", "allowed"),
    # The wire contract is pure stdlib: api reads the env names the operator owns from it.
    [("api", ("kubetune.api", "kubetune.contract")),
     ("search", ("kubetune.api", "kubetune.search", "kubetune.contract"))],
)
def test_pure_core_imports_no_io_and_only_lower_layers(
    package: str, allowed: tuple[str, ...]
) -> None:
    forbidden = ("kopf", "kubernetes", "requests", "urllib3", "http", "aiohttp", "httpx")
    for path in sorted((PACKAGE / package).glob("*.py")):
        for module in _kubetune_imports(path):
            root = module.split(".")[0]
            assert root not in forbidden, f"{path.name} imports {module}"
            if root == "kubetune":
                assert module.startswith(allowed), f"{path.name} imports {module}"


def test_search_space_raw_gives_back_the_written_mapping() -> None:
    space = {
        "lr": {"loguniform": [1e-5, 1e-1]},
        "opt": {"space": {"name": {"choice": ["sgd", None]}, "wd": {"value": None}}},
    }
    spec = validate_experiment_spec(spec_with(searchSpace=space))
    raw = spec.search_space_raw()
    assert raw == space
    raw["lr"]["loguniform"][0] = 1.0
    assert spec.search_space["lr"].arguments == [1e-5, 1e-1]
