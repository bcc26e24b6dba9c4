"""OptunaSuggester: trial i's config is a pure function of (seed, i, history), whatever was cached."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from optuna.trial import TrialState as OptunaState

from kubetune.api import SpecError
from kubetune.search import SearchSpaceError
from kubetune.search._optuna_history import rebuild_study
from kubetune.search.optuna import GP_MAX_HISTORY, HistoryRecord, OptunaSuggester, build_sampler

SPACE: dict[str, Any] = {
    "lr": {"loguniform": [1e-4, 1e-1]},
    "layers": {"randint": [1, 5]},
    "opt": {"choice": ["adam", "sgd"]},
    "momentum": {"uniform": [0.1, 0.9]},
    "width": {"qrandint": [32, 256, 32]},
    "fixed": {"value": "keep"},
    "head": {"space": {"wd": {"qloguniform": [0.0001, 0.1, 0.0001]},
                       "act": {"choice": [[1, 2], {"k": "v"}]}}},
}


def objective(config: dict[str, Any]) -> float:
    return (config["momentum"] - 0.7) ** 2 + abs(config["layers"] - 3) * 0.1


def evolving_histories(n: int, seed: int = 3) -> list[tuple[int, list[HistoryRecord]]]:
    """(index, history) pairs as an operator would see them: trials start, run, finish."""
    suggester = OptunaSuggester("tpe", SPACE, "min", seed, {"nStartupTrials": 4})
    rng = random.Random(seed)
    records: list[HistoryRecord] = []
    out = []
    for i in range(n):
        # Some running trials finish, some are stopped, one fails.
        for k, r in enumerate(records):
            if r.state == "running" and rng.random() < 0.5:
                value = objective(dict(r.config))
                state = rng.choice(["complete", "complete", "pruned", "failed"])
                records[k] = HistoryRecord(r.index, r.config, state,
                                           None if state == "failed" else value,
                                           {1: value + 1.0} if state == "pruned" else {})
        out.append((i, list(records)))
        config = suggester.suggest(i, records)
        records.append(HistoryRecord(i, config, "running"))
    return out


def test_config_is_identical_with_the_cache_and_from_a_fresh_rebuild() -> None:
    cached = OptunaSuggester("tpe", SPACE, "min", 3, {"nStartupTrials": 4})
    for index, history in evolving_histories(30):
        fresh = OptunaSuggester("tpe", SPACE, "min", 3, {"nStartupTrials": 4})
        assert cached.suggest(index, history) == fresh.suggest(index, history, reuse=False)


def test_cached_study_holds_the_same_trials_as_a_plain_rebuild() -> None:
    suggester = OptunaSuggester("tpe", SPACE, "max", 5)
    _, history = evolving_histories(25)[-1]
    sampler = build_sampler("tpe", {}, 5, 25, suggester.space.distributions)
    from kubetune.search.optuna import _record_key

    for _ in range(2):  # the second build reuses every kept trial
        fast = suggester._cache.study([_record_key(r) for r in history],
                                      [lambda r=r: suggester.frozen(r) for r in history],
                                      suggester.direction, sampler)
    plain = rebuild_study([suggester.frozen(r) for r in history], suggester.direction, sampler)
    assert fast.get_trials(deepcopy=False) == plain.get_trials(deepcopy=False)
    if any(t.state == OptunaState.COMPLETE for t in plain.trials):
        assert fast.best_trial.number == plain.best_trial.number


def test_two_rebuilds_from_the_same_history_give_the_same_config() -> None:
    index, history = evolving_histories(20)[-1]
    a = OptunaSuggester("tpe", SPACE, "min", 11).suggest(index, history, reuse=False)
    b = OptunaSuggester("tpe", SPACE, "min", 11).suggest(index, history, reuse=False)
    c = OptunaSuggester("tpe", SPACE, "min", 12).suggest(index, history, reuse=False)
    assert a == b
    assert a != c


_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {tests!r})
    from unit.test_optuna_suggester import SPACE, evolving_histories
    from kubetune.search.optuna import OptunaSuggester
    index, history = evolving_histories(16)[-1]
    s = OptunaSuggester("tpe", SPACE, "min", 3, {{"nStartupTrials": 4}})
    print(json.dumps([s.suggest(index, history), s.suggest(index + 1, history)]))
""")


