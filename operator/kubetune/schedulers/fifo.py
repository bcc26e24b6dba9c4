"""First in, first out: no early stopping, as Ray Tune's FIFOScheduler.

Trials run until they end on their own; the scheduler never stops one, not
even at max_t, has no milestones and persists nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from kubetune.api import Decision, RungRecord, RungSummary
from kubetune.schedulers.base import TrialScheduler, Verdict


class FIFOScheduler(TrialScheduler):
    """Ray Tune's FIFOScheduler: every trial runs to its own end."""

    def __init__(self, *, metric: str, mode: str, time_attr: str = "training_iteration") -> None:
        super().__init__(metric=metric, mode=mode, time_attr=time_attr)
        self._verdict = Verdict(Decision.CONTINUE, "FIFO never stops a trial")

    def milestones(self, trial: str) -> list[int]:
        return []

    def on_result(self, trial: str, step: int, value: float) -> Verdict:
        return self._verdict

    def on_complete(self, trial: str, step: int, value: float | None) -> None:
        return None

    def records(self, trial: str) -> list[RungRecord]:
        return []

    def restore(self, trial: str, records: Sequence[RungRecord]) -> None:
        if records:
            raise ValueError(
                f"trial {trial!r} has {len(records)} rung records, but the FIFO scheduler "
                "keeps none; were they written by another scheduler type?"
            )

    def forget(self, trial: str) -> None:
        return None

    def trials(self) -> list[str]:
        return []

    def rung_table(self) -> list[RungSummary]:
        return []
