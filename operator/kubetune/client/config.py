"""Ray Tune's configuration objects, as the TuneExperiment fields they become.

`TuneConfig`, `RunConfig`, `FailureConfig` and the schedulers take Ray's
arguments; each scheduler's `to_spec()` is its `spec.scheduler` entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal


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


Scheduler = FIFOScheduler | ASHAScheduler | MedianStoppingRule


@dataclass
class TuneConfig:
    """Ray's TuneConfig. search_alg is "random" (Ray's BasicVariantGenerator), "grid", one of
    Optuna's samplers ("tpe", "gp", "qmc"), or kubetune.OptunaSearch(...) with its options."""

    metric: str | None = None
    mode: Literal["min", "max"] | None = None
    search_alg: Any = None
    scheduler: Scheduler | None = None
    num_samples: int = 1
    max_concurrent_trials: int | None = None
    seed: int | None = None


@dataclass
class FailureConfig:
    """Ray's FailureConfig: max_failures retries per trial (trialRetries); fail_fast stops
    the experiment at the first failed trial; max_failed_trials is maxFailedTrials."""

    max_failures: int = 0
    fail_fast: bool = False
    max_failed_trials: int | None = None


@dataclass
class RunConfig:
    """Ray's RunConfig: the experiment's name and its failure handling."""

    name: str | None = None
    failure_config: FailureConfig | None = None

__all__ = [
    "ASHAScheduler",
    "AsyncHyperBandScheduler",
    "FIFOScheduler",
    "FailureConfig",
    "MedianStoppingRule",
    "RunConfig",
    "Scheduler",
    "TuneConfig",
]
