"""Asynchronous successive halving (ASHA), the stopping variant Ray Tune ships.

Each bracket has rungs at grace_period * reduction_factor**(k + s). When a
trial reaches a rung, its value is compared with the (1 - 1/rf) quantile of
the values other trials recorded there; a value strictly below it stops the
trial, and the first trial at a rung always continues. A report at or past
max_t stops the trial (Ray's stop_last_trials=True).

With one bracket and a report at every step this takes exactly Ray's
decisions (`AsyncHyperBandScheduler`): the same rung set, including the rung
Ray's floating-point formula puts at max_t for some settings and not others;
the same cutoff, numpy's `nanpercentile` with linear interpolation
reproduced bit for bit in `linear_percentile`; the same strict `<` in
maximise space. Two cases are handled differently on purpose:

1. NaN or +-inf is the worst value. It is recorded (as None) and stops the
   trial at the first rung it reaches, even as the first trial there. It
   takes no part in other trials' cutoffs: a rung's cutoff is the quantile of
   its finite values only (as Ray's nanpercentile leaves NaN out), so one
   diverged trial can neither drag a cutoff to -inf nor let a bad trial
   through. Ray never stops a NaN trial, and ranks +inf (max mode) as the best.
2. A report that skips milestones (Prometheus scrapes) fills every rung it
   passed in ascending order with the first value observed at or past it,
   and stops at the first rung that says stop. Ray records it at the highest
   rung and fills the lower ones later with values from later steps.

A trial stopped at a rung records nothing more, not even its final result.

Brackets: trial ids, not a random draw, choose the bracket, so a restarted
operator puts every trial back where it was. crc32(id) modulo the sum of
Hyperband's bracket sizes ceil(B * rf**h / (h + 1)) (h = B - 1 - bracket)
picks it, as Optuna's HyperbandPruner does. Ray parity holds for brackets=1.
"""

from __future__ import annotations

import bisect
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from kubetune.api import Decision, RungRecord, RungSummary
from kubetune.schedulers._arguments import check_budget, check_int
from kubetune.schedulers._order_statistics import OrderStatistics, rung_cutoff
from kubetune.schedulers.base import TrialScheduler, Verdict


