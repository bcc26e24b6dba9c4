"""BasicVariantSampler: Ray's grid order and counts, configs as a pure function of (seed, index)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubetune.api import validate_experiment_spec
from kubetune.search import BasicVariantSampler, SearchSpace, flatten_params, parse_space

SPACE = {
    "lr": {"loguniform": [1e-5, 1e-1]},
    "hidden": {"choice": [64, 128, 256]},
    "momentum": {"uniform": [0.5, 0.99]},
    "layers": {"randint": [1, 4]},
    "batch_size": {"grid": [32, 64]},
    "opt": {
        "space": {"name": {"choice": ["sgd", "adam"]}, "wd": {"qloguniform": [0.0001, 0.1, 0.0001]}}
    },
    "noise": {"qrandn": [0, 1, 0.01]},
}

GRIDS = {
    "b": {"grid": [1, 2]},
    "a": {"grid": ["x", "y", "z"]},
    "n": {"space": {"c": {"grid": [True, False]}}},
    "r": {"uniform": [0, 1]},
}


def sampler(
    space: dict[str, Any] = SPACE, seed: int = 7, num_samples: int = 3
) -> BasicVariantSampler:
    return BasicVariantSampler(parse_space(space), seed=seed, num_samples=num_samples)


def test_configs_are_pinned_so_upgrades_keep_running_experiments_stable() -> None:
    # Changing the draw scheme would give trials of a running experiment new configs
    # after an operator upgrade; these values must only change deliberately.
    smp = sampler()
    assert smp.config(0) == {
        "lr": 0.004363619303325683,
        "hidden": 128,
        "momentum": 0.7482360346277935,
        "layers": 3,
        "batch_size": 32,
        "opt": {"name": "adam", "wd": 0.0381},
        "noise": -1.0,
    }
    assert smp.config(1)["batch_size"] == 64
    assert smp.config(1)["lr"] == 0.00012170517176861927


def test_total_trials_is_num_samples_times_grid_points() -> None:
    assert sampler(GRIDS, num_samples=1).total_trials == 12
    assert sampler(GRIDS, num_samples=4).total_trials == 48
    assert sampler({"lr": {"uniform": [0, 1]}}, num_samples=5).total_trials == 5
    assert sampler(GRIDS).grid_size == 12


def test_grid_points_follow_ray_order_first_sorted_path_fastest() -> None:
    smp = sampler(GRIDS, num_samples=1)
    points = [(c["a"], c["b"], c["n"]["c"]) for c in map(smp.config, range(smp.total_trials))]
    assert points == [
        ("x", 1, True), ("y", 1, True), ("z", 1, True),
        ("x", 2, True), ("y", 2, True), ("z", 2, True),
        ("x", 1, False), ("y", 1, False), ("z", 1, False),
        ("x", 2, False), ("y", 2, False), ("z", 2, False),
    ]  # fmt: skip


def test_grid_order_matches_ray_basic_variant_generator() -> None:
    pytest.importorskip("ray.tune")
    from ray import tune
    from ray.tune.search.variant_generator import generate_variants

    ray_space = {
        "b": tune.grid_search([1, 2]),
        "a": tune.grid_search(["x", "y", "z"]),
        "n": {"c": tune.grid_search([True, False])},
        "m": {"d": tune.grid_search([0.1, 0.2])},
    }
    ours = {**GRIDS, "m": {"space": {"d": {"grid": [0.1, 0.2]}}}}
    ray_configs = [config for _, config in generate_variants(ray_space)]
    smp = sampler(ours, num_samples=1)
    assert [
        {k: v for k, v in smp.config(i).items() if k != "r"} for i in range(smp.total_trials)
    ] == ray_configs


def test_each_sample_repeats_the_whole_grid_with_fresh_draws() -> None:
    smp = sampler(GRIDS, num_samples=3)
    first, again = smp.config(5), smp.config(5 + smp.grid_size)
    assert (first["a"], first["b"], first["n"]) == (again["a"], again["b"], again["n"])
    assert first["r"] != again["r"]


def test_same_seed_and_index_give_the_same_config() -> None:
    assert [sampler().config(i) for i in range(6)] == [sampler().config(i) for i in range(6)]


def test_different_indices_and_seeds_give_different_configs() -> None:
    smp = sampler()
    lrs = {smp.config(i)["lr"] for i in range(smp.total_trials)}
    assert len(lrs) == smp.total_trials
    assert sampler(seed=8).config(0)["lr"] != sampler(seed=7).config(0)["lr"]


def test_config_does_not_depend_on_call_order() -> None:
    smp = sampler()
    forwards = [smp.config(i) for i in range(6)]
    backwards = [sampler().config(i) for i in reversed(range(6))]
    assert forwards == list(reversed(backwards))


def test_configs_are_the_same_in_another_process_with_another_hash_seed() -> None:
    code = (
        "import json; from kubetune.search import BasicVariantSampler, parse_space; "
        f"s = BasicVariantSampler(parse_space({SPACE!r}), seed=7, num_samples=3); "
        "print(json.dumps([s.config(i) for i in range(6)]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == [sampler().config(i) for i in range(6)]


def test_adding_a_parameter_leaves_the_others_draws_unchanged() -> None:
    before = sampler({"lr": {"uniform": [0, 1]}}).config(2)
    after = sampler({"extra": {"randn": []}, "lr": {"uniform": [0, 1]}}).config(2)
    assert after["lr"] == before["lr"]


def test_nested_spaces_give_nested_configs() -> None:
    config = sampler().config(0)
    assert set(config["opt"]) == {"name", "wd"}
    assert config["opt"]["name"] in ("sgd", "adam")
    assert 0.0001 <= config["opt"]["wd"] <= 0.1


def test_config_keeps_the_search_space_order() -> None:
    assert list(sampler().config(0)) == list(SPACE)


@pytest.mark.parametrize("index", [-1, 6, 100])
def test_index_outside_the_trials_raises_index_error(index: int) -> None:
    smp = sampler(num_samples=3)
    assert smp.total_trials == 6
    smp.config(5)
    with pytest.raises(IndexError, match="trial index"):
        smp.config(index)


def test_num_samples_below_one_is_rejected() -> None:
    with pytest.raises(ValueError, match="num_samples"):
        BasicVariantSampler(SearchSpace({}), seed=0, num_samples=0)


def test_sampler_from_spec_uses_its_seed_and_num_samples() -> None:
    spec = validate_experiment_spec(
        {
            "objective": {"metric": "loss", "mode": "min"},
            "searchSpace": SPACE,
            "searchAlgorithm": {"seed": 7},
            "numSamples": 3,
            "trialTemplate": {"spec": {"containers": [{"name": "t"}]}},
        }
    )
    smp = BasicVariantSampler.from_spec(spec)
    assert smp.total_trials == 6
    assert smp.config(4) == sampler().config(4)


@given(st.integers(0, 2**31), st.integers(0, 11))
def test_every_config_holds_valid_values(seed: int, index: int) -> None:
    config = sampler(seed=seed, num_samples=6).config(index)
    assert 1e-5 <= config["lr"] <= 1e-1
    assert config["hidden"] in (64, 128, 256)
    assert 0.5 <= config["momentum"] < 0.99
    assert config["layers"] in (1, 2, 3)
    assert config["batch_size"] == (32, 64)[index % 2]


def test_flatten_params_joins_nested_keys_in_upper_case() -> None:
    assert flatten_params({"optimizer": {"momentum": 0.9, "name": "sgd"}, "lr": 0.001}) == {
        "OPTIMIZER_MOMENTUM": "0.9",
        "OPTIMIZER_NAME": "sgd",
        "LR": "0.001",
    }


def test_flatten_params_replaces_other_characters_with_underscores() -> None:
    assert flatten_params({"hidden-size": 64, "a": {"b.c": 1}}) == {
        "HIDDEN_SIZE": "64",
        "A_B_C": "1",
    }


def test_flatten_params_writes_non_strings_as_json() -> None:
    flat = flatten_params(
        {"flag": True, "none": None, "layers": [64, 32], "lr": 1e-05, "n": 3, "s": "adam"}
    )
    assert flat == {
        "FLAG": "true",
        "NONE": "null",
        "LAYERS": "[64,32]",
        "LR": "1e-05",
        "N": "3",
        "S": "adam",
    }


def test_flatten_params_refuses_two_keys_with_one_name() -> None:
    with pytest.raises(ValueError, match="A_B"):
        flatten_params({"a_b": 1, "a": {"b": 2}})
