"""The TuneExperiment resource: what a user asks for, and what the operator reports.

Field names follow Ray Tune (TuneConfig, ASHAScheduler) where a Ray user would
look for them. Defaults live here and are also published in the CRD, so the
apiserver fills them in and `kubectl get -o yaml` shows the effective spec.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, ConfigDict, Field, ValidationError, model_validator

from kubetune.api.common import (
    API_VERSION,
    SpecError,
    SpecModel,
    StatusModel,
    spec_error,
)
from kubetune.api.experiment_status import (
    BestTrial,
    ExperimentPhase,
    RungSummary,
    TrialCounts,
    TuneExperimentStatus,
)
from kubetune.api.limits import (
    MAX_CONCURRENT_TRIALS,
    MAX_NAME_LENGTH,
    MAX_TRIALS,
    METRIC_NAME_PATTERN,
    METRIC_WHY,
    config_problem,
    immutable_rules,
    metric_name_rule,
    name_problem,
    parameter_names_rule,
    trials_problem,
)
from kubetune.api.pbt import PBTArguments, pbt_problem, pbt_rules
from kubetune.api.search_algorithm import SearchAlgorithm, search_problem, search_rules
from kubetune.api.searchspace import (
    MAX_PARAMETERS,
    SearchDomain,
    SearchSpaceSpec,
    grid_points,
    worst_config_bytes,
)
from kubetune.api.stop import StopSpec
from kubetune.api.storage import StorageSpec, storage_template_problem
from kubetune.api.template import TrialPodSpec, TrialTemplate
from kubetune.api.workers import WorkersSpec, workers_problem, workers_rules

EXPERIMENT_KIND: Final = "TuneExperiment"
EXPERIMENT_PLURAL: Final = "tuneexperiments"

_DEFAULTED_OBJECT: dict[str, Any] = {"default": {}}
"""Schema default for an all-defaults object, so the apiserver fills in its fields too."""


def _check_metric_name(name: str) -> str:
    problem = name_problem("metric name", name, METRIC_NAME_PATTERN, METRIC_WHY)
    if problem:
        raise ValueError(problem)
    return name


MetricName = Annotated[str, AfterValidator(_check_metric_name)]
"""A metric's name, as a trial's series label, its termination message and report() carry it."""


class Objective(SpecModel):
    """The metric every trial reports and the direction that makes it better."""

    metric: MetricName = Field(
        min_length=1,
        max_length=MAX_NAME_LENGTH,
        description="Name of the metric trials report (kubetune.trial.report(accuracy=...)), "
        "as Ray's TuneConfig(metric=...). Letters, digits and _ . : / -, starting with a "
        "letter or _.",
        json_schema_extra={"x-kubernetes-validations": [metric_name_rule("objective.metric")]},
    )
    mode: Literal["min", "max"] = Field(
        description="min if lower is better (a loss), max if higher is better (an accuracy)."
    )


class SchedulerSpec(PBTArguments):
    """The trial scheduler: early stopping (asha, median) or Population Based Training (pbt)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.gracePeriod) || !has(self.maxT) || "
                    "self.gracePeriod <= self.maxT",
                    "message": "gracePeriod must be <= maxT",
                    "fieldPath": ".gracePeriod",
                }
            ]
        }
    )

    type: Literal["asha", "fifo", "median", "pbt"] = Field(
        default="fifo",
        description="fifo runs every trial to the end; asha is Ray's ASHAScheduler "
        "(AsyncHyperBand); median is Ray's MedianStoppingRule; pbt is Ray's "
        "PopulationBasedTraining (numSamples is the population; needs spec.storage).",
    )
    time_attr: MetricName = Field(
        default="training_iteration",
        min_length=1,
        max_length=MAX_NAME_LENGTH,
        json_schema_extra={"x-kubernetes-validations": [metric_name_rule("scheduler.timeAttr")]},
        description="The reported quantity that measures training progress, as Ray's time_attr. "
        "training_iteration is the step passed to kubetune.trial.report(step=...).",
    )
    max_t: int = Field(
        default=100,
        ge=1,
        description="asha: a trial stops at this time_attr value, as Ray's max_t.",
    )
    grace_period: int = Field(
        default=1,
        ge=1,
        description="asha and median: no trial is stopped before this time_attr value, as Ray's "
        "grace_period. Must be <= maxT.",
    )
    reduction_factor: float = Field(
        default=4,
        ge=2,
        description="asha: rung milestones grow by this factor and about 1/reductionFactor of "
        "the trials pass each rung, as Ray's reduction_factor.",
    )
    brackets: int = Field(
        default=1, ge=1, description="asha: number of brackets, as Ray's brackets."
    )
    decision_order: Literal["arrival", "trialIndex"] = Field(
        default="arrival",
        description="asha: arrival decides each trial at a rung as soon as its value is seen, "
        "as Ray does. trialIndex records rung values in trial-index order (a trial's decision "
        "waits for earlier, still running trials to reach the same rung), so decisions depend "
        "only on the seed and the learning curves, not on timing: reruns and operator restarts "
        "reproduce them exactly.",
    )
    min_samples_required: int = Field(
        default=3,
        ge=1,
        description="median: trials that must have reached a step before the median is used, "
        "as Ray's min_samples_required.",
    )

    @model_validator(mode="after")
    def _grace_within_max_t(self) -> SchedulerSpec:
        if self.type == "pbt" and not self.hyperparam_mutations:
            raise ValueError("scheduler.type pbt needs hyperparamMutations: the hyperparameters "
                             "an exploit may change, e.g. {lr: {uniform: [1.0e-4, 0.02]}}")
        if self.grace_period > self.max_t:
            raise ValueError(
                f"gracePeriod must be <= maxT, got gracePeriod={self.grace_period} "
                f"and maxT={self.max_t}"
            )
        return self


