"""The search replay: model-based methods choose configurations, and each sees what it should.

Tiny replays (few trials, two workers) of every new method pin what the search
benchmark's figures rest on: configurations inside the search space, a run that
is a function of its seed, Ray's OptunaSearch told ASHA-stopped trials as
COMPLETE with their stopping-rung value (driven through Ray's own code), our
history holding the same trials with the same values, and the curves behind a
configuration.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from benchmarks.optuna_latency import measure
from benchmarks.replay.problems import DigitsProblem, HartmannProblem, SearchProblem
from benchmarks.replay.search_grid import config_digest, run_one
from benchmarks.replay.search_report import paired, tables
from benchmarks.replay.searchers import (
    SEARCH_METHODS,
    KubetuneSearch,
    RaySearch,
    SearchSimulation,
    make_search_method,
)
from benchmarks.replay.simulator import IDEAL, RunResult
from optuna.trial import TrialState

pytestmark = pytest.mark.unit

PROBLEMS: dict[str, SearchProblem] = {}


def problem(name: str) -> SearchProblem:
    if not PROBLEMS:
        PROBLEMS.update({"mfh6-moderate": HartmannProblem.make(), "digits-mlp": DigitsProblem.make()})
    return PROBLEMS[name]


def replay(name: str, method: str, seed: int = 1, trials: int = 24,
           workers: int = 2) -> tuple[SearchSimulation, RunResult]:
    prob = problem(name)
    searcher = make_search_method(method, prob, seed, workers)
    sim = SearchSimulation(prob, searcher, workers, IDEAL, seed, max_trials=trials)
    return sim, sim.run()


def _inside(domain: dict[str, Any], value: object) -> bool:
    (kind, args), = domain.items()
    if kind == "uniform":
        return isinstance(value, float) and args[0] <= value <= args[1]
    if kind == "loguniform":
        return isinstance(value, float) and args[0] <= value <= args[1]
    if kind == "randint":
        return isinstance(value, int) and args[0] <= value < args[1]
    if kind == "choice":
        return value in args
    raise AssertionError(kind)


@pytest.mark.parametrize("method", SEARCH_METHODS)
@pytest.mark.parametrize("name", ["mfh6-moderate", "digits-mlp"])
def test_every_method_suggests_configs_inside_the_space_and_reproduces_from_its_seed(
        name: str, method: str) -> None:
    prob = problem(name)
    sim, result = replay(name, method, seed=3, trials=16)
    assert result.trials_started == len(sim.configs) == 16
    for config in sim.configs:
        assert set(config) == set(prob.space)
        for key, value in config.items():
            assert _inside(prob.space[key], value), (key, value)
    again = run_one(name, 2, method, seed=3, max_trials=16)
    assert (again["config_digest"], again["gpu_time"]) == (config_digest(sim.configs), result.gpu_time)
    other = run_one(name, 2, method, seed=4, max_trials=16)
    assert other["config_digest"] != again["config_digest"]


def test_after_startup_tpe_suggests_better_configs_than_random_where_rungs_rank_well() -> None:
    """digits (rung 1 ranks finals with Spearman 0.71), W = 1: after the 10 startup trials the
    model's suggestions have a better median final accuracy than random search's."""
    prob = problem("digits-mlp")
    for seed in (0, 1):
        tpe, _ = replay("digits-mlp", "kt-tpe-pruned", seed=seed, trials=60, workers=1)
        rnd, _ = replay("digits-mlp", "kt-random", seed=seed, trials=60, workers=1)
        assert len(tpe.configs) > 30 and len(rnd.configs) > 30
        tpe_finals = [prob.final(c) for c in tpe.configs[10:]]
        rnd_finals = [prob.final(c) for c in rnd.configs[10:]]
        assert np.median(tpe_finals) > np.median(rnd_finals) + 0.01


def test_ray_tells_asha_stopped_trials_complete_with_their_rung_value() -> None:
    sim, result = replay("mfh6-moderate", "ray-tpe", trials=30)
    searcher = sim.search
    assert isinstance(searcher, RaySearch)
    trials = searcher.study.get_trials(deepcopy=False)
    assert len(trials) == 30
    stopped = [t for t in sim.trials if t.stopped]
    assert stopped, "ASHA stopped nothing"
    assert len(stopped) == sum(result.stops_by_milestone.values())
    for t in sim.trials:
        ot = trials[t.row]
        if t.stopped:
            assert ot.state == TrialState.COMPLETE
            assert ot.value == sim.pool.values[t.row, t.stopped_at - 1]
            # The result that triggered STOP never reached on_trial_result.
            assert t.stopped_at not in ot.intermediate_values
        elif t.completed:
            assert ot.state == TrialState.COMPLETE
            assert ot.value == sim.pool.values[t.row, -1]
        else:
            assert ot.state == TrialState.RUNNING


@pytest.mark.parametrize("stopped_as", ["pruned", "complete"])
def test_our_history_holds_the_trials_ray_would_see(stopped_as: str) -> None:
    """Our history at the end of a run: the same trials, states and values Ray's study holds
    for the same events (COMPLETE with the rung value), or PRUNED with the rung values."""
    sim, _ = replay("digits-mlp", f"kt-tpe-{stopped_as}", trials=30)
    searcher = sim.search
    assert isinstance(searcher, KubetuneSearch)
    records = searcher.history()
    assert [r.index for r in records] == list(range(30))
    assert [r.config for r in records] == sim.configs
    seen_pruned = seen_complete = 0
    for t, record in zip(sim.trials, records, strict=True):
        frozen = searcher.suggester.frozen(record)
        if t.stopped:
            assert record.state == "pruned"
            assert record.value == sim.pool.values[t.row, t.stopped_at - 1]
            assert max(record.intermediate) == t.stopped_at
            want = TrialState.PRUNED if stopped_as == "pruned" else TrialState.COMPLETE
            assert frozen.state == want
            seen_pruned += 1
        elif t.completed:
            assert record.state == "complete" and frozen.state == TrialState.COMPLETE
            assert frozen.value == sim.pool.values[t.row, -1]
            seen_complete += 1
        else:
            assert record.state == "running" and frozen.state == TrialState.RUNNING
    assert seen_pruned and seen_complete


def test_hartmann_curves_follow_the_config_with_common_noise_per_trial_index() -> None:
    prob = problem("mfh6-moderate")
    assert isinstance(prob, HartmannProblem)
    config = {f"x{j}": 0.3 for j in range(6)}
    a, _ = prob.curve(5, 7, config)
    b, _ = prob.curve(5, 7, config)
    c, _ = prob.curve(5, 8, config)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a[-1] == pytest.approx(prob.final(config))  # no noise at full fidelity


def test_digits_lookup_returns_each_recorded_config_itself() -> None:
    prob = problem("digits-mlp")
    assert isinstance(prob, DigitsProblem)
    table = prob.table
    for i, params in enumerate(table.params):
        row = prob.row(params)
        assert np.array_equal(table.values[row], table.values[i])
    assert prob.final(table.params[0]) == table.values[0, -1]
    assert math.isclose(prob.target, float(np.quantile(table.values[:, -1], 0.99)))


def test_report_pairs_runs_by_seed() -> None:
    def rec(method: str, seed: int, gpu: float, reached: bool = True) -> dict[str, Any]:
        return {"problem": "p", "workers": 4, "method": method, "seed": seed, "gpu_time": gpu,
                "reached": reached, "trials_started": 10, "hit_rate_model": 0.1,
                "suggest_seconds": 0.0}
    records = [rec("kt-random", s, 10.0) for s in range(6)]
    records += [rec("kt-tpe-pruned", s, 5.0) for s in range(5)] + [rec("kt-tpe-pruned", 5, 1.0, False)]
    from benchmarks.replay.search_report import cells
    g = paired(cells(records)[("p", "ideal", 4)], "kt-random", "kt-tpe-pruned")
    assert g is not None
    assert g["median_ratio"] == pytest.approx(2.0)
    assert (g["wins"], g["ties"], g["losses"]) == (1, 0, 5)  # the unreached run is the slower
    assert "2.00x" in tables(records)


def test_latency_benchmark_times_tpe_and_reports_gp_past_its_cap() -> None:
    row = measure("tpe", 40, 1)
    assert row["build"] > 0 and row["tick"] > 0 and row["rebuild"] > 0
    refused = measure("gp", 400, 1)
    assert "gp models at most" in refused["refused"] and "tpe" in refused["refused"]
