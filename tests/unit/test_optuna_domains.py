"""Ray's domains become the Optuna distributions Ray's own OptunaSearch.convert_search_space gives."""

from __future__ import annotations

from typing import Any

import pytest

from kubetune.search import SearchSpaceError, parse_space
from kubetune.search._optuna_space import convert_space

ray_tune = pytest.importorskip("ray.tune")
ray_optuna = pytest.importorskip("ray.tune.search.optuna")
convert_search_space = ray_optuna.OptunaSearch.convert_search_space

# (our searchSpace entry, the same domain built with Ray's own API)
DOMAINS: dict[str, tuple[dict[str, Any], Any]] = {
    "uniform": ({"uniform": [0.5, 0.99]}, lambda t: t.uniform(0.5, 0.99)),
    "quniform": ({"quniform": [0.0, 1.0, 0.25]}, lambda t: t.quniform(0.0, 1.0, 0.25)),
    "loguniform": ({"loguniform": [1e-5, 1e-1]}, lambda t: t.loguniform(1e-5, 1e-1)),
    "loguniform_base2": ({"loguniform": [1.0, 64.0, 2]}, lambda t: t.loguniform(1.0, 64.0, 2)),
    "qloguniform": ({"qloguniform": [0.0001, 0.1, 0.0001]},
                    lambda t: t.qloguniform(0.0001, 0.1, 0.0001)),
    "randint": ({"randint": [1, 5]}, lambda t: t.randint(1, 5)),
    "qrandint": ({"qrandint": [32, 256, 32]}, lambda t: t.qrandint(32, 256, 32)),
    "qrandint_q1": ({"qrandint": [1, 10, 1]}, lambda t: t.qrandint(1, 10, 1)),
    "lograndint": ({"lograndint": [1, 1024]}, lambda t: t.lograndint(1, 1024)),
    "qlograndint_q1": ({"qlograndint": [1, 64, 1]}, lambda t: t.qlograndint(1, 64, 1)),
    "choice": ({"choice": ["sgd", "adam", 3, 0.5, True, None]},
               lambda t: t.choice(["sgd", "adam", 3, 0.5, True, None])),
}


@pytest.mark.parametrize("name", sorted(DOMAINS))
def test_domain_maps_to_the_distribution_ray_gives(name: str) -> None:
    ours, theirs = DOMAINS[name]
    expected = convert_search_space({name: theirs(ray_tune)})
    converted = convert_space(parse_space({name: ours}), "tpe")
    assert converted.distributions == expected


def test_whole_space_with_nesting_and_constants_maps_as_ray_maps_it() -> None:
    ours = {name: entry for name, (entry, _) in DOMAINS.items()}
    ours["nested"] = {"space": {"lr": {"loguniform": [1e-4, 1e-2]},
                                "deeper": {"space": {"k": {"randint": [0, 3]}}},
                                "fixed": {"value": 7}}}
    ours["constant"] = {"value": "kept"}
    theirs = {name: build(ray_tune) for name, (_, build) in DOMAINS.items()}
    theirs["nested"] = {"lr": ray_tune.loguniform(1e-4, 1e-2),
                        "deeper": {"k": ray_tune.randint(0, 3)}, "fixed": 7}
    theirs["constant"] = "kept"
    converted = convert_space(parse_space(ours), "tpe")
    expected = convert_search_space(theirs)
    assert converted.distributions == expected
    assert list(converted.distributions) == list(expected)  # the same names, in the same order
    assert converted.constants == {("nested", "fixed"): 7, ("constant",): "kept"}


def test_qloguniform_keeps_the_step_ray_drops() -> None:
    converted = convert_space(parse_space({"wd": {"qloguniform": [0.001, 0.1, 0.001]}}), "tpe")
    parameter = converted.parameters["wd"]
    assert parameter.log_step == 0.001
    assert parameter.to_config(0.0123456) == 0.012


REFUSED: dict[str, tuple[dict[str, Any], Any]] = {
    "randn": ({"randn": [0.0, 1.0]}, lambda t: t.randn(0.0, 1.0)),
    "qrandn": ({"qrandn": [0.0, 1.0, 0.1]}, lambda t: t.qrandn(0.0, 1.0, 0.1)),
    "grid": ({"grid": [1, 2, 3]}, lambda t: t.grid_search([1, 2, 3])),
    "qlograndint": ({"qlograndint": [2, 64, 2]}, lambda t: t.qlograndint(2, 64, 2)),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_what_ray_cannot_convert_is_refused_with_the_reason(name: str) -> None:
    ours, theirs = REFUSED[name]
    with pytest.raises(ValueError):
        convert_search_space({name: theirs(ray_tune)})
    with pytest.raises(SearchSpaceError, match=rf"{name}.*(use|searchAlgorithm)") as err:
        convert_space(parse_space({name: ours}), "tpe")
    assert err.value.path == name
