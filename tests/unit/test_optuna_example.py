"""examples/mnist-tpe-asha.yaml is a valid TPE experiment whose configs the operator can ask."""

from __future__ import annotations

from pathlib import Path

import yaml

from kubetune.api import validate_experiment_spec
from kubetune.controller.planner import ExperimentView, plan_tick

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mnist-tpe-asha.yaml"


def test_the_tpe_example_is_valid_and_plans_its_first_trials() -> None:
    body = yaml.safe_load(EXAMPLE.read_text())
    spec = validate_experiment_spec(body["spec"])
    assert spec.search_algorithm.type == "tpe" and spec.scheduler.type == "asha"
    exp = ExperimentView(name=body["metadata"]["name"], namespace="default", generation=1,
                         spec=spec, status={})
    plan = plan_tick(exp, [], [], None, "2026-01-01T00:00:00Z")
    assert len(plan.new_trials) == spec.max_concurrent_trials
    for new in plan.new_trials:
        assert set(new.params) == set(body["spec"]["searchSpace"])
        assert new.params["epochs"] == 9
