"""The replay benchmark's simulator: accounting, worker slots, and parity with Ray Tune.

These pin what the benchmark's figures rest on: every trial of a pool runs
when nothing stops it, GPU-time is the sum of the steps trained, our ASHA and
Ray's take the same decisions on the same simulated run, and feeding only the
milestones takes the decisions that feeding every step would.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from benchmarks.replay.curves import CurvePool, MFHartmannSource
from benchmarks.replay.methods import ASHAConfig, make_method
from benchmarks.replay.mfhartmann import OPTIMUM3, OPTIMUM6, MFHartmann
from benchmarks.replay.simulator import IDEAL, REALISTIC, Setting, Simulation


def _pool(values: np.ndarray, seconds: np.ndarray, target: float, mode: str = "max") -> CurvePool:
    return CurvePool("test", mode, values.astype(float), seconds.astype(float), target)


def test_random_search_with_w_workers_runs_every_trial_of_the_pool() -> None:
    rng = np.random.default_rng(1)
    values = rng.random((40, 9))
    seconds = rng.uniform(0.5, 2.0, (40, 9))
    pool = _pool(values, seconds, target=2.0)  # unreachable: the pool runs out
    result = Simulation(pool, make_method("random", "max", ASHAConfig(9)), 4, IDEAL, 0).run()
    assert not result.reached
    assert (result.trials_started, result.trials_completed) == (40, 40)
    assert result.steps == 40 * 9
    assert result.gpu_time == pytest.approx(seconds.sum())
    assert result.gpu_by_fate == {"completed": pytest.approx(seconds.sum())}


def test_gpu_time_counts_the_steps_trained_until_the_target() -> None:
    values = np.array([[0.1, 0.2, 0.3], [0.2, 0.4, 0.5], [0.3, 0.6, 0.9], [0.1, 0.1, 0.95]])
    seconds = np.array([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    pool = _pool(values, seconds, target=0.9)
    one = Simulation(pool, make_method("random", "max", ASHAConfig(3)), 1, IDEAL, 0).run()
    assert one.reached and one.trials_completed == 3
    assert one.gpu_time == one.wall_time == pytest.approx(3 + 6 + 6)
    two = Simulation(pool, make_method("random", "max", ASHAConfig(3)), 2, IDEAL, 0).run()
    # Trials 0 and 1 start at 0; trial 2 takes trial 0's slot at 3 and meets the target at 9,
    # when trial 1 has finished (6) and trial 3, started at 6, has trained 3 seconds.
    assert two.wall_time == pytest.approx(9.0)
    assert two.gpu_time == pytest.approx(3 + 6 + 6 + 3)
    assert two.steps == 3 + 3 + 3 + 3


def test_our_asha_takes_rays_decisions_in_the_ideal_setting() -> None:
    source = MFHartmannSource.make(6, "moderate", 27)
    pool = source.pool(seed=3, size=600)
    cfg = ASHAConfig(27, 1, 3)
    ours = Simulation(pool, make_method("kubetune", "min", cfg), 8, IDEAL, 3,
                      shadow=make_method("ray", "min", cfg)).run()
    assert ours.decisions.compared > 300
    assert ours.decisions.stops > 100
    assert ours.decisions.mismatches == 0
    ray = Simulation(pool, make_method("ray", "min", cfg), 8, IDEAL, 3).run()
    assert (ray.wall_time, ray.gpu_time, ray.trials_started) == (
        ours.wall_time, ours.gpu_time, ours.trials_started)


@pytest.mark.parametrize("name", ["kubetune", "ray", "optuna"])
def test_milestones_alone_take_the_decisions_every_step_would(name: str) -> None:
    rng = np.random.default_rng(7)
    values = np.cumsum(rng.random((60, 27)), axis=1) * rng.random((60, 1))
    cfg = ASHAConfig(27, 1, 3)
    every, sparse = make_method(name, "max", cfg), make_method(name, "max", cfg)
    milestones = sparse.milestones(0)
    assert milestones == [1, 3, 9]
    for trial in range(60):  # sequential, so both see the same history
        stopped = {}
        for label, method, steps in (("every", every, range(1, 27)), ("sparse", sparse, milestones)):
            method.start(trial)
            stopped[label] = next((s for s in steps if method.observe(trial, s, values[trial, s - 1])), None)
            if stopped[label] is None:
                method.complete(trial, 27, values[trial, -1])
        assert stopped["every"] == stopped["sparse"], f"trial {trial}"


def test_realistic_stops_land_within_scrape_tick_and_sigterm_latency() -> None:
    setting = Setting("test", median_step_seconds=2.0, scrape_interval=15.0, tick=2.0,
                      pod_start=(5.0, 5.0), stop_latency=(1.0, 1.0), release=(1.0, 1.0))
    pool = MFHartmannSource.make(6, "moderate", 27).pool(seed=0, size=400)
    result = Simulation(pool, make_method("kubetune", "min", ASHAConfig(27, 1, 3)), 8, setting, 0).run()
    delays = np.array(result.overshoot_seconds)
    assert len(delays) > 50
    assert delays.min() >= 1.0
    assert delays.max() <= 15.0 + 2.0 + 1.0 + 1e-9
    # Steps of 2 s: a delay d lets floor(d / 2) more steps finish (a step ending at the very
    # instant SIGTERM lands may count either way, by float rounding).
    steps = np.array(result.overshoot_steps)
    assert np.all((steps == np.floor((delays + 1e-6) / 2)) | (steps == np.floor((delays - 1e-6) / 2)))
    assert REALISTIC.scrape_interval == 15.0


def test_mfhartmann_is_the_hartmann_function_at_full_fidelity() -> None:
    for dims, optimum, minimum in ((3, OPTIMUM3, -3.86278), (6, OPTIMUM6, -3.32237)):
        f = MFHartmann.preset(dims, 81, "moderate")
        curves = f.curves(np.array([optimum]), np.random.default_rng(0))
        assert curves[0, -1] == pytest.approx(minimum, abs=1e-4)
        assert f.final(np.array([optimum]))[0] == pytest.approx(minimum, abs=1e-4)
        # Lower fidelities are flattened by the bias (alpha - 3) and pushed up by |noise|.
        assert curves[0, 0] > minimum + 1.0


def test_perfect_ranking_ceiling() -> None:
    assert ASHAConfig(81, 1, 3).ceiling == pytest.approx(81 / 5)
    assert ASHAConfig(27, 1, 3).ceiling == pytest.approx(27 / 4)
    assert math.isclose(ASHAConfig(64, 1, 4).ceiling, 16.0)
