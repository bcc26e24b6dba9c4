"""What a Ray Tune user's configs mean as TuneExperiment fields, with Ray's defaults.

Imported on the user's side by the Tuner. Where a field left unset means one
thing in Ray and another in a TuneExperiment written by hand, the Tuner writes
Ray's meaning into the spec and `fit()` prints a one-line notice saying so:

| unset in Ray's API           | Ray's default                  | the Tuner writes              | CRD default |
|------------------------------|--------------------------------|-------------------------------|-------------|
| max_concurrent_trials        | no cap beyond the cluster      | maxConcurrentTrials = trials  | 1           |
| RunConfig(failure_config)    | FailureConfig(max_failures=0), | trialRetries 0,               | 1           |
|                              | failed trials never fail a run | maxFailedTrials 0 (never)     | 3           |

Ray's objects passed in place of kubetune's (schedulers, searchers, stoppers,
`ray.tune.with_resources`) are converted here through `ray_compat`.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from kubetune.api import MAX_CONCURRENT_TRIALS
from kubetune.api.stop import TRAINING_ITERATION
from kubetune.client import ray_compat
from kubetune.client.config import FailureConfig, RunConfig, TuneConfig
from kubetune.client.errors import TuneError

RAY_AUTO_FILLED = ("time_total_s", "time_this_iter_s", "timesteps_total", "episodes_total",
                   "iterations_since_restore", "timesteps_since_restore", "time_since_restore")
"""Result keys Ray fills in itself (ray/tune/result.py) that a kubetune trial reports only
if its code does."""

RAY_FAILURE_CONFIG = FailureConfig(max_failures=0, fail_fast=False, max_failed_trials=0)
"""Ray's FailureConfig() (ray/air/config.py): no retry; failed trials do not fail the run."""

T = TypeVar("T")


@dataclass(frozen=True)
class WithResources:
    """An image or a pod template with the resources each of its trials asks for."""

    trainable: str | Mapping[str, Any]
    resources: Mapping[str, Any]


def with_resources(trainable: T, resources: Mapping[str, Any]) -> T:
    """Ray's tune.with_resources: the trainable, each of whose trials asks for `resources`
    ({"gpu": 1, "cpu": 4, "memory": "8Gi"}, container limits; gpu is nvidia.com/gpu).

    As in Ray, a function is returned itself, marked with its resources; an image or a
    pod template comes back wrapped, for the Tuner to unwrap.
    """
    if callable(resources):
        raise TuneError("with_resources(trainable, resources): resources as a function of the "
                        "config is not offered; give a dict such as {'gpu': 1}")
    wanted = ray_compat.resources(resources)
    if callable(trainable):
        trainable.__dict__["_kubetune_resources"] = wanted
        return trainable
    if isinstance(trainable, str | Mapping):
        return WithResources(trainable, wanted)  # type: ignore[return-value]
    raise TuneError(f"with_resources: the trainable is an image, a pod template or a function, "
                    f"not {type(trainable).__name__}")


def unwrap_trainable(trainable: Any, resources: Mapping[str, Any] | None
                     ) -> tuple[Any, Mapping[str, Any] | None]:
    """The trainable itself and the resources with_resources (kubetune's or Ray's) gave it,
    merged with Tuner(resources=...), which must not name the same resource twice."""
    extra: Mapping[str, Any] | None = None
    if isinstance(trainable, WithResources):
        trainable, extra = trainable.trainable, trainable.resources
    elif isinstance(trainable, type) and any(ray_compat.from_ray(b) or
                                             b.__module__.startswith("ray.")
                                             for b in trainable.__mro__[1:]):
        raise TuneError(f"the trainable {trainable.__name__} is a Ray Trainable class, which "
                        "needs Ray's runtime: pass a function train_fn(config) that calls "
                        "kubetune.tune.report(...), or a container image")
    elif callable(trainable):
        extra = getattr(trainable, "_kubetune_resources", None)
        ray_request = getattr(trainable, "_resources", None)
        if extra is None and ray_request is not None and ray_compat.from_ray(ray_request):
            extra = ray_compat.resources(ray_request)  # Ray's tune.with_resources
    if not extra:
        return trainable, resources
    both = set(extra) & set(resources or {})
    if both:
        raise TuneError(f"resources {sorted(both)} are given both by with_resources and by "
                        "Tuner(resources=...); give each once")
    return trainable, {**extra, **(resources or {})}


def converted(tc: TuneConfig) -> TuneConfig:
    """The TuneConfig with Ray's scheduler and searcher objects replaced by kubetune's."""
    changes: dict[str, Any] = {}
    if tc.scheduler is not None and ray_compat.from_ray(tc.scheduler):
        changes["scheduler"] = ray_compat.scheduler(tc.scheduler)
    if tc.search_alg is not None and ray_compat.from_ray(tc.search_alg):
        search, metric, mode = ray_compat.searcher(tc.search_alg)
        changes["search_alg"] = search
        for what, theirs in (("metric", metric), ("mode", mode)):
            ours = getattr(tc, what)
            if theirs and ours and theirs != ours:
                raise TuneError(f"TuneConfig({what}={ours!r}) and Ray's OptunaSearch({what}="
                                f"{theirs!r}) differ; set it in TuneConfig only")
            if theirs and not ours:
                changes[what] = theirs
    return dataclasses.replace(tc, **changes) if changes else tc


