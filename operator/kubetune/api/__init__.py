"""kubetune's custom resources as pydantic models: the one schema of the CRDs.

crds/*.yaml is generated from these models (``make crds``), so a change here is
a change to the API users apply. This package is pure: it imports nothing from
kopf, kubernetes or an HTTP client, and nothing else from kubetune but the wire
contract (the env variables the operator owns). ``kubetune.api.limits`` holds the
bounds the models and the CRD's CEL rules share.
"""

from kubetune.api.common import (
    API_VERSION,
    GROUP,
    VERSION,
    Condition,
    ConditionStatus,
    SpecError,
    to_rfc3339,
)
from kubetune.api.domain_rules import DOMAIN_KINDS
from kubetune.api.experiment import (
    EXPERIMENT_KIND,
    EXPERIMENT_PLURAL,
    BestTrial,
    ExperimentPhase,
    Objective,
    PrometheusSpec,
    RungSummary,
    SchedulerSpec,
    SearchAlgorithm,
    TrialCounts,
    TrialPodSpec,
    TrialTemplate,
    TuneExperiment,
    TuneExperimentSpec,
    TuneExperimentStatus,
    validate_experiment_spec,
)
from kubetune.api.limits import MAX_CONCURRENT_TRIALS, MAX_EXPERIMENT_NAME, MAX_TRIALS
from kubetune.api.searchspace import SearchDomain
from kubetune.api.trial import (
    TRIAL_KIND,
    TRIAL_PLURAL,
    Decision,
    PrunedAt,
    RungRecord,
    TrialState,
    TuneTrial,
    TuneTrialSpec,
    TuneTrialStatus,
    parse_rung_records,
)

__all__ = [
    "API_VERSION",
    "DOMAIN_KINDS",
    "EXPERIMENT_KIND",
    "EXPERIMENT_PLURAL",
    "GROUP",
    "MAX_CONCURRENT_TRIALS",
    "MAX_EXPERIMENT_NAME",
    "MAX_TRIALS",
    "TRIAL_KIND",
    "TRIAL_PLURAL",
    "VERSION",
    "BestTrial",
    "Condition",
    "ConditionStatus",
    "Decision",
    "ExperimentPhase",
    "Objective",
    "PrometheusSpec",
    "PrunedAt",
    "RungRecord",
    "RungSummary",
    "SchedulerSpec",
    "SearchAlgorithm",
    "SearchDomain",
    "SpecError",
    "TrialCounts",
    "TrialPodSpec",
    "TrialState",
    "TrialTemplate",
    "TuneExperiment",
    "TuneExperimentSpec",
    "TuneExperimentStatus",
    "TuneTrial",
    "TuneTrialSpec",
    "TuneTrialStatus",
    "parse_rung_records",
    "to_rfc3339",
    "validate_experiment_spec",
]
