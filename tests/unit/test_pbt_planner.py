"""PBT's spec (Ray's arguments and defaults) and its state persisted on the TuneTrials.

The restart test runs a population twice: once with one scheduler throughout, once
rebuilding the scheduler from the spec and the JSON of every member's persisted
status before each tick, as a restarted operator would. The decisions must match.
"""

from __future__ import annotations

import inspect
import json
import random
from typing import Any

import pytest
from pydantic import ValidationError
from ray.tune.schedulers import PopulationBasedTraining as RayPBT

from kubetune.api.pbt import PBTMemberStatus, PopulationBasedTrainingSpec
from kubetune.controller.planner import Plan, TrialMetrics, plan_tick
from kubetune.controller.planner.pbt import (
    Observation,
    build_pbt,
    config_history,
    member_status,
    restore_member,
    run_checks,
)
from tests.unit.test_planner_pods import NOW, experiment, pod, running
from tests.unit.test_planner_pods import trial as trial_view

SPEC: dict[str, Any] = {
    "type": "pbt",
    "perturbationInterval": 2,
    "hyperparamMutations": {"lr": {"loguniform": [1.0e-4, 1.0e-1]}, "batch": {"randint": [8, 64]},
                            "opt": ["sgd", "adam", "rmsprop"]},
    "seed": 5,
}


def _spec(**over: Any) -> PopulationBasedTrainingSpec:
    return PopulationBasedTrainingSpec.model_validate({**SPEC, **over})


def test_defaults_are_rays_except_the_time_attribute() -> None:
    ray = inspect.signature(RayPBT).parameters
    spec = PopulationBasedTrainingSpec.model_validate(
        {"type": "pbt", "hyperparamMutations": {"lr": {"uniform": [0, 1]}}})
    assert spec.perturbation_interval == ray["perturbation_interval"].default == 60.0
    assert spec.burn_in_period == ray["burn_in_period"].default == 0.0
    assert spec.quantile_fraction == ray["quantile_fraction"].default == 0.25
    assert spec.resample_probability == ray["resample_probability"].default == 0.25
    assert tuple(spec.perturbation_factors) == ray["perturbation_factors"].default == (1.2, 0.8)
    assert ray["time_attr"].default == "time_total_s" and spec.time_attr == "training_iteration"