class AsyncHyperBandScheduler(TrialScheduler):
    """Ray Tune's ASHA (AsyncHyperBandScheduler): stops a trial below its rung's cutoff."""

    def __init__(
        self,
        *,
        metric: str,
        mode: str,
        time_attr: str = "training_iteration",
        max_t: int = 100,
        grace_period: int = 1,
        reduction_factor: float = 4,
        brackets: int = 1,
    ) -> None:
        super().__init__(metric=metric, mode=mode, time_attr=time_attr)
        check_budget(max_t, grace_period)
        if (
            isinstance(reduction_factor, bool)
            or not isinstance(reduction_factor, int | float)
            or not math.isfinite(reduction_factor)
            or reduction_factor <= 1
        ):
            raise ValueError(f"reduction_factor must be a number > 1 (got {reduction_factor!r})")
        check_int("brackets", brackets, minimum=1)
        most = _rung_count(grace_period, max_t, reduction_factor, 0)
        if most > _MAX_RUNGS:
            raise ValueError(
                f"reduction_factor must leave at most {_MAX_RUNGS} rungs between grace_period="
                f"{grace_period} and max_t={max_t} (got {reduction_factor!r}, which makes {most})"
            )
        if brackets > most:
            raise ValueError(
                f"brackets must be <= {most}, the number of rungs with grace_period="
                f"{grace_period}, max_t={max_t}, reduction_factor={reduction_factor} "
                f"(got {brackets}); a bracket beyond that would have no rung"
            )
        self.max_t = max_t
        self.grace_period = grace_period
        self.reduction_factor = reduction_factor
        # nanpercentile receives (1 - 1/rf) * 100 and divides it by 100 again.
        self._quantile = ((1 - 1 / reduction_factor) * 100) / 100
        self._brackets = [
            _Bracket(_rung_milestones(grace_period, max_t, reduction_factor, s))
            for s in range(brackets)
        ]
        self._bracket_weights = _bracket_weights(brackets, reduction_factor)
        self._waiting = [self._waiting_verdict(b) for b in range(brackets)]
        self._trials: dict[str, _TrialState] = {}
        self._max_t_verdict = Verdict(Decision.STOP, f"reached max_t={max_t}")
        self._completed_verdict = Verdict(Decision.STOP, "trial already completed")

    def milestones(self, trial: str) -> list[int]:
        return list(self._brackets[self._bracket_of(trial)].milestones)

    def on_result(self, trial: str, step: int, value: float) -> Verdict:
        """Judge every rung this observation reaches, lowest first.

        A trial that was stopped, completed or reached max_t gets STOP again and
        records nothing; an observation that reaches no new rung gets the
        previous answer again.
        """
        st = self._state(trial)
        if st.stopped is not None:
            return st.stopped
        if st.completed:
            return self._completed_verdict
        if st.reached_max_t or step >= self.max_t:
            st.reached_max_t = True
            return self._max_t_verdict
        bracket = self._brackets[st.bracket]
        milestones = bracket.milestones
        i = st.next_rung
        if i >= len(milestones) or step < milestones[i]:
            return st.last
        raw = float(value)
        finite = math.isfinite(raw)
        internal = self._metric_op * raw if finite else -math.inf
        while i < len(milestones) and step >= milestones[i]:
            rung = bracket.rungs[i]
            cutoff = rung_cutoff(rung, self._quantile)
            if not finite or (cutoff is not None and internal < cutoff):
                decision = Decision.STOP
            else:
                decision = Decision.CONTINUE
            record = RungRecord(
                milestone=milestones[i],
                value=raw if finite else None,
                step=step,
                cutoff=None if cutoff is None else self._external(cutoff),
                decision=decision,
            )
            rung.add(internal)
            st.records.append(record)
            st.internal.append(internal)
            st.given = None  # holds more than it was restored from
            i += 1
            if decision is Decision.STOP:
                st.next_rung = i
                st.stopped = Verdict(Decision.STOP, self._reason(record), record)
                return st.stopped
        st.next_rung = i
        st.last = Verdict(Decision.CONTINUE, self._reason(st.records[-1]))
        return st.last

    def on_complete(self, trial: str, step: int, value: float | None) -> None:
        """Record the final value as Ray's on_trial_complete does.

        It goes to the highest milestone <= step unless the trial already has a
        record there or above. A trial stopped at a rung records nothing more.
        """
        st = self._state(trial)
        if st.stopped is not None or st.completed:
            return
        st.completed = True
        if value is None:
            return
        bracket = self._brackets[st.bracket]
        j = bisect.bisect_right(bracket.milestones, step) - 1
        if j < st.next_rung:
            return
        raw = float(value)
        internal = self._internal(raw)
        bracket.rungs[j].add(internal)
        st.records.append(
            RungRecord(
                milestone=bracket.milestones[j],
                value=raw if math.isfinite(raw) else None,
                step=step,
                cutoff=None,
                decision=Decision.CONTINUE,
            )
        )
        st.internal.append(internal)
        st.given = None
        st.next_rung = j + 1

    def records(self, trial: str) -> list[RungRecord]:
        st = self._trials.get(trial)
        return [] if st is None else list(st.records)

    def restore(self, trial: str, records: Sequence[RungRecord]) -> None:
        """Replace this trial's state with persisted records.

        The trial's bracket follows from its id. Whether it completed or reached
        max_t is not in the records: the operator knows that from the trial's state.
        Records identical to those the trial holds leave its rung values in place and only
        reset what they decide: restoring every trial each tick is cheap when few changed.
        The very sequence restored from last time is taken as unchanged without comparing
        (the operator's views hand each trial's records as one list until the trial
        changes: controller/view.py TrialViews).
        """
        st = self._trials.get(trial)
        if st is not None and st.given is records:
            self._settle(st)
            return
        ordered = sorted(records, key=lambda r: r.milestone)
        if st is not None and _identical(st.records, ordered):
            st.given = records
            self._settle(st)
            return
        bracket = self._brackets[self._bracket_of(trial)]
        indexes: list[int] = []
        for record in ordered:
            index = bracket.index.get(record.milestone)
            if index is None:
                raise ValueError(
                    f"trial {trial!r} has a record at milestone {record.milestone}, which is "
                    f"not one of its rungs {list(bracket.milestones)}"
                )
            if indexes and indexes[-1] == index:
                raise ValueError(f"trial {trial!r} has two records at milestone {record.milestone}")
            indexes.append(index)
        stops = [r for r in ordered if r.decision is Decision.STOP]
        if stops and stops[0] is not ordered[-1]:
            raise ValueError(
                f"trial {trial!r} was stopped at milestone {stops[0].milestone} "
                "but has records at higher milestones"
            )
        self.forget(trial)
        st = self._state(trial)
        for record, index in zip(ordered, indexes, strict=True):
            internal = self._internal(record.value)
            bracket.rungs[index].add(internal)
            st.records.append(record)
            st.internal.append(internal)
        st.given = records
        self._settle(st)

    def forget(self, trial: str) -> None:
        st = self._trials.pop(trial, None)
        if st is None:
            return
        bracket = self._brackets[st.bracket]
        for record, internal in zip(st.records, st.internal, strict=True):
            bracket.rungs[bracket.index[record.milestone]].remove(internal)

    def trials(self) -> list[str]:
        return list(self._trials)

    def rung_table(self) -> list[RungSummary]:
        table = []
        for b, bracket in enumerate(self._brackets):
            for milestone, rung in zip(bracket.milestones, bracket.rungs, strict=True):
                cutoff = rung_cutoff(rung, self._quantile)
                table.append(
                    RungSummary(
                        milestone=milestone,
                        recorded=len(rung),
                        cutoff=None if cutoff is None else self._external(cutoff),
                        bracket=b,
                    )
                )
        return table

    def _state(self, trial: str) -> _TrialState:
        st = self._trials.get(trial)
        if st is None:
            bracket = self._bracket_of(trial)
            st = _TrialState(bracket, self._waiting[bracket])
            self._trials[trial] = st
        return st

    def _waiting_verdict(self, bracket: int) -> Verdict:
        """The answer to a trial of `bracket` that has reached no rung yet."""
        milestones = self._brackets[bracket].milestones
        if not milestones:
            return Verdict(Decision.CONTINUE, f"no rungs in this bracket; runs to max_t={self.max_t}")
        return Verdict(Decision.CONTINUE, f"no rung reached yet (first milestone {milestones[0]})")

    def _settle(self, st: _TrialState) -> None:
        """Set what a restore derives from the trial's (valid, ascending) records."""
        st.next_rung, st.stopped, st.last = 0, None, self._waiting[st.bracket]
        st.reached_max_t = st.completed = False
        if not st.records:
            return
        last = st.records[-1]
        st.next_rung = self._brackets[st.bracket].index[last.milestone] + 1
        if st.settled is None or st.settled[0] is not last:
            rung = last if last.decision is Decision.STOP else None
            st.settled = (last, Verdict(last.decision, self._reason(last), rung))
        if last.decision is Decision.STOP:  # a stop is always the last record
            st.stopped = st.settled[1]
        else:
            st.last = st.settled[1]

    def _bracket_of(self, trial: str) -> int:
        if len(self._brackets) == 1:
            return 0
        return _bracket_for_id(trial, self._bracket_weights)

    def _reason(self, record: RungRecord) -> str:
        where = f"at rung {record.milestone} (step {record.step})"
        if record.value is None:
            return f"{self.metric} is not finite {where}; counted as the worst value"
        value = self._fmt_value(record.value)
        if record.cutoff is None:
            return f"{self.metric} {value} continues {where}: no finite cutoff there yet"
        op = self._comparison(record.decision)
        return f"{self.metric} {value} {op} cutoff {self._fmt_value(record.cutoff)} {where}"


