"""Population Based Training: Ray's asynchronous PopulationBasedTraining, restart-safe.

A trial is checked each time its time_attr has advanced `perturbation_interval`
past its last check (and is past `burn_in_period`). At a check its score is
recorded and the trials with a finite score are split into quantiles (ties in
trial order). A trial in the upper quantile keeps its checkpoint at that step
for others to clone; a trial in the lower quantile clones a donor drawn from
the upper quantile: it takes the donor's checkpoint and the donor's config,
explored (`_pbt_explore.explore`). A donor with no checkpoint (it was not in
the upper quantile at its own last check) means the exploit is skipped, as in
Ray. These are the rules of Ray's pbt.py (`on_trial_result`,
`_checkpoint_or_exploit`, `_exploit`, `_quantiles`, `_explore`), step for step.

What differs is where the randomness comes from: Ray draws from the unseeded
global `random`; here each check draws from `decision_stream(seed, trial,
time)`. With `MemberState` persisted after each check (`state()`, `restore()`),
every decision is a function of the records and the seed.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from kubetune.schedulers._pbt_explore import (
    Mutation,
    Resampler,
    decision_stream,
    explore,
    fill_config,
    fill_stream,
    quantiles,
)
from kubetune.schedulers.base import MODES
from kubetune.schedulers.fifo import FIFOScheduler

Quantile = Literal["upper", "middle", "lower", "none"]


@dataclass(frozen=True)
class Exploit:
    """A bottom trial's decision to clone a top trial: persisted before its pod is replaced."""

    trial: str
    time: float
    """The trial's time_attr value at the check that decided it (the perturbation interval)."""
    donor: str
    donor_step: float
    """The step of the donor's checkpoint the trial resumes from."""
    old_config: dict[str, Any]
    new_config: dict[str, Any]
    operations: dict[str, Any]
    """Per mutated key what explore did: "resample", "* 1.2", "shift left (noop)"."""


@dataclass(frozen=True)
class Check:
    """What happened at one perturbation check of one trial."""

    trial: str
    time: float
    score: float | None
    """The metric's value at the check, in its own units; None when not finite."""
    quantile: Quantile
    exploit: Exploit | None = None
    skipped_donor: str | None = None
    """The donor drawn when the exploit was skipped because it had no checkpoint."""


@dataclass(frozen=True)
class MemberState:
    """All a PBT population member's state; persisted after each check, read back on restart."""

    config: dict[str, Any]
    last_score: float | None = None
    """Score at the last check, in maximise space (metric_op * value); None before any."""
    last_checkpoint: float | None = None
    """Step of the checkpoint kept at the last check (upper quantile only), else None."""
    last_perturbation_time: float = 0.0
    last_train_time: float = 0.0
    finished: bool = False
    history: tuple[Exploit, ...] = field(default_factory=tuple)


def check_steps(perturbation_interval: float, burn_in_period: float, up_to: int) -> list[int]:
    """The steps at which a trial that reports every step is checked, up to `up_to`.

    The first check is the first step past both the burn-in and one interval, each
    next one the first step one interval past the last; an exploit copies the
    donor's last check, which is on the same list. A trial passes these to the SDK
    (KUBETUNE_MILESTONES) to export its exact value there, and keeps its checkpoints
    there (KUBETUNE_KEEP_CHECKPOINT_STEPS) for others to clone.
    """
    steps: list[int] = []
    last = 0.0
    while True:
        step = math.ceil(max(burn_in_period, last + perturbation_interval))
        if step > up_to:
            return steps
        steps.append(step)
        last = step


