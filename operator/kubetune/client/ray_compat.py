"""Ray Tune's own objects passed to kubetune by mistake: converted when exact, else refused.

Imported on the user's side. A Ray user porting code keeps `from ray import tune`
lines by habit: `ray.tune.loguniform(...)` in param_space, `ASHAScheduler()` or
`OptunaSearch()` in TuneConfig, `tune.with_resources(fn, {...})` as the
trainable, a Stopper in RunConfig(stop=...). Each is recognised by its class's
module (`ray.` or `optuna.`), so this module never imports ray itself: the
object's attributes are read as Ray's classes define them (ray/tune/search/
sample.py, schedulers/async_hyperband.py, median_stopping_rule.py,
search/optuna/optuna_search.py, execution/placement_groups.py, stopper/). Where
kubetune's own object means exactly the same it is returned; otherwise a
TuneError says which kubetune.tune name to use.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from kubetune.client import domains
from kubetune.client.config import (
    ASHAScheduler,
    FIFOScheduler,
    MedianStoppingRule,
    Scheduler,
)
from kubetune.client.errors import TuneError
from kubetune.client.searchers import OptunaSearch


def from_ray(obj: Any) -> bool:
    """The object is one of Ray Tune's (its class is defined in a `ray.` module)."""
    return type(obj).__module__.split(".")[0] == "ray"


