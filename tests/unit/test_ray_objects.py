"""Ray Tune's own objects passed to kubetune: converted when exact, refused with a pointer.

Every object here is a real Ray object (ray is installed; no Ray runtime is started).
"""

from __future__ import annotations

import datetime
import subprocess
import sys
from typing import Any

import pytest
from ray import tune as ray_tune
from ray.tune.schedulers import (
    ASHAScheduler as RayASHA,
)
from ray.tune.schedulers import (
    FIFOScheduler as RayFIFO,
)
from ray.tune.schedulers import (
    HyperBandScheduler,
)
from ray.tune.schedulers import (
    MedianStoppingRule as RayMedian,
)
from ray.tune.schedulers import (
    PopulationBasedTraining as RayPBT,
)
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch as RayOptunaSearch
from ray.tune.stopper import MaximumIterationStopper, TimeoutStopper, TrialPlateauStopper

import kubetune
from kubetune import tune
from kubetune.api import validate_experiment_spec
from kubetune.client.errors import TuneError

pytestmark = pytest.mark.unit


def manifest(param_space: dict[str, Any] | None = None, **over: Any) -> dict[str, Any]:
    tune_config = over.pop("tune_config", None) or kubetune.TuneConfig(metric="accuracy",
                                                                       mode="max")
    tuner = kubetune.Tuner("img", param_space=param_space or {"lr": tune.uniform(0, 1)},
                           tune_config=tune_config, name="x", **over)
    return tuner.to_manifest()


# -- domains ------------------------------------------------------------------------------------

@pytest.mark.parametrize("ray_domain, ours", [
    (ray_tune.uniform(0.1, 0.9), tune.uniform(0.1, 0.9)),
    (ray_tune.quniform(0.0, 1.0, 0.25), tune.quniform(0.0, 1.0, 0.25)),
    (ray_tune.loguniform(1e-4, 1e-1), tune.loguniform(1e-4, 1e-1)),
    (ray_tune.qloguniform(1e-4, 1e-1, 1e-5), tune.qloguniform(1e-4, 1e-1, 1e-5)),
    (ray_tune.randn(0.5, 2.0), tune.randn(0.5, 2.0)),
    (ray_tune.qrandn(0.5, 2.0, 0.1), tune.qrandn(0.5, 2.0, 0.1)),
    (ray_tune.randint(1, 5), tune.randint(1, 5)),
    (ray_tune.qrandint(2, 10, 2), tune.qrandint(2, 10, 2)),
    (ray_tune.lograndint(1, 100), tune.lograndint(1, 100)),
    (ray_tune.qlograndint(2, 100, 2), tune.qlograndint(2, 100, 2)),
    (ray_tune.choice(["sgd", "adam"]), tune.choice(["sgd", "adam"])),
], ids=lambda v: repr(v) if isinstance(v, tune.Domain) else type(v).__name__)
def test_a_ray_domain_becomes_the_same_kubetune_domain(ray_domain: Any,
                                                       ours: tune.Domain) -> None:
    assert tune.search_space({"p": ray_domain}) == {"p": ours.to_spec()}
    assert tune.search_space({"nested": {"p": ray_domain}}) == \
        {"nested": {"space": {"p": ours.to_spec()}}}


def test_rays_sample_from_is_refused_with_the_kubetune_names() -> None:
    with pytest.raises(TuneError, match=r"lr: Ray's tune.sample_from.*use kubetune.tune.choice"):
        tune.search_space({"lr": ray_tune.sample_from(lambda spec: 0.1)})


def test_a_ray_domain_in_pbt_mutations_is_converted() -> None:
    pbt = kubetune.PopulationBasedTraining(hyperparam_mutations={"lr": ray_tune.uniform(0, 1)})
    assert pbt.to_spec()["hyperparamMutations"] == {"lr": {"uniform": [0, 1]}}