class PopulationBasedTraining:
    """Ray's PopulationBasedTraining (synch=False) with seeded decisions; pure, no I/O."""

    def __init__(
        self,
        *,
        metric: str,
        mode: str,
        time_attr: str = "time_total_s",
        perturbation_interval: float = 60.0,
        burn_in_period: float = 0.0,
        hyperparam_mutations: Mapping[str, Mutation] | None = None,
        quantile_fraction: float = 0.25,
        resample_probability: float = 0.25,
        perturbation_factors: Sequence[float] = (1.2, 0.8),
        seed: int = 0,
    ) -> None:
        if not isinstance(metric, str) or not metric:
            raise ValueError(f"metric must be a non-empty string (got {metric!r})")
        if mode not in MODES:
            raise ValueError(f"mode must be 'min' or 'max' (got {mode!r})")
        if not hyperparam_mutations:
            raise ValueError("hyperparam_mutations must name at least one hyperparameter to mutate")
        _check_mutations(hyperparam_mutations, "hyperparam_mutations")
        if not 0 <= quantile_fraction <= 0.5:
            raise ValueError(
                f"quantile_fraction must lie between 0 and 0.5 (got {quantile_fraction!r})"
            )
        if not perturbation_interval > 0:
            raise ValueError(
                f"perturbation_interval must be > 0 (got {perturbation_interval!r})"
            )
        if not 0 <= resample_probability <= 1:
            raise ValueError(
                f"resample_probability must lie between 0 and 1 (got {resample_probability!r})"
            )
        if not perturbation_factors:
            raise ValueError("perturbation_factors must hold at least one factor")
        self.metric = metric
        self.mode = mode
        self.time_attr = time_attr
        self.perturbation_interval = perturbation_interval
        self.burn_in_period = burn_in_period
        self.hyperparam_mutations = dict(hyperparam_mutations)
        self.quantile_fraction = quantile_fraction
        self.resample_probability = resample_probability
        self.perturbation_factors = tuple(perturbation_factors)
        self.seed = seed
        self._metric_op = 1.0 if mode == "max" else -1.0
        self._members: dict[str, MemberState] = {}

    # --- population -------------------------------------------------------------------

    def initial_config(self, trial: str, config: Mapping[str, Any]) -> dict[str, Any]:
        """The trial's config with mutated keys it lacks drawn from their mutation (Ray's fill)."""
        return fill_config(config, self.hyperparam_mutations, fill_stream(self.seed, trial))

    def add_trial(self, trial: str, config: Mapping[str, Any]) -> None:
        """A member joins; members take part in quantile ties in the order they were added."""
        if trial not in self._members:
            self._members[trial] = MemberState(config=self.initial_config(trial, config))

    def restore(self, trial: str, state: MemberState) -> None:
        """Put back a member's persisted state (restore in trial order after a restart)."""
        self._members[trial] = state

    def state(self, trial: str) -> MemberState:
        return self._members[trial]

    def config(self, trial: str) -> dict[str, Any]:
        return copy.deepcopy(self._members[trial].config)

    def on_complete(self, trial: str) -> None:
        """The trial ended: it no longer takes part in the quantiles."""
        self._members[trial] = replace(self._members[trial], finished=True)

    def next_check(self, trial: str) -> float:
        """The first time_attr value at which this trial is checked next."""
        state = self._members[trial]
        return max(self.burn_in_period, state.last_perturbation_time + self.perturbation_interval)

    # --- decisions --------------------------------------------------------------------

    def on_result(self, trial: str, time: float, value: float) -> Check | None:
        """One result of `trial`; a Check where it reached a perturbation interval, else None."""
        state = self._members[trial]
        if time < self.burn_in_period:
            return None
        if time - state.last_perturbation_time < self.perturbation_interval:
            return None
        score = self._metric_op * value
        finite = math.isfinite(score)
        state = replace(
            state,
            last_score=score if finite else None,
            last_train_time=time,
            last_perturbation_time=time,
        )
        self._members[trial] = state
        lower, upper = quantiles(self._scores(), self.quantile_fraction)
        quantile: Quantile = (
            "upper" if trial in upper else "lower" if trial in lower else
            "middle" if finite else "none"
        )
        state = replace(state, last_checkpoint=time if quantile == "upper" else None)
        self._members[trial] = state
        check = Check(trial, time, value if finite else None, quantile)
        if quantile != "lower":
            return check
        rng = decision_stream(self.seed, trial, time)
        donor = rng.choice(upper)
        donor_state = self._members[donor]
        if donor_state.last_checkpoint is None:
            return replace(check, skipped_donor=donor)
        new_config, operations = explore(
            donor_state.config,
            self.hyperparam_mutations,
            self.resample_probability,
            self.perturbation_factors,
            rng,
        )
        exploit = Exploit(
            trial=trial,
            time=time,
            donor=donor,
            donor_step=donor_state.last_checkpoint,
            old_config=copy.deepcopy(state.config),
            new_config=new_config,
            operations=operations,
        )
        self._members[trial] = replace(
            state,
            config=copy.deepcopy(new_config),
            last_perturbation_time=donor_state.last_perturbation_time,
            last_train_time=donor_state.last_train_time,
            history=(*state.history, exploit),
        )
        return replace(check, exploit=exploit)

    def _scores(self) -> list[tuple[str, float]]:
        """Live members with a finite score at their last check, in the order they were added."""
        return [
            (trial, state.last_score)
            for trial, state in self._members.items()
            if state.last_score is not None and not state.finished
        ]


def _check_mutations(mutations: Mapping[str, Any], where: str) -> None:
    for key, mutation in mutations.items():
        if isinstance(mutation, Mapping):
            if not mutation:
                raise ValueError(f"{where}.{key} is an empty mapping")
            _check_mutations(mutation, f"{where}.{key}")
        elif isinstance(mutation, (list, tuple)):
            if not mutation:
                raise ValueError(f"{where}.{key} is an empty list of values")
        elif not isinstance(mutation, Resampler):
            raise ValueError(
                f"{where}.{key} must be a list of values, a search-space domain or a "
                f"nested mapping (got {type(mutation).__name__})"
            )


class PBTCheckSteps(FIFOScheduler):
    """The stopping side of PBT for the trial machine: it stops no trial, and its
    milestones are the check steps, where each trial exports its exact value."""

    CHECKS = 1000
    """How many check steps a trial is given (KUBETUNE_MILESTONES)."""

    def __init__(self, *, metric: str, mode: str, time_attr: str = "training_iteration",
                 perturbation_interval: float = 60.0, burn_in_period: float = 0.0) -> None:
        super().__init__(metric=metric, mode=mode, time_attr=time_attr)
        horizon = math.ceil(max(burn_in_period, 0.0) + perturbation_interval * self.CHECKS)
        self._steps = check_steps(perturbation_interval, burn_in_period, horizon)

    def milestones(self, trial: str) -> list[int]:
        return list(self._steps)
