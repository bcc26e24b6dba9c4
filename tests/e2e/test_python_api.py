"""The Python API for Ray Tune users: domains, the manifest, and Tuner.fit() on the cluster."""

from __future__ import annotations

import pytest

import kubetune
from kubetune import tune
from kubetune.api import validate_experiment_spec
from kubetune.client.errors import TuneError
from kubetune.client.experiments import ExperimentClient
from kubetune.search import BasicVariantSampler
from tests.support.operator import CHECKPOINT_ROOT, SCRIPTED_TRIAL
from tests.support.scripted_trial import curve

QUALITIES = [0.4, 0.9, 0.2, 0.7, 0.95]


def scripted_tuner(namespace: str, api_client, prometheus_url: str, *, steps: int = 6,
                   name: str = "api") -> kubetune.Tuner:
    return kubetune.Tuner(
        "kubetune/scripted:test",
        command=["python", str(SCRIPTED_TRIAL)],
        env={"KUBETUNE_LINGER_SECONDS": "3", "KUBETUNE_CHECKPOINT_ROOT": CHECKPOINT_ROOT},
        resources={"gpu": 1},
        param_space={"quality": tune.grid_search(QUALITIES), "steps": steps, "sleep": 0.2},
        tune_config=kubetune.TuneConfig(
            metric="accuracy", mode="max", num_samples=1, max_concurrent_trials=3,
            scheduler=kubetune.ASHAScheduler(max_t=steps, grace_period=1, reduction_factor=3)),
        name=name, namespace=namespace, api_client=api_client, prometheus_url=prometheus_url,
    )


# -- pure: no cluster ---------------------------------------------------------------------------


def test_ray_domains_become_the_crd_search_space_entries():
    space = tune.search_space({
        "lr": tune.loguniform(1e-4, 1e-1),
        "momentum": tune.uniform(0.5, 0.99),
        "hidden": tune.choice([64, 128]),
        "layers": tune.randint(1, 4),
        "bs": tune.grid_search([32, 64]),
        "q": tune.quniform(0.0, 1.0, 0.25),
        "ray_grid": {"grid_search": [1, 2]},  # the mapping Ray's own grid_search returns
        "epochs": 9,
        "opt": {"name": tune.choice(["sgd", "adam"]), "nesterov": True},
        "plain": {"a": 1},
    })
    assert space == {
        "lr": {"loguniform": [1e-4, 1e-1]},
        "momentum": {"uniform": [0.5, 0.99]},
        "hidden": {"choice": [64, 128]},
        "layers": {"randint": [1, 4]},
        "bs": {"grid": [32, 64]},
        "q": {"quniform": [0.0, 1.0, 0.25]},
        "ray_grid": {"grid": [1, 2]},
        "epochs": {"value": 9},
        "opt": {"space": {"name": {"choice": ["sgd", "adam"]}, "nesterov": {"value": True}}},
        "plain": {"value": {"a": 1}},
    }
    assert repr(tune.grid_search([1, 2])) == "tune.grid_search(1, 2)"


@pytest.mark.parametrize("make, message", [
    (lambda: tune.loguniform(0, 1), "0 < lower"),
    (lambda: tune.uniform(1, 1), "lower < upper"),
    (lambda: tune.choice([]), "at least one value"),
    (lambda: tune.randint(1.5, 3), "must be an integer"),
    (lambda: tune.sample_from(lambda _: 1), "cannot be sent to the cluster"),
])
def test_invalid_domains_are_refused_with_the_rule(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_to_manifest_is_a_valid_experiment_with_ray_names_mapped():
    tuner = kubetune.Tuner(
        "registry.example/trainer:1", command=["python", "-m", "kubetune_trainer"],
        args=["--dataset", "digits"], resources={"gpu": 1, "memory": "2Gi"},
        param_space={"lr": tune.loguniform(1e-3, 1e-1), "bs": tune.grid_search([32, 64])},
        tune_config=kubetune.TuneConfig(
            metric="accuracy", mode="max", num_samples=3, max_concurrent_trials=2, seed=5,
            scheduler=kubetune.ASHAScheduler(max_t=27, grace_period=3, reduction_factor=3)),
        run_config=kubetune.RunConfig(
            failure_config=kubetune.FailureConfig(max_failures=2, fail_fast=True)),
        name="demo")
    manifest = tuner.to_manifest()
    spec = validate_experiment_spec(manifest["spec"])
    assert manifest["metadata"] == {"name": "demo"}
    assert spec.num_samples == 3 and spec.max_concurrent_trials == 2
    assert spec.search_algorithm.seed == 5
    assert (spec.scheduler.type, spec.scheduler.max_t, spec.scheduler.grace_period,
            spec.scheduler.reduction_factor) == ("asha", 27, 3, 3)
    assert spec.trial_retries == 2 and spec.max_failed_trials == 1
    container = manifest["spec"]["trialTemplate"]["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "1", "memory": "2Gi"}
    assert container["command"] == ["python", "-m", "kubetune_trainer"]
    assert BasicVariantSampler.from_spec(spec).total_trials == 6  # 3 samples x 2 grid points


def test_a_tuner_needs_an_objective_and_a_trainable_it_can_ship():
    with pytest.raises(ValueError, match="metric"):
        kubetune.Tuner("img", param_space={"a": 1}, name="x").to_manifest()
    with pytest.raises(TypeError, match="a lambda cannot be shipped"):
        kubetune.Tuner(lambda config: None, param_space={"a": 1}, name="x",
                       tune_config=kubetune.TuneConfig(metric="m", mode="max")).to_manifest()
    with pytest.raises(ValueError, match="lowercase"):
        kubetune.Tuner("img", param_space={"a": 1}, name="Bad_Name")


# -- against the cluster ------------------------------------------------------------------------


def test_fit_returns_a_result_grid_whose_best_is_the_experiments_best_trial(
        api_client, namespace, operator, cluster):
    tuner = scripted_tuner(namespace, api_client, cluster.prometheus_url)
    results = tuner.fit(progress=False, timeout=180)

    experiment = ExperimentClient(api_client=api_client, namespace=namespace).get_experiment("api")
    best_trial = experiment["status"]["bestTrial"]
    assert results.phase == "Succeeded"
    assert len(results) == len(QUALITIES)
    assert results.errors == []
    best = results.get_best_result()
    assert best.trial_name == best_trial["name"] == f"api-{QUALITIES.index(max(QUALITIES))}"
    assert best.config == best_trial["config"]
    assert best.metrics["accuracy"] == pytest.approx(best_trial["metric"])
    assert best.metrics["training_iteration"] == best_trial["step"] == 6
    assert best.path == f"{namespace}/{best_trial['name']}"

    frame = best.metrics_dataframe
    assert len(frame) >= 3, f"expected the curve from Prometheus, got {frame}"
    for _, row in frame.iterrows():
        assert row["accuracy"] == pytest.approx(curve(max(QUALITIES), int(row["training_iteration"])))

    table = results.get_dataframe()
    assert set(table["trial_name"]) == {f"api-{i}" for i in range(len(QUALITIES))}
    assert sorted(table["config/quality"]) == sorted(QUALITIES)
    assert results.get_best_result("loss", "min").trial_name == best.trial_name

    # Fitting the same Tuner again attaches to the finished experiment; another spec is refused.
    again = tuner.fit(progress=False, timeout=30)
    assert again.get_best_result().trial_name == best.trial_name
    with pytest.raises(TuneError, match="already exists"):
        scripted_tuner(namespace, api_client, cluster.prometheus_url, steps=4).fit(timeout=5)
