"""kubetune.PopulationBasedTraining: Ray's signature, and the TuneExperiment it becomes."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
from ray.tune.schedulers import PopulationBasedTraining as RayPBT

import kubetune
from kubetune import tune
from kubetune.api import SpecError
from kubetune.api.experiment import validate_experiment_spec


def test_the_signature_is_rays_plus_a_seed() -> None:
    ray = inspect.signature(RayPBT).parameters
    ours = inspect.signature(kubetune.PopulationBasedTraining).parameters
    assert list(ours) == [*ray, "seed"]
    for name in ray:
        if name != "time_attr":  # ours counts steps: training_iteration, Ray's time_total_s
            assert ours[name].default == ray[name].default or (
                ray[name].default is None and ours[name].default is None), name


def _tuner(scheduler: kubetune.PopulationBasedTraining, storage: str | None) -> kubetune.Tuner:
    return kubetune.Tuner(
        "trainer:1", param_space={"lr": tune.loguniform(1e-4, 1e-1), "opt": "sgd"},
        tune_config=kubetune.TuneConfig(metric="acc", mode="max", num_samples=8,
                                        max_concurrent_trials=8, scheduler=scheduler),
        run_config=kubetune.RunConfig(storage_path=storage), name="pbt")


def test_a_tuner_with_pbt_becomes_a_valid_experiment_with_its_storage() -> None:
    pbt = kubetune.PopulationBasedTraining(
        perturbation_interval=5,
        hyperparam_mutations={"lr": tune.uniform(1e-4, 0.02), "opt": ["sgd", "adam"]})
    spec = _tuner(pbt, "pvc://tune-ckpt").to_manifest()["spec"]
    assert spec["scheduler"] == {
        "type": "pbt", "timeAttr": "training_iteration", "perturbationInterval": 5,
        "burnInPeriod": 0.0, "hyperparamMutations": {"lr": {"uniform": [1e-4, 0.02]},
                                                     "opt": ["sgd", "adam"]},
        "quantileFraction": 0.25, "resampleProbability": 0.25,
        "perturbationFactors": [1.2, 0.8], "seed": 0}
    assert spec["storage"] == {"persistentVolumeClaim": {"claimName": "tune-ckpt"}}
    parsed = validate_experiment_spec(spec)
    assert parsed.scheduler.type == "pbt" and parsed.storage is not None


def test_pbt_without_storage_is_refused_with_the_reason() -> None:
    pbt = kubetune.PopulationBasedTraining(hyperparam_mutations={"lr": [0.01, 0.1]})
    with pytest.raises(SpecError, match=r"scheduler\.type pbt needs spec\.storage"):
        _tuner(pbt, None).to_manifest()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"custom_explore_fn": lambda c: c}, "cannot run a function"),
     ({"synch": True}, "asynchronous PBT"),
     ({"hyperparam_mutations": {"lr": lambda: 0.1}}, "must be a tune domain or a list")],
)
def test_what_cannot_run_in_the_operator_is_refused(kwargs: dict[str, object],
                                                     message: str) -> None:
    setting: dict[str, object] = {"hyperparam_mutations": {"lr": [0.01, 0.1]}, **kwargs}
    with pytest.raises(ValueError, match=message):
        kubetune.PopulationBasedTraining(**setting).to_spec()  # type: ignore[arg-type]


def test_a_mutation_missing_from_the_search_space_is_refused() -> None:
    pbt = kubetune.PopulationBasedTraining(hyperparam_mutations={"momentum": [0.5, 0.9]})
    with pytest.raises(SpecError, match="names momentum, which searchSpace does not"):
        _tuner(pbt, "pvc://c").to_manifest()


def test_a_searcher_with_pbt_is_refused_as_ray_refuses_it() -> None:
    spec = _tuner(kubetune.PopulationBasedTraining(hyperparam_mutations={"lr": [0.01, 0.1]}),
                  "pvc://c").to_manifest()["spec"]
    spec["searchAlgorithm"] = {"type": "tpe"}
    with pytest.raises(SpecError, match="explores by itself"):
        validate_experiment_spec(spec)


def test_kubetune_trials_shows_the_current_config_and_each_exploit() -> None:
    from rich.console import Console

    from kubetune.client.cli.views import trials_view

    exp = {"spec": {"objective": {"metric": "acc", "mode": "max"}}, "status": {}}
    exploited = {"metadata": {"name": "pbt-1"}, "spec": {"params": {"lr": 0.0004}},
                 "status": {"state": "Running", "metrics": {"acc": 3.0}, "pbt": {
                     "config": {"lr": 0.012},
                     "exploits": [{"time": 2, "donor": "pbt-3", "donorStep": 2,
                                   "oldConfig": {"lr": 0.0004}, "newConfig": {"lr": 0.012}}]}}}
    plain = {"metadata": {"name": "pbt-3"}, "spec": {"params": {"lr": 0.01}},
             "status": {"state": "Running", "metrics": {"acc": 5.0}}}
    console = Console(width=200, record=True)
    console.print(trials_view(exp, [exploited, plain]))
    text = console.export_text()
    assert "config history" in text and "@2 from pbt-3@2: lr=0.012" in text
    row = next(line for line in text.splitlines() if "pbt-1" in line)
    assert "0.012" in row and "0.0004" not in row  # the config it runs now


def _pbt_trials() -> tuple[list[dict[str, Any]], dict[str, dict[int, dict[str, float]]]]:
    trials = [
        {"metadata": {"name": "pbt-0"}, "spec": {"index": 0}, "status": {"state": "Succeeded"}},
        {"metadata": {"name": "pbt-1"}, "spec": {"index": 1}, "status": {
            "state": "Succeeded", "pbt": {"config": {"lr": 0.01}, "exploits": [
                {"time": 4, "donor": "pbt-0", "donorStep": 4, "oldConfig": {"lr": 0.1},
                 "newConfig": {"lr": 0.01}},
                {"time": 8, "donor": "pbt-9", "donorStep": 6}]}}},  # a donor without history
    ]
    histories = {"pbt-0": {s: {"acc": 2.0 * s} for s in range(1, 11)},
                 "pbt-1": {s: {"acc": 0.5 * s} for s in range(1, 11)}}
    return trials, histories


def test_the_plot_draws_each_exploit_from_the_clone_to_the_donors_checkpoint(
        tmp_path: Path) -> None:
    from kubetune.client.plot import lineage, render

    trials, histories = _pbt_trials()
    (clone,) = lineage(trials, histories, "acc")
    assert (clone.trial, clone.donor) == ("pbt-1", "pbt-0")
    assert clone.start == (4, 2.0) and clone.end == (4, 8.0)
    exp = {"metadata": {"name": "pbt"}, "spec": {"objective": {"metric": "acc", "mode": "max"},
                                                  "scheduler": {"type": "pbt"}}, "status": {}}
    out = render(exp, trials, histories, tmp_path / "pbt.png", size=(600, 400))
    assert out.read_bytes().startswith(b"\x89PNG")
