"""Ray Tune's configuration objects, as the TuneExperiment fields they become.

`TuneConfig`, `RunConfig`, `FailureConfig` and the schedulers take Ray's
arguments; each scheduler's `to_spec()` is its `spec.scheduler` entry.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from kubetune.client.domains import Domain


@dataclass
class FIFOScheduler:
    """Every trial runs to the end (Ray's FIFOScheduler)."""

    def to_spec(self) -> dict[str, Any]:
        return {"type": "fifo"}


@dataclass
class ASHAScheduler:
    """Ray's ASHAScheduler (AsyncHyperBandScheduler): prunes trials at geometric rungs.

    time_attr is the step passed to kubetune.trial.report(step=...).
    decision_order="trialIndex" makes decisions independent of timing (see the CRD).
    """

    time_attr: str = "training_iteration"
    metric: str | None = None
    mode: Literal["min", "max"] | None = None
    max_t: int = 100
    grace_period: int = 1
    reduction_factor: float = 4
    brackets: int = 1
    decision_order: Literal["arrival", "trialIndex"] = "arrival"

    def to_spec(self) -> dict[str, Any]:
        return {"type": "asha", "timeAttr": self.time_attr, "maxT": self.max_t,
                "gracePeriod": self.grace_period, "reductionFactor": self.reduction_factor,
                "brackets": self.brackets, "decisionOrder": self.decision_order}


AsyncHyperBandScheduler = ASHAScheduler


@dataclass
class MedianStoppingRule:
    """Ray's MedianStoppingRule: stop a trial below the median of the others at its step."""

    time_attr: str = "training_iteration"
    metric: str | None = None
    mode: Literal["min", "max"] | None = None
    grace_period: int = 1
    min_samples_required: int = 3

    def to_spec(self) -> dict[str, Any]:
        return {"type": "median", "timeAttr": self.time_attr, "gracePeriod": self.grace_period,
                "minSamplesRequired": self.min_samples_required}


@dataclass
class PopulationBasedTraining:
    """Ray's PopulationBasedTraining, asynchronous, with Ray's arguments and defaults.

    hyperparam_mutations maps each mutated hyperparameter to a tune domain
    (tune.uniform(1e-4, 0.02): resampled or multiplied by a perturbation factor) or
    a list of values (resampled or moved one index); each must also be in
    param_space. Differences from Ray: time_attr defaults to training_iteration
    (the step passed to kubetune.trial.report); every draw comes from `seed`, so a
    rerun repeats the same exploits; the decisions run in the operator, so
    custom_explore_fn (a function) and synch=True are refused; log_config and
    require_attrs are accepted and have no effect (the exploits are recorded on
    each TuneTrial). The experiment needs checkpoint storage shared by the trials:
    RunConfig(storage_path="pvc://<claim>").
    """

    time_attr: str = "training_iteration"
    metric: str | None = None
    mode: Literal["min", "max"] | None = None
    perturbation_interval: float = 60.0
    burn_in_period: float = 0.0
    hyperparam_mutations: Mapping[str, Any] | None = None
    quantile_fraction: float = 0.25
    resample_probability: float = 0.25
    perturbation_factors: tuple[float, ...] = (1.2, 0.8)
    custom_explore_fn: Callable[..., Any] | None = None
    log_config: bool = True
    require_attrs: bool = True
    synch: bool = False
    seed: int = 0

    def to_spec(self) -> dict[str, Any]:
        if self.custom_explore_fn is not None:
            raise ValueError("PopulationBasedTraining(custom_explore_fn=...): the exploits are "
                             "decided in the operator, which cannot run a function of yours; "
                             "use hyperparam_mutations")
        if self.synch:
            raise ValueError("PopulationBasedTraining(synch=True): kubetune runs Ray's "
                             "asynchronous PBT (synch=False) only")
        mutations: dict[str, Any] = {}
        for name, mutation in (self.hyperparam_mutations or {}).items():
            if type(mutation).__module__.startswith("ray."):
                from kubetune.client import ray_compat

                mutation = ray_compat.domain(f"hyperparam_mutations[{name!r}]", mutation)
            if isinstance(mutation, Domain):
                mutations[name] = mutation.to_spec()
            elif isinstance(mutation, (list, tuple)):
                mutations[name] = list(mutation)
            else:
                raise ValueError(f"hyperparam_mutations[{name!r}] must be a tune domain or a "
                                 f"list of values (got {type(mutation).__name__})")
        return {"type": "pbt", "timeAttr": self.time_attr,
                "perturbationInterval": self.perturbation_interval,
                "burnInPeriod": self.burn_in_period, "hyperparamMutations": mutations,
                "quantileFraction": self.quantile_fraction,
                "resampleProbability": self.resample_probability,
                "perturbationFactors": list(self.perturbation_factors), "seed": self.seed}


Scheduler = FIFOScheduler | ASHAScheduler | MedianStoppingRule | PopulationBasedTraining


@dataclass
class TuneConfig:
    """Ray's TuneConfig. search_alg is "random" (Ray's BasicVariantGenerator), "grid", one of
    Optuna's samplers ("tpe", "gp", "cmaes", "qmc"), or kubetune.OptunaSearch(...) with its options.

    max_concurrent_trials unset is Ray's default, no cap beyond the cluster: every trial
    may run at once (spec.maxConcurrentTrials = the number of trials, at most the CRD's
    limit), where a TuneExperiment written by hand defaults to 1. time_budget_s is the
    whole experiment's wall-clock budget (spec.timeBudgetSeconds), as in Ray.
    """

    metric: str | None = None
    mode: Literal["min", "max"] | None = None
    search_alg: Any = None
    scheduler: Scheduler | None = None
    num_samples: int = 1
    max_concurrent_trials: int | None = None
    seed: int | None = None
    time_budget_s: float | datetime.timedelta | None = None


@dataclass
class FailureConfig:
    """Ray's FailureConfig: max_failures retries per trial (trialRetries); fail_fast stops
    the experiment at the first failed trial; max_failed_trials is maxFailedTrials.

    Ray's defaults, which the Tuner uses when RunConfig has no failure_config: no retry,
    and failed trials never fail the run (trialRetries 0, maxFailedTrials 0). A
    TuneExperiment written by hand defaults to trialRetries 1 and maxFailedTrials 3.
    """

    max_failures: int = 0
    fail_fast: bool = False
    max_failed_trials: int | None = None


@dataclass
class RunConfig:
    """Ray's RunConfig: the experiment's name, its failure handling and stop conditions.

    stop is Ray's dict form, {"training_iteration": 100, "accuracy": 0.98}: a trial ends
    (Succeeded) at the first report where a value is >= its threshold (spec.stop). A
    function or a Stopper object is refused (the operator cannot run it), except Ray's
    MaximumIterationStopper and TimeoutStopper, which mean an iteration bound and a time
    budget.
    """

    name: str | None = None
    failure_config: FailureConfig | None = None
    stop: Mapping[str, float] | None = None
    storage_path: str | None = None
    """Checkpoint storage shared by the trials: "pvc://<claim>" names a PersistentVolumeClaim
    in the experiment's namespace (spec.storage). Needed by PopulationBasedTraining."""

__all__ = [
    "ASHAScheduler",
    "AsyncHyperBandScheduler",
    "FIFOScheduler",
    "FailureConfig",
    "MedianStoppingRule",
    "PopulationBasedTraining",
    "RunConfig",
    "Scheduler",
    "TuneConfig",
]
