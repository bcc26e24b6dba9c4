"""The TuneTrial resource: one trial of an experiment, created and updated by the operator.

Per-trial state lives here rather than in the experiment's status, so an
experiment with ten thousand trials stays far below the object size limit, and
the rung records persisted here let a restarted operator rebuild every
scheduling decision exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import Field, JsonValue, TypeAdapter, ValidationError

from kubetune.api.common import (
    API_VERSION,
    MetricValues,
    NonFiniteValues,
    ObservedFloat,
    SpecModel,
    StatusModel,
    Timestamp,
    describe_validation_error,
)
from kubetune.api.pbt import PBTMemberStatus
from kubetune.api.workers import WorkerStatus

TRIAL_KIND: Final = "TuneTrial"
TRIAL_PLURAL: Final = "tunetrials"


class TrialState(StrEnum):
    """Where a trial is in its life; Succeeded, Pruned and Failed are final."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    PRUNED = "Pruned"
    FAILED = "Failed"

    @property
    def is_final(self) -> bool:
        return self in _FINAL_STATES


_FINAL_STATES = frozenset({TrialState.SUCCEEDED, TrialState.PRUNED, TrialState.FAILED})


class TuneTrialSpec(SpecModel):
    """Which experiment the trial belongs to and the config it runs with."""

    experiment: str = Field(min_length=1, description="Name of the owning TuneExperiment.")
    index: int = Field(
        ge=0, description="The trial's index in its experiment; its config is drawn from it."
    )
    params: dict[str, JsonValue] = Field(
        default_factory=dict,
        description="The trial's hyperparameters (its config), as the trial pod receives them "
        "in KUBETUNE_CONFIG.",
    )
    sampler_state: dict[str, JsonValue] | None = Field(
        default=None,
        description="searchAlgorithm.type cmaes: what Optuna's CmaEsSampler wrote on this trial "
        "when its config was asked (its generation and, on the trial that started a "
        "generation, the CMA optimizer, pickled and hex-split as Optuna stores it), written "
        "at creation with the config, so the search resumes exactly after an operator restart. "
        "The optimizer is restored only if it unpickles to a CMA optimizer and nothing else.",
    )


class Decision(StrEnum):
    """What a trial scheduler decided at a rung."""

    CONTINUE = "continue"
    STOP = "stop"


# A frozen dataclass, not a pydantic model: ASHA builds one per rung decision on its hot
# path (a model costs a third more per record); pydantic still gives it its schema and parser.
@dataclass(frozen=True, slots=True, kw_only=True)
class RungRecord:
    """The trial's value at one ASHA rung and what the scheduler decided there."""

    milestone: Annotated[int, Field(strict=True, description="The rung's time_attr value.")]
    value: Annotated[
        ObservedFloat,
        Field(
            description="The objective at the first report at or past the milestone; absent "
            "when that value was not finite (NaN or infinite)."
        ),
    ] = None
    step: Annotated[
        int,
        Field(
            strict=True,
            description="The step of that report (past the milestone when reports skip steps).",
        ),
    ]
    cutoff: Annotated[
        ObservedFloat,
        Field(
            description="The rung's cutoff when the decision was made; absent when the rung "
            "had no cutoff yet (the trial continued)."
        ),
    ] = None
    decision: Annotated[
        Decision, Field(description="continue: the trial goes on; stop: it was pruned here.")
    ]

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON, None where a value is absent (as the status carries it)."""
        return {
            "milestone": self.milestone,
            "value": self.value,
            "step": self.step,
            "cutoff": self.cutoff,
            "decision": self.decision.value,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RungRecord:
        """Read one record as status.rungs holds it; ValueError names what is malformed."""
        return parse_rung_records([data])[0]


_RUNG_RECORDS: TypeAdapter[list[RungRecord]] = TypeAdapter(list[RungRecord])


def parse_rung_records(raw: Sequence[Mapping[str, Any]]) -> list[RungRecord]:
    """Read a TuneTrial's status.rungs (absent value and cutoff read as None).

    Raises ValueError naming each malformed field: ``status.rungs[0].decision: is required``.
    """
    try:
        return _RUNG_RECORDS.validate_python(raw)
    except ValidationError as err:
        problems = describe_validation_error(err, "status.rungs")
        raise ValueError("; ".join(f"{field}: {message}" for field, message in problems)) from None


class PrunedAt(StatusModel):
    """Where and why the scheduler stopped the trial."""

    milestone: int = Field(description="The rung at which the trial was stopped.")
    value: ObservedFloat = Field(
        default=None, description="The trial's objective there; absent when it was not finite."
    )
    cutoff: ObservedFloat = Field(default=None, description="The rung's cutoff at that time.")
    step: int | None = Field(default=None, description="The step of the report that was judged.")


class TuneTrialStatus(StatusModel):
    """What the operator observed of the trial."""

    state: TrialState | None = Field(
        default=None, description="Pending, Running, Succeeded, Pruned or Failed."
    )
    step: int | None = Field(default=None, description="The latest step the trial reported.")
    metrics: MetricValues | None = Field(
        default=None, description="The latest value of each reported metric."
    )
    non_finite_metrics: NonFiniteValues | None = Field(
        default=None,
        description="Metrics whose latest value is not finite, as NaN, Infinity or -Infinity "
        "(JSON has no such numbers); metrics holds the finite ones.",
    )
    objective: ObservedFloat = Field(
        default=None, description="The latest value of the experiment's objective metric."
    )
    rungs: list[RungRecord] | None = Field(
        default=None, description="The trial's value at each ASHA rung it reached."
    )
    pruned_at: PrunedAt | None = Field(
        default=None, description="Set when the scheduler stopped the trial early."
    )
    pod_name: str | None = Field(default=None, description="The trial's current or last pod.")
    workers: list[WorkerStatus] | None = Field(
        default=None, description="A multi-worker trial's pods of its current or last "
        "attempt: each one's rank, pod, node and phase (spec.workers of the experiment).")
    attempts: int | None = Field(
        default=None, ge=0, description="Pods started for this trial, retries included."
    )
    pbt: PBTMemberStatus | None = Field(
        default=None,
        description="Population Based Training: the trial's config now, its score and "
        "checkpoint at its last check, and every exploit (which trial it cloned, at which "
        "step, the config before and after), written before its pod is replaced.",
    )
    disruptions: int | None = Field(
        default=None,
        ge=0,
        description="Attempts ended by a disruption (eviction, preemption, a lost node, a pod "
        "deleted by someone else); they are not charged to trialRetries or maxFailedTrials.",
    )
    reason: str | None = Field(
        default=None, description="A CamelCase word for the state (for example OOMKilled)."
    )
    message: str | None = Field(default=None, description="Details of the state, in words.")
    start_time: Timestamp | None = Field(default=None, description="When the first pod started.")
    completion_time: Timestamp | None = Field(
        default=None, description="When the trial reached its final state."
    )


class TuneTrial(StatusModel):
    """A whole TuneTrial object as read from or written to the API."""

    api_version: Literal["kubetune.io/v1alpha1"] = Field(default=API_VERSION)
    kind: Literal["TuneTrial"] = Field(default=TRIAL_KIND)
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: TuneTrialSpec
    status: TuneTrialStatus | None = None


__all__ = [
    "TRIAL_KIND",
    "TRIAL_PLURAL",
    "Decision",
    "PrunedAt",
    "RungRecord",
    "TrialState",
    "TuneTrial",
    "TuneTrialSpec",
    "TuneTrialStatus",
    "parse_rung_records",
]
