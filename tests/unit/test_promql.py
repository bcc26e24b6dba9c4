"""Reading a Prometheus instant vector into per-trial metrics."""

from __future__ import annotations

import math

from kubetune.controller.prometheus import experiment_selector, parse_snapshot


def sample(name: str, value: str, **labels: str) -> dict:  # type: ignore[type-arg]
    return {"metric": {"__name__": name, "trial": labels.pop("trial", "x-0"), **labels},
            "value": [0, value]}


def test_one_selector_covers_every_trial_of_an_experiment():
    sel = experiment_selector("ml", "mnist")
    assert 'namespace="ml"' in sel and 'experiment="mnist"' in sel and "trial=" not in sel


def test_rung_needs_both_its_value_and_its_step():
    result = [
        sample("kubetune_trial_step", "5"),
        sample("kubetune_trial_metric", "0.7", metric="accuracy"),
        sample("kubetune_trial_rung_value", "0.4", metric="accuracy", milestone="1"),
        sample("kubetune_trial_rung_step", "2", milestone="1"),
        sample("kubetune_trial_rung_value", "0.6", metric="accuracy", milestone="3"),
        sample("kubetune_trial_rung_value", "9", metric="loss", milestone="1"),
        sample("kubetune_trial_finished", "0"),
        sample("kubetune_trial_step", "1", trial="x-1"),
    ]
    trials = parse_snapshot(result, "accuracy")
    assert trials["x-0"].step == 5
    assert trials["x-0"].metrics == {"accuracy": 0.7}
    assert trials["x-0"].rungs == {1: (2, 0.4)}, "milestone 3 lacks its step: wait for it"
    assert trials["x-1"].step == 1 and not trials["x-0"].finished


def test_non_finite_values_are_kept_as_such():
    result = [sample("kubetune_trial_metric", "NaN", metric="accuracy"),
              sample("kubetune_trial_rung_value", "-Inf", metric="accuracy", milestone="1"),
              sample("kubetune_trial_rung_step", "1", milestone="1")]
    t = parse_snapshot(result, "accuracy")["x-0"]
    assert math.isnan(t.metrics["accuracy"]) and t.rungs[1] == (1, -math.inf)


def test_a_trial_is_read_from_its_latest_attempt_and_says_which():
    result = [sample("kubetune_trial_step", "6", attempt="1"),
              sample("kubetune_trial_metric", "0.2", metric="accuracy", attempt="1"),
              sample("kubetune_trial_step", "5", attempt="2"),
              sample("kubetune_trial_metric", "0.9", metric="accuracy", attempt="2"),
              sample("kubetune_trial_step", "3", trial="x-1", attempt="1"),
              sample("kubetune_trial_step", "4", trial="x-2")]
    trials = parse_snapshot(result, "accuracy")
    assert (trials["x-0"].attempt, trials["x-0"].step, trials["x-0"].metrics) == (2, 5, {"accuracy": 0.9})
    assert trials["x-1"].attempt == 1
    assert trials["x-2"].attempt is None, "no attempt label: the attempt is unknown"
