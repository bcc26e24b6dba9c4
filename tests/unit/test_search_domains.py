"""Search-space domains: Ray Tune's ranges, quantization and distributions, and parse errors."""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubetune.search import (
    Choice,
    Constant,
    Grid,
    LogRandInt,
    LogUniform,
    Normal,
    QRandInt,
    Quantized,
    RandInt,
    SearchSpace,
    SearchSpaceError,
    Uniform,
    parse_space,
)

DRAWS = 4000


def draws(raw: dict[str, Any], n: int = DRAWS) -> list[Any]:
    parameter = parse_space({"x": raw}).parameters["x"]
    assert not isinstance(parameter, (SearchSpace, Grid))
    return [parameter.sample(random.Random(seed)) for seed in range(n)]


def is_multiple(value: float, q: float) -> bool:
    return math.isclose(value / q, round(value / q), abs_tol=1e-9)


def test_uniform_stays_in_low_high_and_spreads_evenly() -> None:
    values = draws({"uniform": [2, 5]})
    assert all(2 <= v < 5 for v in values)
    assert all(isinstance(v, float) for v in values)
    assert statistics.mean(values) == pytest.approx(3.5, abs=0.05)
    assert min(values) < 2.05 and max(values) > 4.95


def test_quniform_gives_multiples_of_q_including_high() -> None:
    values = draws({"quniform": [0, 1, 0.1]})
    assert all(0 <= v <= 1 and is_multiple(v, 0.1) for v in values)
    assert set(values) == {round(0.1 * k, 1) for k in range(11)}


def test_quantized_floats_carry_no_binary_noise() -> None:
    values = draws({"quniform": [0, 1, 0.1]}, 500)
    assert 0.3 in values and all(len(repr(v)) <= 4 for v in values)


def test_loguniform_median_is_near_the_geometric_mean() -> None:
    values = draws({"loguniform": [1e-5, 1e-1]})
    assert all(1e-5 <= v <= 1e-1 for v in values)
    assert statistics.median(values) == pytest.approx(1e-3, rel=0.15)
    per_decade = Counter(math.floor(math.log10(v)) for v in values)
    assert set(per_decade) == {-5, -4, -3, -2}
    assert max(per_decade.values()) - min(per_decade.values()) < DRAWS * 0.06


def test_loguniform_base_does_not_change_the_draw() -> None:
    assert draws({"loguniform": [1e-4, 1, 2]}, 50) == draws({"loguniform": [1e-4, 1]}, 50)


def test_qloguniform_gives_multiples_of_q_within_bounds() -> None:
    values = draws({"qloguniform": [0.001, 1, 0.001]})
    assert all(0.001 <= v <= 1 and is_multiple(v, 0.001) for v in values)
    assert statistics.median(values) == pytest.approx(math.sqrt(0.001), rel=0.2)


def test_randn_defaults_to_standard_normal() -> None:
    values = draws({"randn": []})
    assert statistics.mean(values) == pytest.approx(0, abs=0.06)
    assert statistics.stdev(values) == pytest.approx(1, abs=0.05)


def test_randn_uses_mean_and_sd() -> None:
    values = draws({"randn": [10, 2]})
    assert statistics.mean(values) == pytest.approx(10, abs=0.12)
    assert statistics.stdev(values) == pytest.approx(2, abs=0.1)
    assert draws({"randn": [3]}, 1)[0] == pytest.approx(draws({"randn": []}, 1)[0] + 3)


def test_qrandn_rounds_normal_draws_to_q() -> None:
    values = draws({"qrandn": [0, 3, 0.5]})
    assert all(is_multiple(v, 0.5) for v in values)
    assert statistics.stdev(values) == pytest.approx(3, abs=0.15)