def _name(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


# -- search-space domains -------------------------------------------------------------------

def domain(where: str, obj: Any) -> domains.Domain:
    """kubetune's domain for a Ray domain (ray.tune.search.sample), or a TuneError."""
    kind = type(obj).__name__
    if kind == "Function":
        raise TuneError(f"{where}: Ray's tune.sample_from(...) runs a function in Ray's driver; "
                        "kubetune draws configs in the operator: use kubetune.tune.choice/"
                        "uniform/randint/... (a domain) or a constant")
    sampler: Any = obj.get_sampler() if hasattr(obj, "get_sampler") else None
    q = None
    if type(sampler).__name__ == "Quantized":
        q, sampler = sampler.q, sampler.sampler
    how = type(sampler).__name__.lstrip("_")
    try:
        if kind == "Categorical" and how in ("Uniform", "Grid") and q is None:
            values = list(obj.categories)
            return domains.grid_search(values) if how == "Grid" else domains.choice(values)
        if kind in ("Float", "Integer"):
            return _numeric(kind, how, obj, sampler, q)
    except ValueError as e:
        raise TuneError(f"{where}: Ray's {kind} domain: {e}") from None
    raise TuneError(f"{where}: Ray's {_name(obj)} with a {how} sampler has no exact "
                    "kubetune counterpart: use kubetune.tune.uniform/loguniform/randint/"
                    "choice/... (from kubetune import tune)")


def _numeric(kind: str, how: str, obj: Any, sampler: Any, q: Any) -> domains.Domain:
    if how == "Normal":
        if kind != "Float":
            raise ValueError("a normal sampler on integers has no kubetune counterpart")
        mean, sd = float(sampler.mean), float(sampler.sd)
        return domains.randn(mean, sd) if q is None else domains.qrandn(mean, sd, q)
    lower, upper = obj.lower, obj.upper
    if not (math.isfinite(lower) and math.isfinite(upper)):
        raise ValueError(f"bounds {lower}..{upper} must be finite")
    # Ray's log samplers draw exp(uniform(log lower, log upper)): the base does not matter.
    table = {
        ("Float", "Uniform", False): lambda: domains.uniform(lower, upper),
        ("Float", "Uniform", True): lambda: domains.quniform(lower, upper, q),
        ("Float", "LogUniform", False): lambda: domains.loguniform(lower, upper),
        ("Float", "LogUniform", True): lambda: domains.qloguniform(lower, upper, q),
        ("Integer", "Uniform", False): lambda: domains.randint(lower, upper),
        ("Integer", "Uniform", True): lambda: domains.qrandint(lower, upper, q),
        ("Integer", "LogUniform", False): lambda: domains.lograndint(lower, upper),
        ("Integer", "LogUniform", True): lambda: domains.qlograndint(lower, upper, q),
    }
    make = table.get((kind, how, q is not None))
    if make is None:
        raise ValueError(f"a {how} sampler has no kubetune counterpart")
    return make()


# -- schedulers ---------------------------------------------------------------------------------

def scheduler(obj: Any) -> Scheduler:
    """kubetune's scheduler for a Ray scheduler, or a TuneError naming the one to use."""
    kind = type(obj).__name__
    if kind == "FIFOScheduler":
        return FIFOScheduler()
    if kind in ("AsyncHyperBandScheduler", "ASHAScheduler"):
        if not getattr(obj, "_stop_last_trials", True):
            raise TuneError("Ray's ASHAScheduler(stop_last_trials=False) has no kubetune "
                            "counterpart: use kubetune.tune.ASHAScheduler(...)")
        brackets = list(obj._brackets)
        # Bracket 0's smallest milestone is grace_period (Ray's _Bracket: min_t * rf ** k).
        rungs = [milestone for milestone, _ in brackets[0]._rungs]
        grace = int(min(rungs)) if rungs else int(obj._max_t)
        return ASHAScheduler(time_attr=obj._time_attr, metric=obj._metric, mode=obj._mode,
                             max_t=int(obj._max_t), grace_period=grace,
                             reduction_factor=obj._reduction_factor, brackets=len(brackets))
    if kind == "MedianStoppingRule":
        slack = float(obj._grace_period)
        if obj._time_attr != "training_iteration" or not slack.is_integer():
            raise TuneError(
                f"Ray's MedianStoppingRule measures time in {obj._time_attr!r} (its default is "
                "time_total_s, in seconds); kubetune measures progress in reported steps: use "
                "kubetune.tune.MedianStoppingRule(grace_period=<steps>, min_samples_required=...)")
        if not obj._hard_stop or obj._min_time_slice:
            raise TuneError("Ray's MedianStoppingRule(hard_stop=False or min_time_slice=...) "
                            "pauses trials, which kubetune does not: use "
                            "kubetune.tune.MedianStoppingRule(...)")
        return MedianStoppingRule(metric=obj._metric, mode=obj._mode, grace_period=int(slack),
                                  min_samples_required=int(obj._min_samples_required))
    if kind in ("PopulationBasedTraining", "PopulationBasedTrainingReplay", "PB2"):
        raise TuneError(f"TuneConfig(scheduler=...) got Ray's {_name(obj)}, whose exploits run "
                        "in Ray's driver: use kubetune.tune.PopulationBasedTraining(...) with the "
                        "same arguments (the operator runs it)")
    raise TuneError(f"TuneConfig(scheduler=...) got Ray's {_name(obj)}, which has no kubetune "
                    "counterpart: use kubetune.tune.ASHAScheduler(...), MedianStoppingRule(...), "
                    "FIFOScheduler() or PopulationBasedTraining(...)")


# -- searchers ----------------------------------------------------------------------------------

def searcher(obj: Any) -> tuple[OptunaSearch, str | None, str | None]:
    """kubetune's OptunaSearch for Ray's OptunaSearch, with the metric and mode it was given."""
    if type(obj).__name__ != "OptunaSearch":
        raise TuneError(_searcher_pointer(obj))
    if obj._sampler is not None:
        raise TuneError(f"Ray's OptunaSearch(sampler={type(obj._sampler).__name__}(...)) passes "
                        "an Optuna sampler object, which the operator cannot receive: use "
                        "kubetune.tune.OptunaSearch(sampler='tpe'|'gp'|'cmaes'|'qmc', seed=..., "
                        "<the sampler's options>)")
    if obj._space:
        raise TuneError("Ray's OptunaSearch(space=...): give the search space as the Tuner's "
                        "param_space (kubetune.tune domains) and use kubetune.tune.OptunaSearch()")
    if obj._storage is not None:
        raise TuneError("Ray's OptunaSearch(storage=...): the operator keeps the study in the "
                        "TuneTrials; use kubetune.tune.OptunaSearch() without storage")
    points = obj._points_to_evaluate
    # Ray's default sampler is TPE, seeded with `seed` (optuna_search.py, _setup_study).
    return (OptunaSearch(sampler="tpe", seed=obj._seed,
                         points_to_evaluate=[dict(p) for p in points] if points else None),
            obj._metric, obj._mode)


def _searcher_pointer(obj: Any) -> str:
    if type(obj).__name__ == "ConcurrencyLimiter":
        return (f"search_alg got Ray's {_name(obj)}: set TuneConfig(max_concurrent_trials=...) "
                "and pass kubetune.tune.OptunaSearch(...) or a searcher name")
    return (f"search_alg got Ray's {_name(obj)}, which runs in Ray's driver: use "
            "kubetune.tune.OptunaSearch(sampler='tpe', seed=..., points_to_evaluate=...) or "
            "search_alg='tpe' (or 'random', 'grid', 'gp', 'cmaes', 'qmc'); the operator runs "
            "the search")


# -- stoppers and resources ---------------------------------------------------------------------

def stopper(obj: Any) -> tuple[dict[str, float], float | None]:
    """RunConfig(stop=...) for Ray's MaximumIterationStopper and TimeoutStopper: the stop dict
    and the time budget they mean; any other Stopper is refused."""
    kind = type(obj).__name__
    if kind == "MaximumIterationStopper":  # result[training_iteration] >= max_iter
        return {"training_iteration": float(obj._max_iter)}, None
    if kind == "TimeoutStopper":  # stop_all once the budget has passed
        return {}, float(obj._timeout_seconds)
    raise TuneError(stop_refusal(obj))


def stop_refusal(obj: Any) -> str:
    what = f"Ray's {_name(obj)}" if from_ray(obj) else f"a {type(obj).__name__}"
    return (f"RunConfig(stop=...) got {what}: stop conditions are decided by the operator, "
            "which cannot run your code. Supported: a dict of thresholds, "
            "stop={'training_iteration': 100, 'accuracy': 0.98} (a trial stops when a value is "
            ">= its threshold, as in Ray), Ray's MaximumIterationStopper and TimeoutStopper, and "
            "TuneConfig(time_budget_s=...) for the whole experiment")


_RAY_RESOURCES = {"CPU": "cpu", "GPU": "nvidia.com/gpu", "memory": "memory"}


def resources(obj: Any) -> dict[str, Any]:
    """Container limits for what Ray's with_resources was given (a PlacementGroupFactory)."""
    if type(obj).__name__ != "PlacementGroupFactory":
        if isinstance(obj, Mapping):
            return dict(obj)
        raise TuneError(f"with_resources got {type(obj).__name__}: give a dict such as "
                        "{'gpu': 1, 'cpu': 4, 'memory': '8Gi'}")
    bundles = list(obj.bundles)
    if len(bundles) != 1:
        raise TuneError(f"with_resources got a placement group of {len(bundles)} bundles (a "
                        "distributed trial): kubetune runs one pod per trial worker; give the "
                        "resources of one worker as a dict to kubetune.tune.with_resources")
    out: dict[str, Any] = {}
    for key, value in bundles[0].items():
        if key not in _RAY_RESOURCES:
            raise TuneError(f"with_resources: Ray's custom resource {key!r} has no pod "
                            "counterpart; name the Kubernetes resource in a dict instead")
        if value:
            out[_RAY_RESOURCES[key]] = int(value) if float(value).is_integer() else float(value)
    return out


__all__ = ["domain", "from_ray", "resources", "scheduler", "searcher", "stop_refusal",
           "stopper"]
