"""What the operator reports on a TuneExperiment: phase, counts, best trial, rungs, conditions.

Written by the operator only; read leniently (unknown fields ignored), so an older
operator still reads a status a newer one wrote.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, JsonValue

from kubetune.api.common import (
    Condition,
    FiniteFloat,
    MetricValues,
    ObservedFloat,
    StatusModel,
    Timestamp,
)


class ExperimentPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class TrialCounts(StatusModel):
    """How many of the experiment's trials are in each state."""

    total: int = Field(default=0, ge=0, description="Trials the experiment will run in all.")
    created: int = Field(default=0, ge=0, description="Trials created so far.")
    pending: int = Field(default=0, ge=0, description="Trials waiting for their pod to start.")
    running: int = Field(default=0, ge=0, description="Trials whose pod is running.")
    succeeded: int = Field(default=0, ge=0, description="Trials that ran to the end.")
    pruned: int = Field(default=0, ge=0, description="Trials the scheduler stopped early.")
    failed: int = Field(default=0, ge=0, description="Trials that failed after their retries.")
    disruptions: int = Field(
        default=0,
        ge=0,
        description="Trial attempts ended by a disruption (eviction, preemption, a lost node, a "
        "pod deleted by someone else) and started again, uncharged.",
    )


class BestTrial(StatusModel):
    """The best trial so far by the objective."""

    name: str = Field(description="The TuneTrial's name.")
    config: dict[str, JsonValue] = Field(
        default_factory=dict, description="The trial's hyperparameters."
    )
    metric: FiniteFloat = Field(description="Its best objective value.")
    step: int | None = Field(default=None, description="The step at which that value was reported.")
    metrics: MetricValues = Field(
        default_factory=dict, description="All metrics it reported at that step."
    )


class RungSummary(StatusModel):
    """One ASHA rung, across the experiment's trials."""

    milestone: int = Field(description="The time_attr value at which trials are compared.")
    recorded: int = Field(default=0, ge=0, description="Trials that have reached this rung.")
    cutoff: ObservedFloat = Field(
        default=None,
        description="Objective value a trial must beat to continue past this rung; absent "
        "until enough trials are recorded.",
    )
    bracket: int = Field(
        default=0,
        ge=0,
        description="The ASHA bracket the rung belongs to; always 0 with one bracket.",
    )


class TuneExperimentStatus(StatusModel):
    """What the operator observed; written by the operator only."""

    phase: ExperimentPhase | None = Field(
        default=None, description="Pending, Running, Succeeded or Failed."
    )
    message: str | None = Field(default=None, description="Why the experiment is in this phase.")
    observed_generation: int | None = Field(
        default=None, description="The spec generation this status describes."
    )
    start_time: Timestamp | None = Field(default=None, description="When the first trial started.")
    completion_time: Timestamp | None = Field(
        default=None, description="When the experiment finished."
    )
    trials: TrialCounts | None = Field(default=None, description="Trials per state.")
    best_trial: BestTrial | None = Field(default=None, description="The best trial so far.")
    rungs: list[RungSummary] | None = Field(
        default=None, description="ASHA rungs: milestone, trials recorded, current cutoff."
    )
    trial_configs: dict[str, dict[str, JsonValue]] | None = Field(
        default=None,
        description="tpe, gp and qmc: each trial's config by trial index, so a TuneTrial deleted "
        "by hand comes back with the config it was given (a model-based config depends on what "
        "the search had seen when it was made, and cannot be drawn again); recorded while they "
        "fit in 256 KiB, later ones are recovered from the trial's pods.",
    )
    conditions: list[Condition] | None = Field(
        default=None,
        description="Standard conditions, one per type.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )


__all__ = [
    "BestTrial",
    "ExperimentPhase",
    "RungSummary",
    "TrialCounts",
    "TuneExperimentStatus",
]
