"""The contract every trial scheduler keeps, and the records it persists.

A scheduler sees a stream of (trial, step, value) observations and answers
CONTINUE or STOP. It never reads a clock or does I/O, so the operator can
rebuild it after a restart: the rung records each trial's TuneTrial status
holds (`records()`) are all the state a scheduler needs (`restore()`). The
records and the rung table are the API's own types (kubetune.api.RungRecord,
RungSummary): what a scheduler returns is what the status carries.

Internally every scheduler maximises `metric_op * value` with metric_op 1.0
for mode "max" and -1.0 for mode "min", as Ray Tune does, so min and max
mode take bit-for-bit the same decisions on mirrored values. Records and
reasons always speak in the metric's own units.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from kubetune.api import Decision, RungRecord, RungSummary

MODES = ("min", "max")


@dataclass(frozen=True)
class Verdict:
    """A scheduler's answer to one observation, with the reason in the metric's units."""

    decision: Decision
    reason: str
    """Human readable, e.g. "accuracy 0.31 < cutoff 0.52 at rung 9 (step 9)"."""
    rung: RungRecord | None = None
    """The rung record that caused a STOP; None for max_t stops and for CONTINUE."""


class TrialScheduler(ABC):
    """Decides, observation by observation, whether a trial keeps its pod.

    Trials are named by string ids. A trial is known from its first call; there
    is no separate "add". Calls must be idempotent: feeding the same
    (trial, step, value) again returns the same decision and records nothing new.
    """

    metric: str
    mode: str
    time_attr: str

    def __init__(self, *, metric: str, mode: str, time_attr: str) -> None:
        if not isinstance(metric, str) or not metric:
            raise ValueError(f"metric must be a non-empty string (got {metric!r})")
        if mode not in MODES:
            raise ValueError(f"mode must be 'min' or 'max' (got {mode!r})")
        if not isinstance(time_attr, str) or not time_attr:
            raise ValueError(f"time_attr must be a non-empty string (got {time_attr!r})")
        self.metric = metric
        self.mode = mode
        self.time_attr = time_attr
        self._metric_op = 1.0 if mode == "max" else -1.0

    @abstractmethod
    def milestones(self, trial: str) -> list[int]:
        """Steps at which this trial is judged, ascending; the trial pod exports its value there."""

    @abstractmethod
    def on_result(self, trial: str, step: int, value: float) -> Verdict:
        """Take one observation: the value the trial reported at `step`."""

    @abstractmethod
    def on_complete(self, trial: str, step: int, value: float | None) -> None:
        """The trial ended (finished, or its pod is gone) with this last result."""

    @abstractmethod
    def records(self, trial: str) -> list[RungRecord]:
        """What to persist for this trial, ascending by milestone."""

    @abstractmethod
    def restore(self, trial: str, records: Sequence[RungRecord]) -> None:
        """Rebuild this trial's state from persisted records (after an operator restart).

        Over any state the trial had, the result is that of a fresh scheduler given the
        same records: what a later observation decides depends on the records alone.
        """

    @abstractmethod
    def forget(self, trial: str) -> None:
        """Drop the trial and its values, as if it had never been seen."""

    @abstractmethod
    def trials(self) -> list[str]:
        """The trials this scheduler holds state for."""

    @abstractmethod
    def rung_table(self) -> list[RungSummary]:
        """One row per rung (per bracket), for the experiment's status."""

    def _internal(self, value: float | None) -> float:
        """The value in maximise space; NaN and +-inf are the worst value there is."""
        if value is None or not math.isfinite(value):
            return -math.inf
        return self._metric_op * value

    def _external(self, internal: float) -> float | None:
        """Back to metric units (a zero as +0.0); None where there is no finite value."""
        return self._metric_op * internal + 0.0 if math.isfinite(internal) else None

    def _fmt_value(self, value: float) -> str:
        return repr(float(value))

    def _comparison(self, decision: Decision) -> str:
        """How a value compares with the cutoff it got `decision` from, in metric units."""
        return _COMPARISONS[self.mode, decision]


_COMPARISONS = {
    ("max", Decision.STOP): "<",
    ("max", Decision.CONTINUE): ">=",
    ("min", Decision.STOP): ">",
    ("min", Decision.CONTINUE): "<=",
}