@pytest.mark.parametrize(
    ("mutations", "message"),
    [
        ({"bs": {"grid": [32, 64]}}, "a grid entry cannot be resampled"),
        ({"bs": {"value": 32}}, "a constant cannot be mutated"),
        ({"opt": {"choice": ["sgd", "adam"]}}, "use a plain list of the values"),
        ({"bs": []}, "the list of values is empty"),
        ({}, "at least 1 item"),
    ],
)
def test_mutations_that_cannot_mutate_are_refused_with_the_fix(
        mutations: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _spec(hyperparamMutations=mutations)


@pytest.mark.parametrize(("field", "value"), [("quantileFraction", 0.6),
                                              ("perturbationInterval", 0),
                                              ("resampleProbability", 1.5),
                                              ("perturbationFactors", [])])
def test_arguments_out_of_rays_range_are_refused(field: str, value: Any) -> None:
    with pytest.raises(ValidationError, match=field):
        _spec(**{field: value})


def test_domains_become_samplers_with_rays_semantics() -> None:
    pbt = build_pbt(_spec(resampleProbability=1.0), metric="acc", mode="max")
    rng = random.Random(0)
    for _ in range(200):
        lr = pbt.hyperparam_mutations["lr"].sample(rng)  # type: ignore[union-attr]
        batch = pbt.hyperparam_mutations["batch"].sample(rng)  # type: ignore[union-attr]
        assert 1e-4 <= lr <= 1e-1 and isinstance(batch, int) and 8 <= batch < 64
    assert pbt.hyperparam_mutations["opt"] == ["sgd", "adam", "rmsprop"]
    assert pbt.perturbation_interval == 2 and pbt.seed == 5


def _ticks(seed: int, n: int = 8, ticks: int = 40) -> list[list[Observation]]:
    """What each tick reads: some trials advanced a step or two, in a shuffled order."""
    rng = random.Random(seed)
    steps = [0] * n
    out = []
    for _ in range(ticks):
        seen = []
        for i in rng.sample(range(n), rng.randint(1, n)):
            steps[i] += rng.choice([1, 1, 2])
            seen.append(Observation(i, f"t-{i}", steps[i], round(rng.uniform(0, 10), 1)))
        out.append(seen)
    return out


def _run(mode: str, seed: int, *, restart_every_tick: bool) -> list[Any]:
    spec = _spec()
    trials = [f"t-{i}" for i in range(8)]
    pbt = build_pbt(spec, metric="acc", mode=mode)
    for i, trial in enumerate(trials):
        pbt.add_trial(trial, {"lr": 0.01, "batch": 16 + i, "opt": "adam"})
    decisions: list[list[Any]] = []
    for seen in _ticks(seed):
        if restart_every_tick:
            persisted = {t: json.loads(json.dumps(member_status(pbt, t).model_dump(
                by_alias=True, mode="json"))) for t in trials}
            pbt = build_pbt(spec, metric="acc", mode=mode)
            for trial in trials:
                restore_member(pbt, trial, PBTMemberStatus.model_validate(persisted[trial]),
                               finished=False)
        shuffled = list(seen)
        random.Random(len(decisions)).shuffle(shuffled)
        decisions.append(run_checks(pbt, shuffled))
    return decisions


@pytest.mark.parametrize("mode", ["min", "max"])
def test_a_scheduler_rebuilt_from_the_persisted_statuses_every_tick_decides_the_same(
        mode: str) -> None:
    for seed in range(10):
        reference = _run(mode, seed, restart_every_tick=False)
        assert sum(c.exploit is not None for tick in reference for c in tick) > 0
        assert _run(mode, seed, restart_every_tick=True) == reference


def test_checks_within_a_tick_go_in_step_then_trial_order() -> None:
    spec = _spec(hyperparamMutations={"opt": ["sgd", "adam"]})
    pbt = build_pbt(spec, metric="acc", mode="max")
    for i in range(4):
        pbt.add_trial(f"t-{i}", {"opt": "sgd"})
    seen = [Observation(3, "t-3", 4, 0.1), Observation(0, "t-0", 4, 0.9),
            Observation(2, "t-2", 2, 0.5), Observation(1, "t-1", 2, 0.7),
            Observation(2, "t-2", 4, 0.5), Observation(1, "t-1", 4, 0.7),
            Observation(0, "t-0", 2, 0.9), Observation(3, "t-3", 2, 0.1)]
    checks = run_checks(pbt, seen)
    assert [(c.trial, c.time) for c in checks] == [
        (f"t-{i}", step) for step in (2, 4) for i in range(4)]
    # At step 4 t-0 is checked first, on top with a checkpoint: t-3, last, clones it.
    assert checks[4].quantile == "upper" and checks[4].exploit is None
    assert checks[-1].exploit is not None and checks[-1].exploit.donor == "t-0"


def test_config_history_lists_each_exploit_with_its_donor() -> None:
    pbt = build_pbt(_spec(hyperparamMutations={"opt": ["sgd", "adam"]}), metric="acc", mode="max")
    for i in range(2):
        pbt.add_trial(f"t-{i}", {"opt": "sgd" if i else "adam"})
    run_checks(pbt, [Observation(i, f"t-{i}", step, 1.0 - i) for step in (2, 4) for i in (0, 1)])
    status = member_status(pbt, "t-1").model_dump(by_alias=True, mode="json")
    assert status["exploits"][0]["donor"] == "t-0" and status["exploits"][0]["donorStep"] == 4
    history = config_history(status)
    assert history[0] == (0.0, "", {"opt": "sgd"})
    assert history[1][:2] == (4, "t-0") and history[1][2] == status["config"]
    assert config_history(member_status(pbt, "t-0").model_dump(by_alias=True)) == [
        (0.0, "", {"opt": "adam"})]


def test_a_trial_that_exploits_takes_no_later_observation_of_the_tick() -> None:
    pbt = build_pbt(_spec(hyperparamMutations={"opt": ["sgd", "adam"]}), metric="acc", mode="max")
    for i in range(2):
        pbt.add_trial(f"t-{i}", {"opt": "sgd"})
    seen = [Observation(i, f"t-{i}", step, 1.0 - i) for step in (2, 4) for i in (0, 1)]
    seen.append(Observation(1, "t-1", 6, 9.0))  # made before the exploit at 4 was acted on
    checks = run_checks(pbt, seen)
    assert checks[-1].trial == "t-1" and checks[-1].exploit is not None
    assert pbt.state("t-1").last_score == 0.0


def _population_ticks(label_of_replaced: int) -> list[Plan]:
    """Four trials checked at steps 2 and 4 (exp-0 last, so it exploits at 4), then a tick
    at step 6 in which exp-0's new attempt runs but Prometheus holds the series of attempt
    `label_of_replaced`. Statuses carry over from tick to tick as the operator persists them."""
    exp = experiment(scheduler={**SPEC, "hyperparamMutations": {"lr": {"loguniform": [1e-4, 1e-1]}}},
                     numSamples=4, maxConcurrentTrials=4,
                     storage={"persistentVolumeClaim": {"claimName": "ckpt"}})
    statuses: list[dict[str, Any]] = [{} for _ in range(4)]
    plans = []
    for step, attempts, labels in ((2, [1] * 4, [1] * 4), (4, [1] * 4, [1] * 4),
                                   (6, [2, 1, 1, 1], [label_of_replaced, 1, 1, 1])):
        snap = {f"exp-{i}": TrialMetrics(step=step, metrics={"accuracy": v * step},
                                         rungs={step: (step, v * step)}, attempt=labels[i])
                for i, v in enumerate((0.1, 0.5, 0.6, 0.9))}
        plan = plan_tick(exp, [trial_view(i, **statuses[i]) for i in range(4)],
                         [pod(i, attempts[i], statuses=[running()]) for i in range(4)], snap, NOW)
        for i in range(4):
            if f"exp-{i}" in plan.trial_status:
                statuses[i].update(plan.trial_status[f"exp-{i}"].merge_patch())
        statuses[0]["state"] = "Running"  # the new attempt's pod runs by the next tick
        plans.append(plan)
    return plans


def _exploits(plan: Plan, name: str) -> int:
    patch = plan.trial_status[name].merge_patch() if name in plan.trial_status else {}
    return len((patch.get("pbt") or {}).get("exploits") or [])


def test_a_new_attempt_is_not_checked_on_the_series_of_the_attempt_it_replaced() -> None:
    # The replaced attempt runs on through its grace period and may reach the next check
    # step before Prometheus has scraped the new one: that value is of the weights given up.
    first, second, stale = _population_ticks(label_of_replaced=1)
    assert _exploits(first, "exp-0") == 0 and _exploits(second, "exp-0") == 1
    assert ("exp-0-1", 30) in second.delete_pods
    assert _exploits(stale, "exp-0") == 0 and stale.delete_pods == []
    # Read from the new attempt's own series, the same value is checked, and exploits again.
    *_, fresh = _population_ticks(label_of_replaced=2)
    assert _exploits(fresh, "exp-0") == 2 and ("exp-0-2", 30) in fresh.delete_pods