def test_config_is_the_same_in_processes_with_different_hash_seeds() -> None:
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    outputs = []
    for hash_seed in ("0", "1"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run([sys.executable, "-c", _SCRIPT.format(tests=tests)], env=env,
                              capture_output=True, text=True, check=True, timeout=120)
        outputs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert outputs[0] == outputs[1]
    index, history = evolving_histories(16)[-1]
    here = OptunaSuggester("tpe", SPACE, "min", 3, {"nStartupTrials": 4}).suggest(index, history)
    assert json.loads(json.dumps(here)) == outputs[0][0]


def test_configs_keep_constants_nesting_and_qloguniform_step() -> None:
    suggester = OptunaSuggester("tpe", SPACE, "min", 0)
    for i in range(5):
        config = suggester.suggest(i, [])
        assert config["fixed"] == "keep"
        assert config["head"]["act"] in ([1, 2], {"k": "v"})
        wd = config["head"]["wd"]
        assert abs(wd / 0.0001 - round(wd / 0.0001)) < 1e-6  # Ray would drop this step
        assert config["width"] % 32 == 0 and 32 <= config["width"] <= 256
        assert 1 <= config["layers"] <= 4


@pytest.mark.parametrize("stopped_as", ["pruned", "complete"])
def test_stopped_trials_are_told_as_the_experiment_says(stopped_as: str) -> None:
    suggester = OptunaSuggester("tpe", SPACE, "min", 0, stopped_as=stopped_as)  # type: ignore[arg-type]
    config = suggester.suggest(0, [])
    trial = suggester.frozen(HistoryRecord(0, config, "pruned", 0.4, {1: 0.9, 3: 0.4}))
    if stopped_as == "pruned":
        assert trial.state == OptunaState.PRUNED
        assert trial.intermediate_values == {1: 0.9, 3: 0.4}
    else:
        assert trial.state == OptunaState.COMPLETE
        assert trial.value == 0.4


def test_running_and_failed_trials_are_told_as_such() -> None:
    suggester = OptunaSuggester("tpe", SPACE, "min", 0)
    config = suggester.suggest(0, [])
    assert suggester.frozen(HistoryRecord(0, config, "running")).state == OptunaState.RUNNING
    assert suggester.frozen(HistoryRecord(0, config, "failed")).state == OptunaState.FAIL
    # A trial that finished without a finite value cannot be COMPLETE.
    nan = suggester.frozen(HistoryRecord(0, config, "complete", float("nan")))
    assert nan.state == OptunaState.FAIL
    assert suggester.frozen(HistoryRecord(0, config, "running")).params["opt"] == config["opt"]


def test_running_trials_change_the_suggestion_through_the_constant_liar() -> None:
    index, history = evolving_histories(20)[-1]
    finished = [r for r in history if r.state != "running"]
    assert len(finished) < len(history)
    s = OptunaSuggester("tpe", SPACE, "min", 3, {"nStartupTrials": 4})
    assert s.suggest(index, history, reuse=False) != s.suggest(index, finished, reuse=False)


def _late_median_distance(sampler: str, seed: int) -> float:
    space = {"x": {"uniform": [0.0, 1.0]}}
    suggester = OptunaSuggester(sampler, space, "min", seed,
                                {"nStartupTrials": 8} if sampler == "tpe" else {})
    history: list[HistoryRecord] = []
    for i in range(40):
        config = suggester.suggest(i, history)
        history.append(HistoryRecord(i, config, "complete", (config["x"] - 0.8) ** 2))
    late = sorted(abs(r.config["x"] - 0.8) for r in history[20:])
    return late[len(late) // 2]


def test_tpe_moves_toward_the_good_region_after_startup() -> None:
    # Optuna's own long-lived TPESampler gives about 0.1 here too; random search about 0.3.
    tpe, rand = _late_median_distance("tpe", 1), _late_median_distance("random", 1)
    assert tpe < 0.15
    assert tpe < rand / 2


def test_points_to_evaluate_come_first_and_partial_points_are_completed() -> None:
    points = [{"lr": 0.01, "layers": 2, "opt": "sgd", "momentum": 0.5, "width": 64,
               "head": {"wd": 0.001, "act": {"k": "v"}}}, {"momentum": 0.25}]
    suggester = OptunaSuggester("tpe", SPACE, "min", 0, points_to_evaluate=points)
    first = suggester.suggest(0, [])
    assert {k: first[k] for k in ("lr", "layers", "opt", "momentum", "width")} == {
        "lr": 0.01, "layers": 2, "opt": "sgd", "momentum": 0.5, "width": 64}
    assert first["head"] == {"wd": 0.001, "act": {"k": "v"}}
    second = suggester.suggest(1, [HistoryRecord(0, first, "running")])
    assert second["momentum"] == 0.25 and 1 <= second["layers"] <= 4


def test_qmc_reads_the_sobol_sequence_at_the_trial_index() -> None:
    suggester = OptunaSuggester("qmc", {"x": {"uniform": [0.0, 1.0]}}, "min", 0)
    xs = [suggester.suggest(i, []) ["x"] for i in range(4)]
    assert xs == [0.0, 0.5, 0.75, 0.25]  # unscrambled Sobol, whatever the history
    assert suggester.suggest(2, [HistoryRecord(0, {"x": 0.0}, "complete", 1.0)])["x"] == 0.75


def test_random_sampler_is_seeded_per_trial() -> None:
    a = OptunaSuggester("random", SPACE, "min", 4)
    assert a.suggest(3, []) == OptunaSuggester("random", SPACE, "min", 4).suggest(3, [])
    assert a.suggest(3, []) != a.suggest(4, [])


@pytest.mark.parametrize(("entry", "names"), [
    ({"grid": [1, 2]}, ("grid", "choice")),
    ({"randn": [0, 1]}, ("randn", "uniform")),
    ({"qrandn": [0, 1, 0.1]}, ("qrandn", "uniform")),
    ({"qlograndint": [2, 64, 2]}, ("qlograndint", "lograndint")),
])
def test_domains_the_sampler_cannot_search_are_refused_naming_the_alternative(
        entry: dict[str, Any], names: tuple[str, str]) -> None:
    with pytest.raises(SearchSpaceError) as err:
        OptunaSuggester("tpe", {"ok": {"uniform": [0, 1]}, "opt": {"space": {"bad": entry}}},
                        "min", 0)
    assert err.value.path == "opt.bad"
    assert all(name in str(err.value) for name in names)


def test_unknown_options_and_samplers_are_refused() -> None:
    with pytest.raises(SpecError, match="nEiCandidates"):
        OptunaSuggester("qmc", SPACE, "min", 0, {"nEiCandidates": 3})
    with pytest.raises(SpecError, match="tpe"):
        OptunaSuggester("hyperopt", SPACE, "min", 0)


def test_gp_refuses_a_history_beyond_its_cap() -> None:
    pytest.importorskip("torch")
    suggester = OptunaSuggester("gp", {"x": {"uniform": [0.0, 1.0]}}, "min", 0)
    history = [HistoryRecord(i, {"x": i / 1000}, "complete", 1.0)
               for i in range(GP_MAX_HISTORY + 1)]
    with pytest.raises(SpecError, match="tpe"):
        suggester.suggest(GP_MAX_HISTORY + 1, history)


def test_gp_is_deterministic_from_the_history() -> None:
    pytest.importorskip("torch")
    space = {"x": {"uniform": [0.0, 1.0]}}
    history = [HistoryRecord(i, {"x": x}, "complete", (x - 0.3) ** 2)
               for i, x in enumerate([0.1, 0.9, 0.5, 0.25])]
    a = OptunaSuggester("gp", space, "min", 2, {"nStartupTrials": 3}).suggest(4, history)
    b = OptunaSuggester("gp", space, "min", 2, {"nStartupTrials": 3}).suggest(4, history,
                                                                               reuse=False)
    assert a == b


def test_point_values_outside_their_domain_are_suggested_instead() -> None:
    points = [{"momentum": 2.0, "width": 33, "opt": "rmsprop", "layers": 3}]
    suggester = OptunaSuggester("tpe", SPACE, "min", 0, points_to_evaluate=points)
    config = suggester.suggest(0, [])
    assert config["layers"] == 3
    assert 0.1 <= config["momentum"] <= 0.9 and config["width"] % 32 == 0
    assert config["opt"] in ("adam", "sgd")
    # The same holds for a history record: an out-of-domain value is left out of the study.
    record = HistoryRecord(0, {**config, "momentum": 2.0}, "complete", 0.1)
    assert "momentum" not in suggester.frozen(record).params