def test_the_ray_domains_of_a_whole_param_space_give_a_valid_experiment() -> None:
    m = manifest({"lr": ray_tune.loguniform(1e-4, 1e-1), "bs": ray_tune.choice([32, 64]),
                  "layers": ray_tune.randint(1, 4), "grid": ray_tune.grid_search([1, 2])})
    assert m["spec"]["searchSpace"]["lr"] == {"loguniform": [1e-4, 1e-1]}
    assert m["spec"]["searchSpace"]["grid"] == {"grid": [1, 2]}


# -- schedulers ---------------------------------------------------------------------------------

def test_rays_asha_scheduler_becomes_kubetunes_with_its_arguments() -> None:
    ray_asha = RayASHA(metric="accuracy", mode="max", max_t=27, grace_period=3,
                       reduction_factor=3, brackets=2)
    m = manifest(tune_config=kubetune.TuneConfig(scheduler=ray_asha))
    assert m["spec"]["objective"] == {"metric": "accuracy", "mode": "max"}
    s = m["spec"]["scheduler"]
    assert (s["type"], s["maxT"], s["gracePeriod"], s["reductionFactor"], s["brackets"],
            s["timeAttr"]) == ("asha", 27, 3, 3, 2, "training_iteration")


def test_rays_asha_defaults_are_kubetunes_asha_defaults() -> None:
    ray_spec = manifest(tune_config=kubetune.TuneConfig(metric="accuracy", mode="max",
                                                        scheduler=RayASHA()))["spec"]
    ours = manifest(tune_config=kubetune.TuneConfig(metric="accuracy", mode="max",
                                                    scheduler=kubetune.ASHAScheduler()))["spec"]
    assert ray_spec["scheduler"] == ours["scheduler"]


def test_rays_fifo_and_median_rule_are_converted() -> None:
    fifo = manifest(tune_config=kubetune.TuneConfig(metric="accuracy", mode="max",
                                                    scheduler=RayFIFO()))
    assert fifo["spec"]["scheduler"] == {"type": "fifo"}
    median = RayMedian(time_attr="training_iteration", metric="accuracy", mode="max",
                       grace_period=4, min_samples_required=5)
    m = manifest(tune_config=kubetune.TuneConfig(scheduler=median))
    assert m["spec"]["scheduler"] == {"type": "median", "timeAttr": "training_iteration",
                                      "gracePeriod": 4, "minSamplesRequired": 5}


@pytest.mark.parametrize("make, message", [
    (lambda: RayMedian(metric="accuracy", mode="max"),
     r"time_total_s, in seconds.*kubetune.tune.MedianStoppingRule"),
    (lambda: RayPBT(metric="accuracy", mode="max",
                    hyperparam_mutations={"lr": [0.1, 0.2]}),
     r"use kubetune.tune.PopulationBasedTraining"),
    (lambda: HyperBandScheduler(metric="accuracy", mode="max"),
     r"Ray's ray.tune.schedulers.hyperband.HyperBandScheduler.*use kubetune.tune.ASHAScheduler"),
    (lambda: RayASHA(stop_last_trials=False), r"stop_last_trials=False.*kubetune.tune.ASHA"),
])
def test_a_ray_scheduler_without_an_exact_counterpart_is_refused(make: Any, message: str) -> None:
    with pytest.raises(TuneError, match=message):
        manifest(tune_config=kubetune.TuneConfig(metric="accuracy", mode="max",
                                                 scheduler=make()))


# -- searchers ----------------------------------------------------------------------------------

def test_rays_optuna_search_becomes_kubetunes_tpe_with_seed_and_points() -> None:
    ray_search = RayOptunaSearch(metric="accuracy", mode="max", seed=7,
                                 points_to_evaluate=[{"lr": 0.5}])
    m = manifest(tune_config=kubetune.TuneConfig(search_alg=ray_search))
    assert m["spec"]["objective"] == {"metric": "accuracy", "mode": "max"}
    assert m["spec"]["searchAlgorithm"] == {"type": "tpe", "seed": 7,
                                            "pointsToEvaluate": [{"lr": 0.5}]}