ASHAScheduler = AsyncHyperBandScheduler

_MAX_RUNGS = 1000


@dataclass(eq=False, slots=True)
class _Bracket:
    milestones: tuple[int, ...]
    rungs: list[OrderStatistics] = field(init=False)
    index: dict[int, int] = field(init=False)

    def __post_init__(self) -> None:
        self.rungs = [OrderStatistics() for _ in self.milestones]
        self.index = {m: i for i, m in enumerate(self.milestones)}


@dataclass(eq=False, slots=True)
class _TrialState:
    bracket: int
    last: Verdict
    """The answer to an observation that reaches no new rung."""
    records: list[RungRecord] = field(default_factory=list)
    internal: list[float] = field(default_factory=list)
    """Each record's value in maximise space, kept to remove it on restore."""
    next_rung: int = 0
    stopped: Verdict | None = None
    reached_max_t: bool = False
    completed: bool = False
    settled: tuple[RungRecord, Verdict] | None = None  # the last record and its verdict
    given: Sequence[RungRecord] | None = None
    """The sequence the trial was last restored from (by identity), not a copy."""


def _identical(held: Sequence[RungRecord], given: Sequence[RungRecord]) -> bool:
    """The same records, down to the sign of a zero (which == ignores and a reason shows)."""
    return held == given and all(
        repr(a) == repr(b) for a, b in zip(held, given, strict=True) if a.value == 0 or a.cutoff == 0
    )


def _rung_count(grace_period: int, max_t: int, rf: float, s: int) -> int:
    """Ray's MAX_RUNGS, floating point included (math.log matches np.log here)."""
    return max(0, int(math.log(max_t / grace_period) / math.log(rf) - s + 1))


def _rung_milestones(grace_period: int, max_t: int, rf: float, s: int) -> tuple[int, ...]:
    """Ray's rungs for bracket s, ascending, as the first integer step at or past each.

    Steps are integers, so `step >= 6.25` and `step >= 7` agree; two rungs that
    round up to the same step (rf < 2) become one.
    """
    count = _rung_count(grace_period, max_t, rf, s)
    return tuple(sorted({math.ceil(grace_period * rf ** (k + s)) for k in range(count)}))


def _bracket_weights(brackets: int, rf: float) -> tuple[int, ...]:
    """Hyperband's bracket sizes; bracket 0, with the most rungs, gets the most trials."""
    weights = []
    for b in range(brackets):
        h = brackets - 1 - b
        weights.append(math.ceil(brackets * rf**h / (h + 1)))
    return tuple(weights)


def _bracket_for_id(trial: str, weights: Sequence[int]) -> int:
    h = zlib.crc32(trial.encode("utf-8")) % sum(weights)
    for b, w in enumerate(weights):
        h -= w
        if h < 0:
            return b
    raise AssertionError("unreachable: h < sum(weights)")
