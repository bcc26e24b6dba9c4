"""kubetune.ScalingConfig: Ray Train's arguments and defaults, written as spec.workers and
the worker pods' resources by Tuner(scaling_config=...). Parity checks drive Ray's own
ScalingConfig (ray.air.config, used without a Ray runtime)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from ray.air.config import ScalingConfig as RayScalingConfig

import kubetune
from kubetune import tune
from kubetune.api import validate_experiment_spec
from kubetune.client.scaling import ScalingConfig


def manifest(scaling: ScalingConfig, space: dict[str, Any] | None = None,
             **kw: Any) -> dict[str, Any]:
    tuner = kubetune.Tuner(
        "trainer:1", command=["python", "-m", "torch.distributed.run", "-m", "kubetune_trainer"],
        name="ddp", param_space=space or {"lr": tune.loguniform(1e-4, 1e-1)},
        scaling_config=scaling,
        tune_config=kubetune.TuneConfig(metric="accuracy", mode="max", num_samples=4), **kw)
    return tuner.to_manifest()


def main_resources(body: dict[str, Any]) -> dict[str, Any]:
    return body["spec"]["trialTemplate"]["spec"]["containers"][0].get("resources") or {}


def test_signature_and_defaults_are_ray_trains() -> None:
    ours = {f.name: f.default for f in dataclasses.fields(ScalingConfig) if f.init}
    theirs = {f.name: f.default for f in dataclasses.fields(RayScalingConfig)}
    assert ours == theirs
    assert kubetune.ScalingConfig is ScalingConfig and tune.ScalingConfig is ScalingConfig


@pytest.mark.parametrize("kwargs", [
    {}, {"use_gpu": True}, {"num_workers": 3, "use_gpu": True},
    {"resources_per_worker": {"CPU": 2}},
    {"use_gpu": True, "resources_per_worker": {"GPU": 2, "CPU": 4, "memory": 1e9}},
    {"use_gpu": True, "resources_per_worker": {"CPU": 2}},
    {"resources_per_worker": {"CPU": 0, "memory": 2e9}},
])
def test_per_worker_resources_resolve_as_in_ray(kwargs: dict[str, Any]) -> None:
    ours, theirs = ScalingConfig(**kwargs), RayScalingConfig(**kwargs)
    assert ours._resources_per_worker_not_none == theirs._resources_per_worker_not_none
    assert ours.num_cpus_per_worker == theirs.num_cpus_per_worker
    assert ours.num_gpus_per_worker == theirs.num_gpus_per_worker


@pytest.mark.parametrize("kwargs", [
    {"use_gpu": False, "resources_per_worker": {"GPU": 1}},
    {"use_gpu": False, "resources_per_worker": {"GPU": 1, "CPU": 2}},
    # Ray drops zero entries before its second check, so GPU: 0 with use_gpu is 1 GPU.
    {"use_gpu": True, "resources_per_worker": {"GPU": 0}},
])
def test_gpu_arguments_are_refused_exactly_where_ray_refuses_them(kwargs: dict[str, Any]) -> None:
    def outcome(cls: Any) -> str:
        try:
            cls(**kwargs)
        except ValueError as e:
            return str(e)
        return "accepted"

    assert outcome(ScalingConfig) == outcome(RayScalingConfig)


def test_fixed_worker_count_with_gpus_is_spec_workers_count_and_a_gpu_per_pod() -> None:
    body = manifest(ScalingConfig(num_workers=3, use_gpu=True))
    assert body["spec"]["workers"] == {"count": 3}
    assert main_resources(body) == {"limits": {"nvidia.com/gpu": "1"}}
    parsed = validate_experiment_spec(body["spec"])
    assert parsed.workers is not None and parsed.workers.count_for({}) == 3


def test_ray_resource_keys_become_requests_and_limits() -> None:
    body = manifest(ScalingConfig(num_workers=2, use_gpu=True,
                                  resources_per_worker={"GPU": 2, "CPU": 4, "memory": 8e9}))
    assert main_resources(body) == {"requests": {"cpu": "4", "memory": "8000000000"},
                                    "limits": {"nvidia.com/gpu": "2"}}


def test_worker_count_domain_in_param_space_is_the_workers_parameter() -> None:
    # The seed: num_workers a job-level hyperparameter, train_loop_config nested.
    workers = tune.choice([2, 4])
    space = {"num_workers": workers,
             "train_loop_config": {"lr": tune.grid_search([1e-3, 3e-4])}}
    body = manifest(ScalingConfig(num_workers=workers), space)
    assert body["spec"]["workers"] == {"parameter": "num_workers"}
    assert body["spec"]["searchSpace"]["num_workers"] == {"choice": [2, 4]}
    parsed = validate_experiment_spec(body["spec"])
    assert parsed.workers is not None and parsed.workers.count_for({"num_workers": 4}) == 4


def test_an_equal_domain_nested_in_param_space_is_found() -> None:
    space = {"lr": tune.uniform(0.1, 1.0), "scaling": {"n": tune.choice([2, 3])}}
    body = manifest(ScalingConfig(num_workers=tune.choice([2, 3])), space)
    assert body["spec"]["workers"] == {"parameter": "scaling.n"}


def test_a_domain_not_in_param_space_is_added_as_scaling_config_num_workers() -> None:
    body = manifest(ScalingConfig(num_workers=tune.choice([2, 3])))
    assert body["spec"]["workers"] == {"parameter": "scaling_config.num_workers"}
    assert body["spec"]["searchSpace"]["scaling_config"] == {
        "space": {"num_workers": {"choice": [2, 3]}}}
    assert body["spec"]["searchSpace"]["lr"] == {"loguniform": [1e-4, 1e-1]}
    parsed = validate_experiment_spec(body["spec"])
    assert parsed.workers is not None
    assert parsed.workers.count_for({"scaling_config": {"num_workers": 3}}) == 3


def test_a_float_worker_domain_is_refused_by_the_api_naming_it() -> None:
    with pytest.raises(Exception, match="num_workers"):
        manifest(ScalingConfig(num_workers=tune.uniform(1, 4)))


def test_ray_defaults_do_not_override_the_templates_resources_but_explicit_ones_must_agree() -> None:
    body = manifest(ScalingConfig(num_workers=2), resources={"cpu": 3})
    assert main_resources(body) == {"limits": {"cpu": "3"}, "requests": {}}
    with pytest.raises(ValueError, match="give it in one place"):
        manifest(ScalingConfig(num_workers=2, resources_per_worker={"CPU": 2}),
                 resources={"cpu": 3})


@pytest.mark.parametrize("kwargs,words", [
    ({"num_workers": 0}, ">= 1"),
    ({"num_workers": 2.5}, "whole number or a tune domain"),
    ({"trainer_resources": {"CPU": 1}}, "no coordinator"),
    ({"placement_strategy": "SPREAD"}, "nodeSelector or affinity"),
    ({"use_gpu": True, "resources_per_worker": {"GPU": 0.5}}, "whole GPUs"),
])
def test_what_a_pod_cannot_express_is_refused_with_the_reason(kwargs: dict[str, Any],
                                                              words: str) -> None:
    with pytest.raises(ValueError, match=words):
        manifest(ScalingConfig(**kwargs))


def test_rays_own_scaling_config_and_domain_are_read_the_same_way() -> None:
    from ray import tune as ray_tune
    from ray.train import ScalingConfig as RayTrainScalingConfig

    # ray.air's ScalingConfig takes a domain for num_workers (Train v2's takes ints only).
    workers = ray_tune.choice([2, 4])
    space = {"num_workers": workers, "train_loop_config": {"lr": ray_tune.grid_search([1e-3])}}
    body = manifest(RayScalingConfig(num_workers=workers, use_gpu=True), space)  # type: ignore[arg-type]
    assert body["spec"]["workers"] == {"parameter": "num_workers"}
    assert body["spec"]["searchSpace"]["num_workers"] == {"choice": [2, 4]}
    assert main_resources(body) == {"limits": {"nvidia.com/gpu": "1"}}
    fixed = manifest(RayTrainScalingConfig(num_workers=3))  # type: ignore[arg-type]
    assert fixed["spec"]["workers"] == {"count": 3}
    assert main_resources(fixed) == {"requests": {"cpu": "1"}}
    with pytest.raises(ValueError, match="whole number or a tune domain"):
        manifest(RayTrainScalingConfig(num_workers=(2, 4)))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"kubetune\.ScalingConfig"):
        manifest({"num_workers": 2})  # type: ignore[arg-type]
