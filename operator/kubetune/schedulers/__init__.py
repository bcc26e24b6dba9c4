"""Trial schedulers: when to stop a trial early. Pure: no clock, no I/O.

`make_scheduler` builds one from a TuneExperiment's `spec.scheduler`. Each
algorithm is one module behind `TrialScheduler` (base.py): ASHA (asha.py),
FIFO (fifo.py) and the median stopping rule (median.py). Population Based
Training (pbt.py) is not a stopping rule and keeps its own contract: it decides
exploits (which trial clones which, with what config). What they persist and
report are the API's types (Decision, RungRecord, RungSummary), exported here
too because they are the schedulers' vocabulary.
"""

from __future__ import annotations

import inspect
from typing import Any

from kubetune.api import Decision, RungRecord, RungSummary
from kubetune.schedulers._pbt_explore import Mutation
from kubetune.schedulers.asha import ASHAScheduler, AsyncHyperBandScheduler
from kubetune.schedulers.base import TrialScheduler, Verdict
from kubetune.schedulers.fifo import FIFOScheduler
from kubetune.schedulers.median import MedianStoppingRule
from kubetune.schedulers.pbt import (
    Check,
    Exploit,
    MemberState,
    PBTCheckSteps,
    PopulationBasedTraining,
    check_steps,
)

SCHEDULERS: dict[str, type[TrialScheduler]] = {
    "asha": AsyncHyperBandScheduler,
    "fifo": FIFOScheduler,
    "median": MedianStoppingRule,
}
"""Each spec.scheduler.type and the class that implements it."""

SCHEDULER_TYPES = tuple(SCHEDULERS)

__all__ = [
    "SCHEDULERS",
    "SCHEDULER_TYPES",
    "ASHAScheduler",
    "AsyncHyperBandScheduler",
    "Check",
    "Decision",
    "Exploit",
    "FIFOScheduler",
    "MedianStoppingRule",
    "MemberState",
    "Mutation",
    "PBTCheckSteps",
    "PopulationBasedTraining",
    "RungRecord",
    "RungSummary",
    "TrialScheduler",
    "Verdict",
    "check_steps",
    "make_scheduler",
]


def make_scheduler(
    type: str,
    *,
    metric: str,
    mode: str,
    time_attr: str = "training_iteration",
    max_t: int = 100,
    grace_period: int = 1,
    reduction_factor: float = 4,
    brackets: int = 1,
    min_samples_required: int = 3,
) -> TrialScheduler:
    """Build the scheduler named by `type`; arguments another type does not use are ignored."""
    cls = SCHEDULERS.get(type)
    if cls is None:
        raise ValueError(
            f"scheduler type must be one of {', '.join(SCHEDULER_TYPES)} (got {type!r})"
        )
    arguments: dict[str, Any] = {
        "metric": metric,
        "mode": mode,
        "time_attr": time_attr,
        "max_t": max_t,
        "grace_period": grace_period,
        "reduction_factor": reduction_factor,
        "brackets": brackets,
        "min_samples_required": min_samples_required,
    }
    accepted = inspect.signature(cls).parameters
    return cls(**{name: value for name, value in arguments.items() if name in accepted})