def test_randint_excludes_high_as_in_ray() -> None:
    values = draws({"randint": [1, 4]})
    assert set(values) == {1, 2, 3}
    assert all(type(v) is int for v in values)
    assert max(Counter(values).values()) - min(Counter(values).values()) < DRAWS * 0.05


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"qrandint": [1, 10, 3]}, {3, 6, 9}),
        ({"qrandint": [0, 10, 5]}, {0, 5, 10}),
        ({"qrandint": [2, 11, 2]}, {2, 4, 6, 8, 10}),
        ({"qrandint": [1, 4]}, {1, 2, 3}),
        ({"qrandint": [1, 4, 1]}, {1, 2, 3}),
        ({"qlograndint": [1, 20, 4]}, {4, 8, 12, 16, 20}),
        ({"qlograndint": [1, 5, 1]}, {1, 2, 3, 4}),
        ({"lograndint": [1, 5]}, {1, 2, 3, 4}),
    ],
)
def test_integer_domains_draw_ray_support(raw: dict[str, Any], expected: set[int]) -> None:
    values = draws(raw)
    assert set(values) == expected
    assert all(type(v) is int for v in values)


def test_qrandint_draws_multiples_of_q_uniformly() -> None:
    counts = Counter(draws({"qrandint": [0, 10, 5]}))
    assert max(counts.values()) - min(counts.values()) < DRAWS * 0.05


def test_lograndint_median_is_near_the_geometric_mean() -> None:
    values = draws({"lograndint": [1, 1025]})
    assert all(1 <= v < 1025 for v in values)
    assert statistics.median(values) == pytest.approx(32, rel=0.2)


def test_choice_draws_every_value_about_equally_and_copies_it() -> None:
    options = ["sgd", {"name": "adam"}, None, 3]
    values = draws({"choice": options})
    counts = Counter(repr(v) for v in values)
    assert len(counts) == 4
    assert max(counts.values()) - min(counts.values()) < DRAWS * 0.06
    picked = next(v for v in values if isinstance(v, dict))
    picked["name"] = "changed"
    assert options[1] == {"name": "adam"}


def test_constant_is_returned_unchanged_and_copied() -> None:
    parameter = parse_space({"x": {"value": {"layers": [1, 2]}}}).parameters["x"]
    assert isinstance(parameter, Constant)
    first = parameter.sample(random.Random(0))
    first["layers"].append(3)
    assert parameter.sample(random.Random(1)) == {"layers": [1, 2]}


def test_parse_builds_each_domain() -> None:
    space = parse_space(
        {
            "a": {"uniform": [0, 1]},
            "b": {"quniform": [0, 1, 0.5]},
            "c": {"loguniform": [1e-3, 1]},
            "d": {"qloguniform": [0.5, 8, 0.5]},
            "e": {"randn": [1, 2]},
            "f": {"qrandn": [0, 1, 0.5]},
            "g": {"randint": [0, 3]},
            "h": {"qrandint": [0, 9, 3]},
            "i": {"lograndint": [1, 9]},
            "j": {"qlograndint": [2, 16, 2]},
            "k": {"choice": [1, 2]},
            "l": {"grid": [1, 2]},
            "m": {"value": 5},
            "n": {"space": {"o": {"uniform": [0, 1]}}},
        }
    )
    p = space.parameters
    assert p["a"] == Uniform(0, 1)
    assert p["b"] == Quantized(Uniform(0, 1), 0.5)
    assert p["c"] == LogUniform(1e-3, 1)
    assert p["d"] == Quantized(LogUniform(0.5, 8), 0.5)
    assert p["e"] == Normal(1, 2)
    assert p["f"] == Quantized(Normal(0, 1), 0.5)
    assert p["g"] == RandInt(0, 3)
    assert p["h"] == QRandInt(0, 9, 3)
    assert p["i"] == LogRandInt(1, 9)
    assert p["j"] == QRandInt(2, 16, 2, log=True)
    assert p["k"] == Choice((1, 2))
    assert p["l"] == Grid((1, 2))
    assert p["m"] == Constant(5)
    assert p["n"] == SearchSpace({"o": Uniform(0, 1)})


def test_walk_lists_leaves_with_paths_and_grids_in_ray_order() -> None:
    space = parse_space(
        {
            "z": {"grid": [1]},
            "opt": {"space": {"b": {"grid": [2]}, "a": {"uniform": [0, 1]}}},
            "lr": {"uniform": [0, 1]},
        }
    )
    assert [path for path, _ in space.walk()] == [("z",), ("opt", "b"), ("opt", "a"), ("lr",)]
    assert [path for path, _ in space.grid_parameters()] == [("opt", "b"), ("z",)]


