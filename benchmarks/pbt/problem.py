"""Ray's pbt_function toy problem, written from its definition, with seeded noise.

Accuracy grows fastest when lr is within a factor 3 (q_tolerance) of an optimal
lr that follows a triangle wave in the accuracy itself: 0.001 at acc 0, 0.01 at
acc 100 (the midpoint), 0.001 again at acc 200, clamped to [0.001, 0.01]. With
q_err = max(lr, opt) / min(lr, opt): if q_err < 3 the accuracy gains
U(0, 1) / q_err; else if lr is too large it loses (q_err - 3) * U(0, 1); then
Gaussian noise of sd 2 is added and the accuracy is floored at 0. The problem is
solved when acc > 200. No fixed lr stays near the optimum all the way, so a
run needs its lr to follow the wave: what PBT's exploit and explore do.

Ray draws the noise from the global `random` and numpy; here each step draws
from a stream seeded by (seed, trial, segment, step), so a run is reproducible
and a clone does not replay its donor's noise.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

MIDPOINT = 100.0
Q_TOLERANCE = 3.0
NOISE_LEVEL = 2.0
SOLVED_ACCURACY = 2 * MIDPOINT


def optimal_lr(accuracy: float) -> float:
    """The triangle wave: the lr at which accuracy grows fastest at this accuracy."""
    if accuracy < MIDPOINT:
        lr = 0.01 * accuracy / MIDPOINT
    else:
        lr = 0.01 - 0.01 * (accuracy - MIDPOINT) / MIDPOINT
    return min(0.01, max(0.001, lr))


def train_step(accuracy: float, lr: float, rng: random.Random) -> float:
    """One iteration of pbt_function's loop: the accuracy after training at `lr`."""
    best = optimal_lr(accuracy)
    q_err = max(lr, best) / min(lr, best)
    if q_err < Q_TOLERANCE:
        accuracy += (1.0 / q_err) * rng.random()
    elif lr > best:
        accuracy -= (q_err - Q_TOLERANCE) * rng.random()
    accuracy += NOISE_LEVEL * rng.gauss(0.0, 1.0)
    return max(0.0, accuracy)


@dataclass
class Model:
    """A trial's weights: the accuracy and the step it was reached at."""

    accuracy: float = 0.0
    step: int = 0


def step_stream(seed: int, trial: str, segment: int, step: int) -> random.Random:
    return random.Random(f"pbt-function:{seed}:{trial}:{segment}:{step}")
