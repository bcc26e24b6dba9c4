"""A learning curve replayed from the hyperparameters, with no torch at all.

For exercising the operator with thousands of trials: each trial costs a
Python process and a sleep per step. The curve is a deterministic function of
the config, so a search has something real to find and ASHA something real to
prune: configs nearer the optimum converge higher, a larger learning rate
converges faster (but past its optimum, lower), and a little deterministic noise
keeps curves from being perfectly smooth.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from kubetune.trial import Session
from kubetune_trainer.hyperparameters import Hyperparameters
from kubetune_trainer.reporting import EpochResult, first_epoch, report_epoch

_BEST_LR = {"sgd": 0.05, "adam": 0.002}
_START_ACCURACY = 0.1  # chance on ten classes
_NOISE = 0.004
_STATE_FILE = "state.json"


@dataclass(frozen=True)
class Curve:
    """accuracy(epoch) = ceiling - (ceiling - 0.1) * exp(-rate * epoch), plus noise."""

    ceiling: float
    rate: float


def curve_for(hp: Hyperparameters) -> Curve:
    best_lr = _BEST_LR[hp.optimizer]
    lr_distance = math.log10(hp.lr / best_lr)
    lr_quality = math.exp(-0.5 * (lr_distance / 0.6) ** 2)
    width_quality = 1.0 - math.exp(-hp.hidden_size / 64.0)
    depth_quality = 1.0 - 0.03 * abs(hp.layers - 2)
    dropout_quality = 1.0 - 0.5 * abs(hp.dropout - 0.1)
    momentum_quality = 1.0 - 0.5 * abs(hp.momentum - 0.9) if hp.optimizer == "sgd" else 1.0
    quality = (
        lr_quality
        * (0.6 + 0.4 * width_quality)
        * depth_quality
        * dropout_quality
        * (0.8 + 0.2 * momentum_quality)
    )
    ceiling = 0.5 + 0.49 * max(0.0, min(1.0, quality))
    speed = min(1.0, hp.lr / best_lr) ** 0.5 * (64.0 / hp.batch_size) ** 0.3
    rate = 0.03 + 0.5 * speed
    return Curve(ceiling=ceiling, rate=rate)


def accuracy_at(hp: Hyperparameters, epoch: int, config: Mapping[str, Any] | None = None) -> float:
    """Validation accuracy of this config after `epoch` epochs (deterministic)."""
    curve = curve_for(hp)
    clean = curve.ceiling - (curve.ceiling - _START_ACCURACY) * math.exp(-curve.rate * epoch)
    noisy = clean + _NOISE * _unit_noise(hp, epoch, config or {})
    return max(0.0, min(1.0, noisy))


def _unit_noise(hp: Hyperparameters, epoch: int, config: Mapping[str, Any]) -> float:
    """A value in [-1, 1] fixed by the config (all of it, unknown keys too) and the epoch."""
    key = json.dumps([asdict(hp), dict(config), epoch], sort_keys=True, default=str)
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**63 - 1.0


def run_simulated(
    hp: Hyperparameters,
    session: Session,
    *,
    seconds_per_step: float,
    config: Mapping[str, Any] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[EpochResult]:
    """Report the curve epoch by epoch, checkpointing the epoch so a retry resumes.

    `sleep` waits out each epoch's time (the trial farm passes one that a stop interrupts,
    as SIGTERM interrupts `time.sleep` in a trial's own process).
    """
    results: list[EpochResult] = []
    # A retry of a trial that had already completed reports its last epoch again.
    start = min(first_epoch(session.get_checkpoint()), hp.epochs)
    for epoch in range(start, hp.epochs + 1):
        if seconds_per_step > 0:
            sleep(seconds_per_step)
        accuracy = accuracy_at(hp, epoch, config)
        result = EpochResult(epoch, accuracy, -math.log(max(accuracy, 1e-6)))
        report_epoch(session, result, hp.epochs)
        with session.save_checkpoint(step=epoch) as path:
            (path / _STATE_FILE).write_text(json.dumps({"epoch": epoch}), encoding="utf-8")
        results.append(result)
    return results