def grid_points(search_space: Mapping[str, Any]) -> int:
    """How many grid points a spec.searchSpace (as written) expands to."""
    points = 1
    for entry in search_space.values():
        if isinstance(entry, Mapping) and isinstance(entry.get("grid"), list):
            points *= len(entry["grid"])
        elif isinstance(entry, Mapping) and isinstance(entry.get("space"), Mapping):
            points *= grid_points(entry["space"])
    return points


def run_fields(tc: TuneConfig, rc: RunConfig, search_space: Mapping[str, Any]
               ) -> tuple[dict[str, Any], list[str]]:
    """The spec fields for concurrency, failures, stop conditions and the time budget, and a
    notice for each Ray default the Tuner applied where the CRD's default differs."""
    fields: dict[str, Any] = {}
    notices: list[str] = []
    total = tc.num_samples * grid_points(search_space)
    if tc.max_concurrent_trials is None:
        fields["maxConcurrentTrials"] = max(1, min(total, MAX_CONCURRENT_TRIALS))
        notices.append(f"max_concurrent_trials unset: up to {fields['maxConcurrentTrials']} "
                       "trials at once, as Ray (no cap beyond the cluster); a TuneExperiment "
                       "written by hand runs 1 at a time")
    else:
        fields["maxConcurrentTrials"] = tc.max_concurrent_trials
    failure = rc.failure_config
    if failure is None:
        failure = RAY_FAILURE_CONFIG
        notices.append("failure_config unset: Ray's FailureConfig(max_failures=0), no retry and "
                       "failed trials do not fail the run (trialRetries 0, maxFailedTrials 0; a "
                       "TuneExperiment written by hand has 1 and 3)")
    if failure.max_failures < 0:
        raise TuneError("FailureConfig(max_failures=-1) retries forever, which a cluster should "
                        "not do: give a number of retries")
    fields["trialRetries"] = failure.max_failures
    fields["maxFailedTrials"] = 1 if failure.fail_fast else (failure.max_failed_trials or 0)
    stop, budget = _stop(rc.stop)
    if stop:
        fields["stop"] = stop
    for name in sorted(set((stop or {}).get("metrics") or {}) & set(RAY_AUTO_FILLED)):
        notices.append(f"stop on {name!r}: Ray fills it in, a kubetune trial only reports it "
                       "if its code does, else the condition never holds (for time, use "
                       "TuneConfig(time_budget_s=...))")
    budget = _seconds(tc.time_budget_s) if tc.time_budget_s is not None else budget
    if budget is not None:
        fields["timeBudgetSeconds"] = budget
    return fields, notices


def _seconds(value: Any) -> int:
    seconds = value.total_seconds() if isinstance(value, datetime.timedelta) else value
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds <= 0:
        raise TuneError(f"TuneConfig(time_budget_s={value!r}) must be a positive number of "
                        "seconds or a datetime.timedelta")
    return max(1, math.ceil(seconds))


def _stop(stop: Any) -> tuple[dict[str, Any], int | None]:
    """spec.stop for RunConfig(stop=...), and the time budget a TimeoutStopper means."""
    if stop is None:
        return {}, None
    budget = None
    if not isinstance(stop, Mapping):
        if not ray_compat.from_ray(stop):
            raise TuneError(ray_compat.stop_refusal(stop))
        stop, seconds = ray_compat.stopper(stop)
        budget = _seconds(seconds) if seconds is not None else None
    metrics: dict[str, float] = {}
    iteration = None
    for name, threshold in stop.items():
        if isinstance(threshold, Mapping):
            raise TuneError(f"RunConfig(stop={{{name!r}: {{...}}}}): nested stop criteria are "
                            "written flat, with '/' between the keys, as in Ray")
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) \
                or not math.isfinite(threshold):
            raise TuneError(f"RunConfig(stop={{{name!r}: {threshold!r}}}): a stop threshold is a "
                            "finite number; a trial stops when its value is >= it")
        if name == TRAINING_ITERATION:
            iteration = max(1, math.ceil(threshold))  # a step >= 2.5 is a step >= 3
        else:
            metrics[str(name)] = float(threshold)
    spec: dict[str, Any] = {}
    if iteration is not None:
        spec["trainingIteration"] = iteration
    if metrics:
        spec["metrics"] = metrics
    return spec, budget


__all__ = ["RAY_FAILURE_CONFIG", "WithResources", "converted", "run_fields", "unwrap_trainable",
           "with_resources"]
