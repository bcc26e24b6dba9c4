"""The per-epoch steps both trainers share: where to resume, and how an epoch is reported.

Kept free of torch so that the simulated trainer stays cheap to start.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from kubetune.trial import Checkpoint, Session

logger = logging.getLogger("kubetune_trainer")


@dataclass(frozen=True)
class EpochResult:
    """Validation results of one epoch (the ASHA step)."""

    epoch: int
    accuracy: float
    loss: float


def first_epoch(checkpoint: Checkpoint | None) -> int:
    """Epochs are 1-based; a resumed trial continues after its checkpoint's epoch."""
    if checkpoint is None:
        return 1
    logger.info("resuming after epoch %d from %s", checkpoint.step, checkpoint.path)
    return checkpoint.step + 1


def report_epoch(session: Session, result: EpochResult, epochs: int) -> None:
    """Report to the operator and log one line per epoch."""
    session.report(step=result.epoch, accuracy=result.accuracy, loss=result.loss)
    logger.info(
        "epoch %d/%d accuracy=%.4f loss=%.4f", result.epoch, epochs, result.accuracy, result.loss
    )