@pytest.mark.parametrize(
    ("raw", "path", "message"),
    [
        ({"lr": {"uniform": [1, 0]}}, "lr", "uniform needs low < high, got [1, 0]"),
        (
            {"optimizer": {"space": {"momentum": {"uniform": [1, 0]}}}},
            "optimizer.momentum",
            "low < high, got [1, 0]",
        ),
        ({"lr": {"uniformm": [0, 1]}}, "lr", "unknown domain 'uniformm'"),
        ({"lr": {"uniformm": [0, 1]}}, "lr", "expected one of uniform, quniform"),
        ({"lr": {"uniform": ["a", 1]}}, "lr", "uniform[0]: must be a number, got 'a'"),
        ({"a": {"space": {"b": {"space": {"c": {"choice": []}}}}}}, "a.b.c", "choice needs"),
        ({"a": {"space": {}}}, "a", "space: needs at least one parameter"),
        ({}, "", "needs at least one parameter"),
    ],
)
def test_parse_errors_name_the_parameter_path(raw: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(SearchSpaceError) as caught:
        parse_space(raw)
    assert isinstance(caught.value, ValueError)
    assert caught.value.path == path
    assert message in caught.value.message
    assert str(caught.value) == (
        f"{path}: {caught.value.message}" if path else caught.value.message
    )


bounds = st.tuples(
    st.floats(-1e6, 1e6, allow_nan=False), st.floats(1e-3, 1e6, allow_nan=False)
).map(lambda t: (t[0], t[0] + t[1]))


@given(bounds, st.integers(0, 2**32))
def test_uniform_draws_stay_within_any_bounds(low_high: tuple[float, float], seed: int) -> None:
    low, high = low_high
    assert low <= Uniform(low, high).sample(random.Random(seed)) <= high


@given(
    st.floats(1e-8, 1e3).flatmap(
        lambda low: st.tuples(st.just(low), st.floats(low * 1.001, low * 1e6))
    ),
    st.integers(0, 2**32),
)
def test_loguniform_draws_stay_within_any_positive_bounds(
    low_high: tuple[float, float], seed: int
) -> None:
    low, high = low_high
    assert low <= LogUniform(low, high).sample(random.Random(seed)) <= high


@given(
    st.integers(-50, 50),
    st.integers(1, 60),
    st.integers(1, 7),
    st.booleans(),
    st.integers(0, 2**32),
)
def test_quantized_integers_are_multiples_of_q_within_bounds(
    low: int, width: int, q: int, log: bool, seed: int
) -> None:
    if log:
        low = abs(low) + 1
    high = low + width
    raw = {"qlograndint" if log else "qrandint": [low, high, q]}
    try:
        parameter = parse_space({"x": raw}).parameters["x"]
    except SearchSpaceError:
        return  # no multiple of q between low and high: rejected, as Ray would fail
    value = parameter.sample(random.Random(seed))  # type: ignore[union-attr]
    assert value % q == 0
    assert low <= value <= high
    if q == 1:
        assert value < high


def test_integer_domains_match_ray_support() -> None:
    tune = pytest.importorskip("ray.tune")
    cases: list[tuple[dict[str, Any], Any]] = [
        ({"randint": [1, 6]}, tune.randint(1, 6)),
        ({"qrandint": [1, 10, 3]}, tune.qrandint(1, 10, 3)),
        ({"qrandint": [1, 5]}, tune.qrandint(1, 5)),
        ({"lograndint": [1, 6]}, tune.lograndint(1, 6)),
        ({"qlograndint": [2, 17, 4]}, tune.qlograndint(2, 17, 4)),
        ({"qlograndint": [1, 6, 1]}, tune.qlograndint(1, 6, 1)),
    ]
    for raw, ray_domain in cases:
        ray_values = set(ray_domain.sample(size=3000, random_state=0))
        assert set(draws(raw, 3000)) == ray_values, raw


def test_ray_rejects_the_quantized_bounds_kubetune_rejects() -> None:
    tune = pytest.importorskip("ray.tune")
    with pytest.raises(ValueError):
        tune.quniform(0.05, 1, 0.1)
    with pytest.raises(SearchSpaceError, match="not a multiple of q"):
        parse_space({"x": {"quniform": [0.05, 1, 0.1]}})
