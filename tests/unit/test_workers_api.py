"""spec.workers: a fixed pod count or a search-space parameter, checked against the space."""

from __future__ import annotations

from typing import Any

import pytest

from kubetune.api import SpecError, validate_experiment_spec

pytestmark = pytest.mark.unit


def spec(space: dict[str, Any], workers: dict[str, Any] | None) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "objective": {"metric": "accuracy", "mode": "max"},
        "searchSpace": space,
        "trialTemplate": {"spec": {"containers": [{"name": "trial", "image": "trainer"}]}},
    }
    if workers is not None:
        raw["workers"] = workers
    return raw


def test_no_workers_is_one_pod_per_trial() -> None:
    assert validate_experiment_spec(spec({"lr": {"uniform": [0.1, 1.0]}}, None)).workers is None


def test_fixed_count() -> None:
    parsed = validate_experiment_spec(spec({"lr": {"uniform": [0.1, 1.0]}}, {"count": 3}))
    assert parsed.workers is not None and parsed.workers.multi
    assert parsed.workers.count_for({"lr": 0.5}) == 3
    assert parsed.workers.procs_per_worker == 1 and parsed.workers.master_port == 29500


def test_count_one_is_not_multi() -> None:
    parsed = validate_experiment_spec(spec({"lr": {"uniform": [0.1, 1.0]}}, {"count": 1}))
    assert parsed.workers is not None and not parsed.workers.multi


@pytest.mark.parametrize("space,path", [
    ({"num_workers": {"choice": [2, 4]}}, "num_workers"),
    ({"num_workers": {"grid": [2, 3]}}, "num_workers"),
    ({"num_workers": {"randint": [2, 5]}}, "num_workers"),
    ({"scaling_config": {"space": {"num_workers": {"choice": [2, 4]}}}},
     "scaling_config.num_workers"),
])
def test_parameter_count(space: dict[str, Any], path: str) -> None:
    parsed = validate_experiment_spec(spec(space, {"parameter": path}))
    assert parsed.workers is not None and parsed.workers.multi
    config: dict[str, Any] = {"num_workers": 4}
    if "." in path:
        config = {"scaling_config": {"num_workers": 4}}
    assert parsed.workers.count_for(config) == 4


@pytest.mark.parametrize("space,workers,words", [
    ({"lr": {"uniform": [0.1, 1.0]}}, {"parameter": "num_workers"}, "not a searchSpace parameter"),
    ({"num_workers": {"uniform": [1, 4]}}, {"parameter": "num_workers"}, "uniform domain"),
    ({"num_workers": {"choice": [2, "four"]}}, {"parameter": "num_workers"}, "'four'"),
    ({"num_workers": {"choice": [0, 2]}}, {"parameter": "num_workers"}, "value 0"),
    ({"num_workers": {"randint": [0, 3]}}, {"parameter": "num_workers"}, "outside 1..64"),
    ({"num_workers": {"choice": [2]}}, {"parameter": "num_workers", "count": 2}, "exactly one"),
    ({"num_workers": {"choice": [2]}}, {}, "exactly one"),
    ({"num_workers": {"choice": [2]}}, {"count": 0}, "count"),
])
def test_refused_with_the_reason(space: dict[str, Any], workers: dict[str, Any],
                                 words: str) -> None:
    with pytest.raises(SpecError) as info:
        validate_experiment_spec(spec(space, workers))
    assert words in str(info.value)
