"""TuneConfig(search_alg=...): kubetune.OptunaSearch and the sampler names become spec.searchAlgorithm."""

from __future__ import annotations

from typing import Any

import pytest

import kubetune
from kubetune import tune
from kubetune.api import SpecError, validate_experiment_spec
from kubetune.client.errors import TuneError


def manifest(search_alg: Any, seed: int | None = None,
             space: dict[str, Any] | None = None) -> dict[str, Any]:
    tuner = kubetune.Tuner(
        "trainer:1", command=["python", "train.py"], name="opt",
        param_space=space or {"lr": tune.loguniform(1e-4, 1e-1), "layers": tune.randint(1, 5)},
        tune_config=kubetune.TuneConfig(metric="loss", mode="min", num_samples=20,
                                        max_concurrent_trials=4, search_alg=search_alg,
                                        seed=seed,
                                        scheduler=kubetune.ASHAScheduler(max_t=9)))
    return tuner.to_manifest()


def test_optuna_search_becomes_the_search_algorithm_with_its_options() -> None:
    search = kubetune.OptunaSearch(sampler="tpe", seed=3, n_startup_trials=5,
                                   constant_liar=False,
                                   points_to_evaluate=[{"lr": 0.01, "layers": 2}])
    spec = manifest(search)["spec"]
    assert spec["searchAlgorithm"] == {"type": "tpe", "seed": 3, "nStartupTrials": 5,
                                       "constantLiar": False,
                                       "pointsToEvaluate": [{"lr": 0.01, "layers": 2}]}
    parsed = validate_experiment_spec(spec).search_algorithm
    assert parsed.sampler_options() == {"nStartupTrials": 5, "constantLiar": False}
    assert tune.OptunaSearch is kubetune.OptunaSearch


@pytest.mark.parametrize(("name", "expected"), [("tpe", "tpe"), ("gp", "gp"), ("qmc", "qmc"),
                                               ("optuna", "tpe"), ("random", "random")])
def test_a_searcher_name_is_the_type(name: str, expected: str) -> None:
    assert manifest(name, seed=4)["spec"]["searchAlgorithm"] == {"type": expected, "seed": 4}


def test_the_seed_comes_from_either_place_but_not_two_different_ones() -> None:
    assert manifest(kubetune.OptunaSearch(), seed=8)["spec"]["searchAlgorithm"]["seed"] == 8
    with pytest.raises(TuneError, match="differ"):
        manifest(kubetune.OptunaSearch(seed=1), seed=2)


def test_rays_own_optuna_search_is_converted_to_ours_and_a_sampler_object_gets_a_pointer() -> None:
    ray_optuna = pytest.importorskip("ray.tune.search.optuna")
    optuna = pytest.importorskip("optuna")
    assert manifest(ray_optuna.OptunaSearch())["spec"]["searchAlgorithm"] == {"type": "tpe"}
    with pytest.raises(TuneError) as err:
        manifest(ray_optuna.OptunaSearch(sampler=optuna.samplers.TPESampler()))
    message = str(err.value)
    assert "\n" not in message
    assert "kubetune.tune.OptunaSearch(sampler='tpe'" in message


def test_an_optuna_sampler_object_is_refused_naming_the_sampler_names() -> None:
    optuna = pytest.importorskip("optuna")
    with pytest.raises(TuneError, match="tpe, gp, cmaes, qmc"):
        kubetune.OptunaSearch(sampler=optuna.samplers.TPESampler())  # type: ignore[arg-type]
    with pytest.raises(TuneError, match="sampler's name"):
        manifest(optuna.samplers.TPESampler())


def test_an_unknown_name_is_refused_listing_the_names() -> None:
    with pytest.raises(TuneError, match="random, grid, tpe, gp, cmaes, qmc"):
        manifest("hyperopt")


def test_a_grid_entry_under_tpe_is_refused_before_anything_is_submitted() -> None:
    with pytest.raises(SpecError, match="use choice"):
        manifest("tpe", space={"lr": tune.grid_search([0.1, 0.01])})
