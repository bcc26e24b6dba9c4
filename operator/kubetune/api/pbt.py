"""Population Based Training's arguments and what it persists on each TuneTrial.

The arguments are Ray's PopulationBasedTraining's, under their Ray names in
camelCase, with Ray's defaults, except `timeAttr`: kubetune measures a trial's
progress in the steps it reports (training_iteration), so that is the default
where Ray's is time_total_s. `hyperparamMutations` maps each mutated
hyperparameter to a search-space domain ({uniform: [1.0e-4, 0.02]}: resampled, or
multiplied by a perturbation factor) or to a list of values (resampled, or moved
one index). PBT decides from what it persisted at each trial's checks
(`PBTMemberStatus`), so an operator restart repeats every decision.

SchedulerSpec (experiment.py) takes these arguments for `scheduler: {type: pbt}`;
a TuneTrial's status.pbt is a `PBTMemberStatus`. PBT needs spec.storage and no
model-based searcher (`pbt_problem`, `pbt_rules`: refused at apply time).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import Field, JsonValue, WithJsonSchema, field_validator

from kubetune.api.common import SpecModel, StatusModel
from kubetune.api.searchspace import SearchDomain

Mutation = Annotated[
    list[Any] | SearchDomain,
    WithJsonSchema({"x-kubernetes-preserve-unknown-fields": True,
                    "description": "A list of values, or one search-space domain."}),
]
"""One entry of hyperparamMutations: a value list or a domain (any JSON to the apiserver)."""

_NOT_MUTABLE = {
    "grid": "a grid entry cannot be resampled; list the values instead ([32, 64, 128])",
    "value": "a constant cannot be mutated; leave it in searchSpace only",
    "space": "nested mutations are not supported; mutate top-level hyperparameters",
    "choice": "use a plain list of the values ([sgd, adam]): Ray perturbs a choice domain "
    "as a number (value * factor), a list moves one index",
}


class PBTArguments(SpecModel):
    """Ray's PopulationBasedTraining arguments (scheduler.type pbt), with Ray's defaults."""

    perturbation_interval: float = Field(
        default=60.0,
        gt=0,
        description="pbt: a trial is checked each time its timeAttr has advanced this much since "
        "its last check, as Ray's perturbation_interval. Save a checkpoint at those steps: "
        "the bottom trials clone the top trials' checkpoints there.",
    )
    burn_in_period: float = Field(
        default=0.0,
        ge=0,
        description="pbt: no trial is checked before its timeAttr reaches this, as Ray's "
        "burn_in_period.",
    )
    hyperparam_mutations: dict[str, Mutation] | None = Field(
        default=None,
        min_length=1,
        description="pbt (required): the hyperparameters an exploit may change, as Ray's hyperparam_mutations: "
        "a domain (lr: {uniform: [1.0e-4, 0.02]}) is resampled with resampleProbability, else "
        "multiplied by a perturbationFactor (an int is rounded); a list of values (opt: [sgd, "
        "adam]) is resampled, else the value moves one index left or right, clamped at the ends.",
    )
    quantile_fraction: float = Field(
        default=0.25,
        ge=0,
        le=0.5,
        description="pbt: the top and bottom quantile sizes, as Ray's quantile_fraction: "
        "ceil(n * quantileFraction) trials each, at most half of the n trials with a score.",
    )
    resample_probability: float = Field(
        default=0.25,
        ge=0,
        le=1,
        description="pbt: probability that a mutated value is drawn anew instead of perturbed, as "
        "Ray's resample_probability.",
    )
    perturbation_factors: list[float] = Field(
        default=[1.2, 0.8],
        min_length=1,
        description="pbt: factors a domain's value is multiplied by, one drawn per exploit, as Ray's "
        "perturbation_factors.",
    )
    seed: int = Field(
        default=0,
        ge=0,
        description="pbt: seed of every draw (donor, resample, factor, shift): a decision is a "
        "function of (seed, trial, check step) and the persisted checks. Ray draws unseeded.",
    )

    @field_validator("hyperparam_mutations")
    @classmethod
    def _mutable(cls, mutations: dict[str, Any] | None) -> dict[str, Any] | None:
        for name, mutation in (mutations or {}).items():
            if isinstance(mutation, list):
                if not mutation:
                    raise ValueError(f"{name}: the list of values is empty")
            elif mutation.kind in _NOT_MUTABLE:
                raise ValueError(f"{name}: {_NOT_MUTABLE[mutation.kind]}")
        return mutations


class PopulationBasedTrainingSpec(PBTArguments):
    """scheduler.type pbt on its own: the arguments with the mutations required."""

    type: Literal["pbt"] = Field(description="pbt: Population Based Training.")
    time_attr: str = Field(default="training_iteration", min_length=1,
                           description="The quantity that measures progress, as Ray's time_attr.")
    hyperparam_mutations: dict[str, Mutation] = Field(
        min_length=1, description="The hyperparameters an exploit may change.")

    @field_validator("hyperparam_mutations")
    @classmethod
    def _mutable_here(cls, mutations: dict[str, Any]) -> dict[str, Any]:
        return PBTArguments._mutable(mutations) or {}


PBT_NEEDS_STORAGE = (
    "scheduler.type pbt needs spec.storage: at each exploit a trial resumes from another "
    "trial's checkpoint, so every trial pod must mount the same claim "
    "(storage: {persistentVolumeClaim: {claimName: ...}}, ReadWriteMany across nodes)")
PBT_NO_SEARCHER = (
    "scheduler.type pbt explores by itself: use searchAlgorithm.type random or grid for the "
    "initial configs (Ray also refuses a search algorithm with PBT)")


def pbt_problem(scheduler: PBTArguments, scheduler_type: str, has_storage: bool,
                search_algorithm: str, parameters: Iterable[str]) -> str | None:
    """Why this combination cannot run PBT, or None."""
    if scheduler_type != "pbt":
        return None
    if not has_storage:
        return PBT_NEEDS_STORAGE
    if search_algorithm not in ("random", "grid"):
        return PBT_NO_SEARCHER
    missing = sorted(set(scheduler.hyperparam_mutations or {}) - set(parameters))
    if missing:
        return (f"scheduler.hyperparamMutations names {', '.join(missing)}, which searchSpace "
                "does not: give each mutated hyperparameter its initial value or domain there")
    return None


def pbt_rules() -> list[JsonValue]:
    """The same checks as CEL rules on the spec, so `kubectl apply` refuses them."""
    pbt = "has(self.scheduler) && self.scheduler.type == 'pbt'"
    return [
        {"rule": f"!({pbt}) || has(self.storage)", "message": PBT_NEEDS_STORAGE,
         "fieldPath": ".storage", "reason": "FieldValueRequired"},
        {"rule": f"!({pbt}) || !has(self.searchAlgorithm) || "
                 "self.searchAlgorithm.type in ['random', 'grid']",
         "message": PBT_NO_SEARCHER, "fieldPath": ".searchAlgorithm"},
    ]


class ExploitRecord(StatusModel):
    """One exploit of a bottom trial: persisted before its pod is replaced."""

    time: float = Field(description="The trial's timeAttr at the check that decided it.")
    donor: str = Field(description="The top trial whose checkpoint and config were cloned.")
    donor_step: float = Field(description="The step of the donor's checkpoint it resumes from.")
    old_config: dict[str, Any] = Field(description="The trial's config before the exploit.")
    new_config: dict[str, Any] = Field(description="The donor's config, explored.")
    operations: dict[str, Any] = Field(
        default_factory=dict,
        description='What explore did to each mutated key: "resample", "* 1.2", "shift left".',
    )
    attempt: int = Field(default=0, description="The attempt (pod) that runs the new config.")
    donor_checkpoint: str = Field(
        default="",
        description="The donor's checkpoint the attempt starts from, relative to the "
        "experiment's checkpoint directory: <donor>[/exploit-<n>]/step-<step>.",
    )


class PBTMemberStatus(StatusModel):
    """A trial's PBT state after its last check: what the next decisions are made from."""

    config: dict[str, Any] = Field(description="The config the trial runs now.")
    last_score: float | None = Field(
        default=None, description="The objective at the last check, in the metric's units."
    )
    last_checkpoint_step: float | None = Field(
        default=None,
        description="The checkpoint kept at the last check for others to clone (the trial "
        "was in the top quantile); none otherwise.",
    )
    last_perturbation_time: float = Field(default=0.0, description="timeAttr at the last check.")
    last_train_time: float = Field(default=0.0, description="timeAttr of the last check's result.")
    exploits: list[ExploitRecord] = Field(
        default_factory=list, description="Every exploit of this trial, oldest first."
    )


__all__ = ["ExploitRecord", "PBTArguments", "PBTMemberStatus", "PopulationBasedTrainingSpec"]
