"""The PBT benchmark's problem and simulation: what its figures in benchmarks/RESULTS.md rest on."""

from __future__ import annotations

import random

import pytest
from benchmarks.pbt.problem import optimal_lr, train_step
from benchmarks.pbt.simulate import run_pbt, run_random


@pytest.mark.parametrize(
    ("accuracy", "lr"), [(0.0, 0.001), (50.0, 0.005), (100.0, 0.01), (150.0, 0.005), (250.0, 0.001)]
)
def test_optimal_lr_is_ray_examples_triangle_wave(accuracy: float, lr: float) -> None:
    assert optimal_lr(accuracy) == pytest.approx(lr)


def test_an_lr_far_above_the_optimum_loses_accuracy() -> None:
    rng = random.Random(0)
    losses = [train_step(50.0, 0.05, rng) - 50.0 for _ in range(200)]
    assert sum(losses) / len(losses) < -3


def test_pbt_solves_what_a_fixed_lr_population_does_not_and_repeats_itself() -> None:
    runs = [run_pbt(seed) for seed in range(3)]
    assert all(r.solved_round is not None and r.exploits > 0 for r in runs)
    assert runs == [run_pbt(seed) for seed in range(3)]
    assert sum(run_random(seed).solved_round is not None for seed in range(3)) < 3