def test_rays_optuna_search_with_an_optuna_sampler_object_is_refused() -> None:
    import optuna

    ray_search = RayOptunaSearch(sampler=optuna.samplers.TPESampler(seed=1))
    with pytest.raises(TuneError, match=r"use kubetune.tune.OptunaSearch\(sampler='tpe'"):
        manifest(tune_config=kubetune.TuneConfig(metric="accuracy", mode="max",
                                                 search_alg=ray_search))


def test_a_ray_concurrency_limiter_points_at_max_concurrent_trials() -> None:
    limited = ConcurrencyLimiter(RayOptunaSearch(), max_concurrent=2)
    with pytest.raises(TuneError, match=r"max_concurrent_trials"):
        manifest(tune_config=kubetune.TuneConfig(metric="accuracy", mode="max",
                                                 search_alg=limited))


def test_a_metric_differing_between_tune_config_and_rays_searcher_is_refused() -> None:
    with pytest.raises(TuneError, match="differ"):
        manifest(tune_config=kubetune.TuneConfig(
            metric="accuracy", mode="max", search_alg=RayOptunaSearch(metric="loss", mode="min")))


# -- with_resources -----------------------------------------------------------------------------

def _limits(m: dict[str, Any]) -> dict[str, str]:
    return dict(m["spec"]["trialTemplate"]["spec"]["containers"][0]["resources"]["limits"])


def test_kubetune_with_resources_gives_the_trials_limits() -> None:
    trainable = tune.with_resources("img", {"gpu": 1, "cpu": 4, "memory": "8Gi"})
    tuner = kubetune.Tuner(trainable, param_space={"lr": tune.uniform(0, 1)}, name="x",
                           tune_config=kubetune.TuneConfig(metric="accuracy", mode="max"))
    assert tuner.trainable == "img"
    assert _limits(tuner.to_manifest()) == {"nvidia.com/gpu": "1", "cpu": "4", "memory": "8Gi"}


def test_rays_with_resources_on_a_function_is_read_from_its_placement_group() -> None:
    from kubetune.client.ray_defaults import unwrap_trainable

    def train_fn(config: dict[str, Any]) -> None:
        pass

    wrapped = ray_tune.with_resources(train_fn, {"gpu": 1, "cpu": 2})
    trainable, resources = unwrap_trainable(wrapped, None)
    assert trainable is train_fn and resources == {"nvidia.com/gpu": 1, "cpu": 2}
    two = ray_tune.with_resources(train_fn, ray_tune.PlacementGroupFactory([{"GPU": 1}] * 2))
    with pytest.raises(TuneError, match="placement group of 2 bundles"):
        unwrap_trainable(two, None)


def test_a_resource_given_twice_is_refused() -> None:
    with pytest.raises(TuneError, match="given both"):
        kubetune.Tuner(tune.with_resources("img", {"gpu": 1}), param_space={"a": 1},
                       resources={"nvidia.com/gpu": 2, "gpu": 1}, name="x")


def test_a_ray_trainable_class_is_refused_with_what_to_pass() -> None:
    class MyTrainable(ray_tune.Trainable):
        pass

    with pytest.raises(TuneError, match="Ray Trainable class"):
        kubetune.Tuner(MyTrainable, param_space={"a": 1}, name="x")


# -- stop conditions, time budget and Ray's defaults ------------------------------------------------

def test_run_config_stop_dict_and_time_budget_become_the_spec_fields() -> None:
    m = manifest(run_config=kubetune.RunConfig(stop={"training_iteration": 100,
                                                     "accuracy": 0.98}),
                 tune_config=kubetune.TuneConfig(metric="accuracy", mode="max",
                                                 time_budget_s=datetime.timedelta(minutes=2)))
    assert m["spec"]["stop"] == {"trainingIteration": 100, "metrics": {"accuracy": 0.98}}
    assert m["spec"]["timeBudgetSeconds"] == 120
    validate_experiment_spec(m["spec"])


