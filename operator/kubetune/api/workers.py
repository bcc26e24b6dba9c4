"""spec.workers: how many pods (workers) one trial runs, as Ray Train's ScalingConfig.

Without it, or with one worker, a trial is one Pod (the product's default, unchanged).
With more than one, each attempt of a trial is an Indexed Job of that many pods plus a
headless Service, and each pod gets the environment torchrun reads (PET_NNODES,
PET_NPROC_PER_NODE, PET_NODE_RANK, PET_MASTER_ADDR, PET_MASTER_PORT): the trial's
program runs `torchrun` (or `python -m torch.distributed.run`) with no arguments of
its own and every pod joins one process group.

The count is either fixed (`count: 4`) or a search-space parameter (`parameter:
num_workers` with `num_workers: {choice: [2, 4]}` in searchSpace), so the worker count
is itself a hyperparameter, as `ScalingConfig(num_workers=tune.choice([2, 4]))` in Ray.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, Field, JsonValue, model_validator

from kubetune.api.common import SpecModel

if TYPE_CHECKING:
    from kubetune.api.searchspace import SearchDomain

MAX_WORKERS = 64
"""Most pods one trial may run (an Indexed Job's completions)."""

MAX_PROCS_PER_WORKER = 64
"""Most processes torchrun starts in one pod."""


class WorkersSpec(SpecModel):
    """The pods of one trial: a fixed count or a search-space parameter, and processes per pod."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [{
        "rule": "has(self.count) != has(self.parameter)",
        "message": "give exactly one of count (count: 2) and parameter (parameter: num_workers)",
    }]})

    count: int | None = Field(
        default=None,
        ge=1,
        le=MAX_WORKERS,
        description="Pods per trial, as Ray's ScalingConfig(num_workers=...). 1 is one Pod per "
        "trial; more is an Indexed Job of that many pods with torchrun's PET_* env. Give this "
        "or parameter.",
    )
    parameter: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="The search-space parameter whose value is the trial's pod count (dotted "
        "for a nested one: scaling_config.num_workers), so the worker count is a "
        "hyperparameter: num_workers: {choice: [2, 4]}. Its values must be integers from 1 to "
        f"{MAX_WORKERS} (choice, grid, randint or qrandint). Give this or count.",
    )
    procs_per_worker: int = Field(
        default=1,
        ge=1,
        le=MAX_PROCS_PER_WORKER,
        description="Processes torchrun starts in each pod (PET_NPROC_PER_NODE), one per GPU "
        "of the pod when it asks for several.",
    )
    master_port: int = Field(
        default=29500,
        ge=1,
        le=65535,
        description="The rendezvous port on rank 0 (PET_MASTER_PORT).",
    )

    @model_validator(mode="after")
    def _count_or_parameter(self) -> WorkersSpec:
        if (self.count is None) == (self.parameter is None):
            raise ValueError("give exactly one of count (a fixed pod count, count: 2) and "
                             "parameter (a search-space parameter, parameter: num_workers)")
        return self

    def count_for(self, params: Mapping[str, Any]) -> int:
        """The pod count of a trial with config `params` (validated against the space before)."""
        if self.count is not None:
            return self.count
        value = lookup(params, str(self.parameter))
        if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
            raise ValueError(f"spec.workers.parameter {self.parameter}: the trial's value "
                             f"{value!r} is not a whole number of workers")
        return int(value)

    @property
    def multi(self) -> bool:
        """Whether some trial may run more than one pod (a Job rather than a Pod)."""
        return self.parameter is not None or (self.count or 1) > 1


class WorkerStatus(SpecModel):
    """One pod of a multi-worker trial's current attempt, and where it runs."""

    rank: int = Field(ge=0, description="The pod's rank (its Job completion index, "
                      "PET_NODE_RANK); rank 0 reports the metrics and checkpoints.")
    pod: str = Field(description="The worker's pod.")
    node: str | None = Field(default=None, description="The node it runs on, once scheduled.")
    phase: str | None = Field(default=None, description="The pod's phase.")


def workers_rules() -> list[JsonValue]:
    """On the spec: spec.workers is fixed at creation (trials already run with their pod
    counts; a Job of an attempt is read by the count it was made with)."""
    return [{
        "rule": "has(self.workers) == has(oldSelf.workers) && "
                "(!has(self.workers) || self.workers == oldSelf.workers)",
        "message": "spec.workers cannot change after the experiment is created (its trials "
                   "run with the pod counts it gave); create a new experiment for new ones",
        "fieldPath": ".workers",
        "reason": "FieldValueForbidden",
    }]


def lookup(params: Mapping[str, Any], dotted: str) -> Any:
    """The value at a dotted path of a config; KeyError when absent."""
    value: Any = params
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise KeyError(dotted)
        value = value[part]
    return value


def _domain(space: Mapping[str, SearchDomain], dotted: str) -> SearchDomain | None:
    parts = dotted.split(".")
    current: Mapping[str, SearchDomain] | None = space
    for i, part in enumerate(parts):
        if current is None or part not in current:
            return None
        domain = current[part]
        if i == len(parts) - 1:
            return domain
        current = domain.space
    return None


def _whole(value: Any) -> bool:
    return (not isinstance(value, bool) and isinstance(value, int | float)
            and int(value) == value and 1 <= value <= MAX_WORKERS)


def workers_problem(workers: WorkersSpec | None, space: Mapping[str, SearchDomain]) -> str | None:
    """Why spec.workers does not fit the search space, or None (no workers: nothing to check)."""
    if workers is None or workers.parameter is None:
        return None
    name = workers.parameter
    domain = _domain(space, name)
    if domain is None:
        return (f"spec.workers.parameter names {name!r}, which is not a searchSpace parameter; "
                f"add it, e.g. {name}: {{choice: [2, 4]}}")
    kind, args = domain.kind, domain.arguments
    if kind in ("choice", "grid", "value"):
        values = list(args) if kind != "value" else [args]
        bad = [v for v in values if not _whole(v)]
        if bad:
            return (f"spec.workers.parameter {name}: {kind} value {bad[0]!r} is not a worker "
                    f"count (a whole number from 1 to {MAX_WORKERS})")
        return None
    if kind in ("randint", "qrandint"):
        low, high = args[0], args[1]
        # randint's upper bound is exclusive, qrandint's inclusive (as in Ray).
        top = high - 1 if kind == "randint" else high
        if not (_whole(low) and _whole(top)):
            return (f"spec.workers.parameter {name}: {kind} [{low}, {high}] gives counts "
                    f"outside 1..{MAX_WORKERS}")
        return None
    return (f"spec.workers.parameter {name} is a {kind} domain; a worker count must be drawn "
            "from whole numbers: choice, grid, randint or qrandint")


__all__ = ["MAX_WORKERS", "WorkerStatus", "WorkersSpec", "lookup", "workers_problem",
           "workers_rules"]
