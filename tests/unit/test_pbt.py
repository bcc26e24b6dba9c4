"""PopulationBasedTraining's rules, one behaviour per test (Ray parity is in test_pbt_ray_parity)."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from kubetune.schedulers import MemberState, PopulationBasedTraining, check_steps
from kubetune.schedulers._pbt_explore import explore, quantiles
from kubetune.search import RandInt, Uniform


def _pbt(mode: str = "max", **kwargs: Any) -> PopulationBasedTraining:
    setting: dict[str, Any] = {
        "metric": "acc",
        "mode": mode,
        "time_attr": "training_iteration",
        "perturbation_interval": 2,
        "hyperparam_mutations": {"lr": Uniform(0.0, 1.0)},
        "seed": 3,
    }
    setting.update(kwargs)
    return PopulationBasedTraining(**setting)


@pytest.mark.parametrize(
    ("n", "fraction", "size"), [(8, 0.25, 2), (5, 0.25, 2), (3, 0.5, 1), (4, 0.5, 2), (2, 0.1, 1),
                                (10, 0.0, 0), (1, 0.5, 0)],
)
def test_quantile_size_is_ceil_n_q_capped_at_half(n: int, fraction: float, size: int) -> None:
    lower, upper = quantiles([(f"t{i}", float(i)) for i in range(n)], fraction)
    assert len(lower) == len(upper) == size
    assert not set(lower) & set(upper)


def test_ties_keep_the_order_trials_were_added() -> None:
    lower, upper = quantiles([("a", 1.0), ("b", 1.0), ("c", 1.0), ("d", 1.0)], 0.25)
    assert (lower, upper) == (["a"], ["d"])


def test_list_values_move_one_index_and_stop_at_the_ends() -> None:
    values = [1, 2, 4]
    seen = set()
    for seed in range(200):
        new, ops = explore({"k": 4}, {"k": values}, 0.0, (1.2, 0.8), random.Random(seed))
        seen.add((new["k"], ops["k"]))
    assert seen == {(2, "shift left"), (4, "shift right (noop)")}


def test_a_value_not_in_the_list_is_resampled() -> None:
    new, ops = explore({"k": 3}, {"k": [1, 2, 4]}, 0.0, (1.2, 0.8), random.Random(0))
    assert ops["k"] == "resample" and new["k"] in (1, 2, 4)


def test_ints_are_rounded_and_bools_stay_bools() -> None:
    mutations: dict[str, Any] = {"n": RandInt(1, 100), "flag": Uniform(0.0, 1.0)}
    for seed in range(50):
        new, _ = explore({"n": 7, "flag": True}, mutations, 0.0, (1.2, 0.8), random.Random(seed))
        assert new["n"] in (8, 6)  # round(8.4), round(5.6)
        assert new["flag"] is True


def test_resample_probability_one_always_resamples() -> None:
    for seed in range(20):
        new, ops = explore({"lr": 5.0}, {"lr": Uniform(0.0, 1.0)}, 1.0, (1.2,), random.Random(seed))
        assert ops == {"lr": "resample"} and 0.0 <= new["lr"] <= 1.0


def _population(pbt: PopulationBasedTraining, n: int) -> list[str]:
    trials = [f"t{i}" for i in range(n)]
    for i, trial in enumerate(trials):
        pbt.add_trial(trial, {"lr": 0.1 * (i + 1)})
    return trials


def test_bottom_trial_clones_a_top_trials_checkpoint_and_explored_config() -> None:
    pbt = _pbt()
    trials = _population(pbt, 4)
    for i, trial in enumerate(trials[1:], start=1):
        assert pbt.on_result(trial, 1, float(i)) is None  # before the interval
        check = pbt.on_result(trial, 2, float(i))
        assert check is not None and check.exploit is None
    check = pbt.on_result("t0", 2, 0.0)
    assert check is not None and check.quantile == "lower"
    exploit = check.exploit
    assert exploit is not None and exploit.donor == "t3" and exploit.donor_step == 2
    assert exploit.old_config == {"lr": pytest.approx(0.1)}
    assert exploit.new_config["lr"] != pytest.approx(0.4)  # explored from the donor's 0.4
    assert pbt.config("t0") == exploit.new_config
    assert pbt.state("t0").history == (exploit,)
    assert pbt.next_check("t0") == 4  # the donor's last check + the interval


def test_exploit_is_skipped_when_the_donor_kept_no_checkpoint() -> None:
    pbt = _pbt()
    _population(pbt, 4)
    pbt.on_result("t3", 2, 1.0)  # alone: no quantiles, so t3 keeps no checkpoint
    pbt.on_result("t2", 2, 0.5)
    pbt.on_result("t1", 2, 0.7)
    check = pbt.on_result("t0", 2, 0.1)  # t3 is now on top, but has no checkpoint
    assert check is not None and check.quantile == "lower"
    assert check.exploit is None and check.skipped_donor == "t3"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_score_takes_no_part(bad: float) -> None:
    pbt = _pbt()
    _population(pbt, 3)
    pbt.on_result("t1", 2, 1.0)
    pbt.on_result("t2", 2, 2.0)
    check = pbt.on_result("t0", 2, bad)
    assert check is not None and check.quantile == "none" and check.score is None
    assert pbt.state("t0").last_score is None


def test_min_mode_mirrors_max_mode() -> None:
    decisions = []
    for mode, sign in [("max", 1.0), ("min", -1.0)]:
        pbt = _pbt(mode)
        trials = _population(pbt, 6)
        made = []
        for step in (2, 4, 6):
            for i, trial in enumerate(trials):
                check = pbt.on_result(trial, step, sign * ((i * 7) % 5 + step))
                made.append(None if check is None or check.exploit is None else
                            (check.exploit.donor, check.exploit.new_config))
        decisions.append(made)
    assert decisions[0] == decisions[1] and any(decisions[0])


def test_finished_trials_leave_the_population() -> None:
    pbt = _pbt()
    _population(pbt, 2)
    pbt.on_result("t1", 2, 5.0)
    pbt.on_complete("t1")
    check = pbt.on_result("t0", 2, 1.0)
    assert check is not None and check.quantile == "middle" and check.exploit is None


def test_restored_states_take_the_same_decisions_as_the_uninterrupted_run() -> None:
    def run(restart_at: int | None) -> list[Any]:
        pbt = _pbt(hyperparam_mutations={"lr": Uniform(0.0, 1.0), "opt": ["a", "b", "c"]})
        trials = _population(pbt, 8)
        out: list[Any] = []
        rng = random.Random(11)
        for event in range(300):
            if event == restart_at:
                saved: dict[str, MemberState] = {t: pbt.state(t) for t in trials}
                pbt = _pbt(hyperparam_mutations={"lr": Uniform(0.0, 1.0), "opt": ["a", "b", "c"]})
                for trial in trials:
                    pbt.restore(trial, saved[trial])
            trial = trials[event % 8]
            check = pbt.on_result(trial, event // 8 + 1, rng.random())
            out.append(check)
        return out

    reference = run(None)
    assert any(c is not None and c.exploit is not None for c in reference)
    for restart_at in (5, 77, 151, 299):
        assert run(restart_at) == reference


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"quantile_fraction": 0.6}, "quantile_fraction must lie between 0 and 0.5"),
        ({"perturbation_interval": 0}, "perturbation_interval must be > 0"),
        ({"resample_probability": 1.5}, "resample_probability must lie between 0 and 1"),
        ({"hyperparam_mutations": {}}, "hyperparam_mutations must name at least one"),
        ({"hyperparam_mutations": {"lr": []}}, "hyperparam_mutations.lr is an empty list"),
        ({"hyperparam_mutations": {"lr": 0.1}}, "must be a list of values, a search-space"),
        ({"perturbation_factors": ()}, "perturbation_factors must hold at least one"),
        ({"mode": "best"}, "mode must be 'min' or 'max'"),
    ],
)
def test_bad_arguments_are_refused_with_the_rule(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _pbt(**kwargs)


@pytest.mark.parametrize(
    ("interval", "burn_in", "steps"),
    [(2, 0, [2, 4, 6, 8, 10]), (5, 0, [5, 10]), (2.5, 0, [3, 6, 9]), (2, 5, [5, 7, 9]),
     (60, 0, [])],
)
def test_check_steps_are_where_a_trial_reporting_every_step_is_checked(
        interval: float, burn_in: float, steps: list[int]) -> None:
    assert check_steps(interval, burn_in, 10) == steps
    pbt = _pbt(perturbation_interval=interval, burn_in_period=burn_in)
    pbt.add_trial("t", {"lr": 0.1})
    checked = [step for step in range(1, 11) if pbt.on_result("t", step, 1.0) is not None]
    assert checked == steps