def test_rays_iteration_and_timeout_stoppers_are_converted() -> None:
    m = manifest(run_config=kubetune.RunConfig(stop=MaximumIterationStopper(7)))  # type: ignore[arg-type]
    assert m["spec"]["stop"] == {"trainingIteration": 7}
    m = manifest(run_config=kubetune.RunConfig(stop=TimeoutStopper(90)))  # type: ignore[arg-type]
    assert m["spec"]["timeBudgetSeconds"] == 90 and "stop" not in m["spec"]


@pytest.mark.parametrize("stop, message", [
    (lambda trial_id, result: result["accuracy"] > 0.9, r"got a function.*Supported: a dict"),
    (TrialPlateauStopper(metric="accuracy"), r"Ray's .*TrialPlateauStopper.*Supported: a dict"),
    ({"accuracy": "high"}, r"a stop threshold is a finite number"),
    ({"nested": {"a": 1}}, r"written flat, with '/'"),
])
def test_a_stopper_the_operator_cannot_run_is_refused_naming_what_is_supported(
        stop: Any, message: str) -> None:
    with pytest.raises(TuneError, match=message):
        manifest(run_config=kubetune.RunConfig(stop=stop))


def test_unset_concurrency_and_failures_take_rays_defaults() -> None:
    tuner = kubetune.Tuner("img", param_space={"lr": tune.uniform(0, 1),
                                               "bs": tune.grid_search([1, 2, 3])},
                           tune_config=kubetune.TuneConfig(metric="accuracy", mode="max",
                                                           num_samples=4), name="x")
    spec = tuner.to_manifest()["spec"]
    assert spec["maxConcurrentTrials"] == 12  # every trial at once: 4 samples x 3 grid points
    assert spec["trialRetries"] == 0 and spec["maxFailedTrials"] == 0
    assert len(tuner._notices) == 2
    assert "max_concurrent_trials unset" in tuner._notices[0]
    assert "Ray's FailureConfig(max_failures=0)" in tuner._notices[1]


def test_settings_given_explicitly_print_no_notice() -> None:
    tuner = kubetune.Tuner(
        "img", param_space={"lr": tune.uniform(0, 1)}, name="x",
        tune_config=kubetune.TuneConfig(metric="accuracy", mode="max", max_concurrent_trials=2),
        run_config=kubetune.RunConfig(failure_config=kubetune.FailureConfig(max_failures=1)))
    spec = tuner.to_manifest()["spec"]
    assert (spec["maxConcurrentTrials"], spec["trialRetries"], spec["maxFailedTrials"]) == (2, 1, 0)
    assert tuner._notices == []


def test_conversion_does_not_import_ray_for_kubetunes_own_objects() -> None:
    code = ("import sys, kubetune; from kubetune import tune\n"
            "kubetune.Tuner(tune.with_resources('img', {'gpu': 1}), name='x',\n"
            "  param_space={'lr': tune.loguniform(1e-3, 1e-1)},\n"
            "  run_config=kubetune.RunConfig(stop={'accuracy': 0.9}),\n"
            "  tune_config=kubetune.TuneConfig(metric='a', mode='max', search_alg='tpe',\n"
            "    scheduler=kubetune.ASHAScheduler())).to_manifest()\n"
            "assert 'ray' not in sys.modules, 'ray was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_stop_on_a_key_ray_fills_in_itself_gets_a_notice() -> None:
    tuner = kubetune.Tuner(
        "img", param_space={"lr": tune.uniform(0, 1)}, name="x",
        tune_config=kubetune.TuneConfig(metric="accuracy", mode="max", max_concurrent_trials=1),
        run_config=kubetune.RunConfig(stop={"time_total_s": 60},
                                      failure_config=kubetune.FailureConfig()))
    assert tuner.to_manifest()["spec"]["stop"] == {"metrics": {"time_total_s": 60.0}}
    assert len(tuner._notices) == 1 and "stop on 'time_total_s': Ray fills it in" in \
        tuner._notices[0]