class PrometheusSpec(SpecModel):
    """Where this experiment's trial metrics are read."""

    url: str = Field(
        pattern=r"^https?://",
        description="Base URL of the Prometheus server (http://prometheus.monitoring:9090), "
        "overriding the operator's default for this experiment.",
    )


class TuneExperimentSpec(SpecModel):
    """What to tune: the objective, the search space, the budget and the trial pod."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [*immutable_rules(), *search_rules(),
                                                        *pbt_rules(), *workers_rules()]}
    )

    objective: Objective = Field(description="The metric to optimise and its direction.")
    search_space: SearchSpaceSpec = Field(
        description="Hyperparameters by name, each one of Ray Tune's domains written as a "
        "one-key mapping: lr: {loguniform: [1.0e-5, 1.0e-1]}, layers: {randint: [1, 4]}, "
        "optimizer: {choice: [sgd, adam]}, batch_size: {grid: [32, 64]}. Each trial gets one "
        "config drawn from it.",
        json_schema_extra={
            "minProperties": 1,
            "maxProperties": MAX_PARAMETERS,
            "x-kubernetes-validations": [parameter_names_rule()],
        },
    )
    search_algorithm: SearchAlgorithm = Field(
        default_factory=SearchAlgorithm,
        description="How configs are drawn from the search space.",
        json_schema_extra=_DEFAULTED_OBJECT,
    )
    num_samples: int = Field(
        default=1,
        ge=1,
        le=MAX_TRIALS,
        description="Trials to run, as Ray's num_samples. With grid entries this many trials "
        f"run per grid point, so the total is numSamples times the number of grid points, "
        f"at most {MAX_TRIALS}.",
    )
    max_concurrent_trials: int = Field(
        default=1,
        ge=1,
        le=MAX_CONCURRENT_TRIALS,
        description="Most trials running at once, as Ray's max_concurrent_trials.",
    )
    max_failed_trials: int = Field(
        default=3,
        ge=0,
        description="The experiment fails once this many trials have failed (after their "
        "retries); 0 means failed trials never fail the experiment.",
    )
    trial_retries: int = Field(
        default=1,
        ge=0,
        description="New pods a failed trial gets, with the same config, before it counts "
        "as failed.",
    )
    stop: StopSpec | None = Field(
        default=None,
        description="When a trial is done before its program ends, as Ray's "
        "RunConfig(stop={...}): a trial that meets a condition is ended Succeeded, its pod "
        "deleted as for a completion, with reason StopConditionMet and an Event naming it.",
    )
    time_budget_seconds: int | None = Field(
        default=None,
        ge=1,
        description="Wall-clock budget of the whole experiment from its status.startTime, as "
        "Ray's TuneConfig(time_budget_s=...): once it has passed, running trials are ended "
        "(Succeeded with their latest metrics, Pruned if they have none yet), no trial is "
        "created, and the experiment ends with the best trial so far (reason "
        "TimeBudgetExhausted on its Complete condition, and an Event).",
    )
    scheduler: SchedulerSpec = Field(
        default_factory=SchedulerSpec,
        description="Early stopping of unpromising trials (asha, median) or none (fifo).",
        json_schema_extra=_DEFAULTED_OBJECT,
    )
    trial_template: TrialTemplate = Field(
        description="The pod template each trial runs (a PodTemplateSpec). Ask for GPUs in its "
        "containers' resources, as in any pod."
    )
    workers: WorkersSpec | None = Field(
        default=None,
        description="Pods per trial, as Ray's ScalingConfig: a fixed count or a search-space "
        "parameter. Unset or 1: one Pod per trial. More: an Indexed Job of that many pods, each "
        "with the trial template's GPUs and torchrun's PET_* env; a trial starts only when all "
        "of them fit on the nodes' free nvidia.com/gpu.",
    )
    prometheus: PrometheusSpec | None = Field(
        default=None,
        description="Where to read this experiment's metrics, if not the "
        "operator's default Prometheus.",
    )
    storage: StorageSpec | None = Field(
        default=None,
        description="Checkpoint storage shared by the trials: a PersistentVolumeClaim the "
        "operator mounts in every trial pod, so a retried trial resumes from its checkpoint "
        "on any node. Without it checkpoints stay in the pod's own filesystem.",
    )
    prune_grace_period_seconds: int = Field(
        default=30,
        ge=0,
        description="Grace period of a stopped (pruned) trial's pod deletion, so the trainer "
        "can save a checkpoint on SIGTERM.",
    )
    trial_start_timeout_seconds: int = Field(
        default=300,
        ge=1,
        description="How long a trial pod may wait on its image or its container's config "
        "(ErrImagePull, ImagePullBackOff, CreateContainerConfigError) before the attempt fails "
        "with that reason.",
    )
    trial_report_timeout_seconds: int = Field(
        default=600,
        ge=0,
        description="Seconds a running trial may go without reporting a metric before it is "
        "flagged (condition TrialsReporting=False, Event TrialNotReporting); 0 never flags.",
    )
    metrics_port: int = Field(
        default=8000,
        ge=1,
        le=65535,
        description="Port on which trial containers serve kubetune metrics "
        "(kubetune.trial.report serves it).",
    )

    def search_space_raw(self) -> dict[str, Any]:
        """The searchSpace as the plain mapping the user wrote (a fresh copy)."""
        return {
            name: domain.model_dump(by_alias=True, exclude_none=True, mode="json")
            for name, domain in self.search_space.items()
        }

    @model_validator(mode="after")
    def _grid_algorithm_needs_grid(self) -> TuneExperimentSpec:
        if self.search_algorithm.type == "grid" and not _has_grid(self.search_space):
            raise ValueError(
                "searchAlgorithm.type grid needs at least one {grid: [...]} entry in "
                "searchSpace; use type random to only sample"
            )
        problem = trials_problem(self.num_samples, grid_points(self.search_space))
        problem = problem or config_problem(worst_config_bytes(self.search_space))
        problem = problem or search_problem(self.search_algorithm, self.search_space,
                                            self.num_samples * grid_points(self.search_space))
        if problem:
            raise ValueError(problem)
        return self


    @model_validator(mode="after")
    def _storage_fits_template(self) -> TuneExperimentSpec:
        problem = self.storage and storage_template_problem(self.trial_template.pod_template())
        problem = problem or pbt_problem(self.scheduler, self.scheduler.type,
                                         self.storage is not None, self.search_algorithm.type,
                                         self.search_space)
        problem = problem or workers_problem(self.workers, self.search_space)
        if problem:
            raise ValueError(problem)
        return self


def _has_grid(space: Mapping[str, SearchDomain]) -> bool:
    return any(
        d.kind == "grid" or (d.space is not None and _has_grid(d.space)) for d in space.values()
    )


class TuneExperiment(StatusModel):
    """A whole TuneExperiment object as read from or written to the API."""

    api_version: Literal["kubetune.io/v1alpha1"] = Field(default=API_VERSION)
    kind: Literal["TuneExperiment"] = Field(default=EXPERIMENT_KIND)
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: TuneExperimentSpec
    status: TuneExperimentStatus | None = None


def validate_experiment_spec(raw: Mapping[str, Any]) -> TuneExperimentSpec:
    """Parse a TuneExperiment's spec, or raise SpecError naming the field and the fix."""
    try:
        return TuneExperimentSpec.model_validate(raw)
    except ValidationError as err:
        raise spec_error(err, "spec") from None


__all__ = [
    "EXPERIMENT_KIND",
    "EXPERIMENT_PLURAL",
    "BestTrial",
    "ExperimentPhase",
    "Objective",
    "PrometheusSpec",
    "RungSummary",
    "SchedulerSpec",
    "SearchAlgorithm",
    "SpecError",
    "StorageSpec",
    "TrialCounts",
    "TrialPodSpec",
    "TrialTemplate",
    "TuneExperiment",
    "TuneExperimentSpec",
    "TuneExperimentStatus",
    "validate_experiment_spec",
]
