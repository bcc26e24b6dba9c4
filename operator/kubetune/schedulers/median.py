"""The median stopping rule (Golovin et al., Vizier), with Ray Tune's semantics.

At step t >= grace_period a trial stops when its best value so far is
strictly worse than the median of the other trials' running means at t, a
running mean being the mean of a trial's values from grace_period to t. Only
trials that have reached t take part, and at least min_samples_required of
them must have, else the trial continues. This is Ray's MedianStoppingRule
with hard_stop=True; pods are never paused.

Every integer step from 1 to max_t is a milestone, so each value the trial
reported is exact whatever the scrape timing, and the records are all the
state there is: a restarted operator recomputes running means and bests from
them. With a report at every step the decisions are Ray's. Differences:

- Steps past max_t are not judged (Ray has no max_t here; nor is a trial
  stopped at max_t).
- A report that skips steps fills each skipped milestone with the first value
  observed at or past it, so a running mean weighs it once per step it covers;
  Ray's mean counts each report once.
- The final result given to on_complete is recorded once; Ray appends it to the
  history again, counting the last value twice in that trial's running mean.
- NaN and +-inf are the worst value: a trial reporting one at a judged step
  stops (Ray never stops it). A running mean such a value made non-finite
  takes no part in the median, and min_samples_required counts only finite
  running means, so a diverged trial never drags the median to -inf.
- Running means are summed in step order; Ray's numpy mean sums pairwise, so
  the two can differ in the last bits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from kubetune.api import Decision, RungRecord, RungSummary
from kubetune.schedulers._arguments import check_budget, check_int
from kubetune.schedulers._order_statistics import OrderStatistics
from kubetune.schedulers.base import TrialScheduler, Verdict


class MedianStoppingRule(TrialScheduler):
    """Ray Tune's MedianStoppingRule: stops a trial whose best is worse than the median."""

    def __init__(
        self,
        *,
        metric: str,
        mode: str,
        time_attr: str = "training_iteration",
        max_t: int = 100,
        grace_period: int = 1,
        min_samples_required: int = 3,
    ) -> None:
        super().__init__(metric=metric, mode=mode, time_attr=time_attr)
        check_budget(max_t, grace_period)
        check_int("min_samples_required", min_samples_required, minimum=1)
        self.max_t = max_t
        self.grace_period = grace_period
        self.min_samples_required = min_samples_required
        # Running means of every trial at each judged step: index m - grace_period.
        self._means = [OrderStatistics() for _ in range(grace_period, max_t + 1)]
        self._trials: dict[str, _TrialState] = {}
        self._completed_verdict = Verdict(Decision.STOP, "trial already completed")

    def milestones(self, trial: str) -> list[int]:
        return list(range(1, self.max_t + 1))

    def on_result(self, trial: str, step: int, value: float) -> Verdict:
        st = self._state(trial)
        if st.stopped is not None:
            return st.stopped
        if st.completed:
            return self._completed_verdict
        last = min(step, self.max_t)
        if st.recorded >= last:
            return st.last
        raw = float(value)
        for milestone in range(st.recorded + 1, last + 1):
            record, verdict = self._record(st, milestone, step, raw, judge=True)
            if record.decision is Decision.STOP:
                st.stopped = verdict
                return verdict
            st.last = verdict
        return st.last

    def on_complete(self, trial: str, step: int, value: float | None) -> None:
        """Record the final value at the steps it covers; nothing is judged."""
        st = self._state(trial)
        if st.stopped is not None or st.completed:
            return
        st.completed = True
        if value is None:
            return
        raw = float(value)
        for milestone in range(st.recorded + 1, min(step, self.max_t) + 1):
            self._record(st, milestone, step, raw, judge=False)

    def records(self, trial: str) -> list[RungRecord]:
        st = self._trials.get(trial)
        return [] if st is None else list(st.records)

    def restore(self, trial: str, records: Sequence[RungRecord]) -> None:
        """Replace this trial's state by replaying its persisted records in step order."""
        ordered = sorted(records, key=lambda r: r.milestone)
        for expected, record in enumerate(ordered, start=1):
            if record.milestone != expected:
                raise ValueError(
                    f"trial {trial!r} has records at milestones "
                    f"{[r.milestone for r in ordered]}; the median stopping rule needs "
                    f"every step from 1 to max_t={self.max_t} without gaps or repeats"
                )
        if ordered and ordered[-1].milestone > self.max_t:
            raise ValueError(
                f"trial {trial!r} has a record at milestone {ordered[-1].milestone}, "
                f"past max_t={self.max_t}"
            )
        stops = [r for r in ordered if r.decision is Decision.STOP]
        if stops and stops[0] is not ordered[-1]:
            raise ValueError(
                f"trial {trial!r} was stopped at milestone {stops[0].milestone} "
                "but has records at higher milestones"
            )
        self.forget(trial)
        st = self._state(trial)
        for record in ordered:
            _, verdict = self._replay(st, record)
            if record.decision is Decision.STOP:
                st.stopped = verdict
            else:
                st.last = verdict

    def forget(self, trial: str) -> None:
        st = self._trials.pop(trial, None)
        if st is None:
            return
        for milestone, mean in enumerate(st.means, start=self.grace_period):
            self._means[milestone - self.grace_period].remove(mean)

    def trials(self) -> list[str]:
        return list(self._trials)

    def rung_table(self) -> list[RungSummary]:
        table = []
        for milestone, means in enumerate(self._means, start=self.grace_period):
            finite = len(means) - means.non_finite()
            median = _median(means) if finite >= self.min_samples_required else None
            table.append(
                RungSummary(
                    milestone=milestone,
                    recorded=len(means),
                    cutoff=None if median is None else self._external(median),
                )
            )
        return table

    def _state(self, trial: str) -> _TrialState:
        st = self._trials.get(trial)
        if st is None:
            st = _TrialState(Verdict(Decision.CONTINUE, "no step reported yet"))
            self._trials[trial] = st
        return st

    def _record(
        self, st: _TrialState, milestone: int, step: int, raw: float, *, judge: bool
    ) -> tuple[RungRecord, Verdict]:
        """Judge (if asked) and record the value observed at `step` for `milestone`."""
        internal = self._internal(raw)
        finite = math.isfinite(internal)
        best = max(st.best, internal)
        median: float | None = None
        decision = Decision.CONTINUE
        if judge and milestone >= self.grace_period:
            others = self._means[milestone - self.grace_period]
            if len(others) - others.non_finite() >= self.min_samples_required:
                median = _median(others)
            if not finite or (median is not None and _is_below_median(best, median)):
                decision = Decision.STOP
        record = RungRecord(
            milestone=milestone,
            value=raw if finite else None,
            step=step,
            cutoff=None if median is None else self._external(median),
            decision=decision,
        )
        return self._replay(st, record)

    def _replay(self, st: _TrialState, record: RungRecord) -> tuple[RungRecord, Verdict]:
        """Apply a record to the trial's running state; shared by live results and restore."""
        internal = self._internal(record.value)
        st.best = max(st.best, internal)
        if record.milestone >= self.grace_period:
            st.total += internal
            st.count += 1
            mean = st.total / st.count
            self._means[record.milestone - self.grace_period].add(mean)
            st.means.append(mean)
        st.records.append(record)
        st.recorded = record.milestone
        return record, Verdict(
            record.decision,
            self._reason(st, record),
            record if record.decision is Decision.STOP else None,
        )

    def _reason(self, st: _TrialState, record: RungRecord) -> str:
        where = f"at step {record.milestone}"
        if record.step != record.milestone:
            where += f" (observed at step {record.step})"
        if record.value is None:
            return f"{self.metric} is not finite {where}; counted as the worst value"
        if record.cutoff is None:
            if record.milestone < self.grace_period:
                return f"{self.metric} recorded {where}, within grace_period={self.grace_period}"
            return f"{self.metric} continues {where}: fewer than {self.min_samples_required} other trials there"
        best = self._external(st.best)
        best_text = "not finite" if best is None else self._fmt_value(best)
        op = self._comparison(record.decision)
        return (
            f"best {self.metric} {best_text} {op} median {self._fmt_value(record.cutoff)} "
            f"of other trials' running means {where}"
        )


@dataclass(eq=False, slots=True)
class _TrialState:
    last: Verdict
    records: list[RungRecord] = field(default_factory=list)
    recorded: int = 0
    """The highest milestone recorded; milestones 1..recorded all are."""
    best: float = -math.inf
    total: float = 0.0
    count: int = 0
    means: list[float] = field(default_factory=list)
    """The running mean entered at each step from grace_period on, to remove on restore."""
    stopped: Verdict | None = None
    completed: bool = False


def _is_below_median(best: float, median: float) -> bool:
    """Strictly worse than the median stops; a tie continues (maximise space)."""
    return median > best


def _median(values: OrderStatistics) -> float:
    """numpy's median of the finite values: the middle one, or the mean of the two middle ones.

    Non-finite running means (kept as -inf, so they sort first) are skipped.
    """
    skip = values.non_finite()
    n = len(values) - skip
    half = skip + n // 2
    if n % 2:
        return values.kth(half)
    return (values.kth(half - 1) + values.kth(half)) / 2
