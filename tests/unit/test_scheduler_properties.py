"""Properties every stopping scheduler keeps, checked on generated observation streams."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from kubetune.schedulers import (
    Decision,
    RungRecord,
    TrialScheduler,
    Verdict,
    make_scheduler,
)


@dataclass(frozen=True)
class Event:
    trial: int
    advance: int
    """Steps to move forward; 0 repeats the trial's last observation."""
    value: float
    complete: bool


@dataclass(frozen=True)
class Setting:
    type: str
    max_t: int
    grace_period: int
    reduction_factor: float
    brackets: int
    min_samples_required: int

    def build(self, mode: str) -> TrialScheduler:
        return make_scheduler(
            self.type,
            metric="m",
            mode=mode,
            max_t=self.max_t,
            grace_period=self.grace_period,
            reduction_factor=self.reduction_factor,
            brackets=self.brackets,
            min_samples_required=self.min_samples_required,
        )


FINITE = st.one_of(
    st.sampled_from([0.0, 0.25, 0.5, 1.0, -1.0]),  # ties
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
)
ANY_VALUE = st.one_of(FINITE, st.sampled_from([math.nan, math.inf, -math.inf]))


@st.composite
def settings_(draw: st.DrawFn, *, one_bracket: bool = False) -> Setting:
    kind = draw(st.sampled_from(["asha", "median"]))
    max_t = draw(st.integers(3, 30))
    grace = draw(st.integers(1, 3).filter(lambda g: g <= max_t))
    rf = draw(st.sampled_from([2, 3, 4, 2.5]))
    two_possible = kind == "asha" and not one_bracket and grace * rf <= max_t
    brackets = draw(st.integers(1, 2)) if two_possible else 1
    return Setting(kind, max_t, grace, rf, brackets, draw(st.integers(1, 3)))


def events(values: st.SearchStrategy[float]) -> st.SearchStrategy[list[Event]]:
    return st.lists(
        st.builds(
            Event,
            trial=st.integers(0, 6),
            advance=st.sampled_from([0, 1, 1, 1, 1, 2, 5]),
            value=values,
            complete=st.integers(0, 9).map(lambda k: k == 0),
        ),
        min_size=30,
        max_size=100,
    )


@dataclass
class Step:
    trial: str
    verdict: Verdict | None
    """None for on_complete."""


def run(
    s: TrialScheduler,
    stream: list[Event],
    *,
    name: str = "t{}",
    sign: float = 1.0,
    state: dict[int, tuple[int, float]] | None = None,
    done: set[int] | None = None,
    repeat: bool = False,
) -> list[Step]:
    """Feed a stream; each trial's steps only go forward and it ends at on_complete.

    With `repeat`, every observation is fed twice and must get the same verdict twice.
    """
    state = {} if state is None else state
    done = set() if done is None else done
    out = []
    for e in stream:
        if e.trial in done:
            continue
        trial = name.format(e.trial)
        step, value = state.get(e.trial, (0, 0.0))
        if e.advance or not step:
            step, value = step + max(e.advance, 1), sign * e.value
        state[e.trial] = (step, value)
        if e.complete:
            done.add(e.trial)
            s.on_complete(trial, step, value)
            out.append(Step(trial, None))
        else:
            verdict = s.on_result(trial, step, value)
            if repeat:
                assert s.on_result(trial, step, value) == verdict
            out.append(Step(trial, verdict))
    return out


def all_records(s: TrialScheduler, n: int = 7, name: str = "t{}") -> list[list[RungRecord]]:
    return [s.records(name.format(i)) for i in range(n)]


@settings(max_examples=40, deadline=None)
@given(setting=settings_(), mode=st.sampled_from(["min", "max"]), stream=events(FINITE))
def test_first_trial_at_a_rung_is_never_stopped(
    setting: Setting, mode: str, stream: list[Event]
) -> None:
    s = setting.build(mode)
    steps: dict[int, int] = {}
    for e in stream:
        trial = f"t{e.trial}"
        steps[e.trial] = steps.get(e.trial, 0) + max(e.advance, 1)
        before = {(r.bracket, r.milestone): r.recorded for r in s.rung_table()}
        verdict = s.on_result(trial, steps[e.trial], e.value)
        if verdict.decision is Decision.STOP and verdict.rung is not None:
            assert verdict.rung.cutoff is not None
            if setting.brackets == 1:
                assert before[0, verdict.rung.milestone] > 0


@settings(max_examples=40, deadline=None)
@given(setting=settings_(), stream=events(ANY_VALUE))
def test_max_mode_on_x_decides_as_min_mode_on_minus_x(
    setting: Setting, stream: list[Event]
) -> None:
    high, low = setting.build("max"), setting.build("min")
    for a, b in zip(run(high, stream), run(low, stream, sign=-1.0), strict=True):
        assert (a.verdict and a.verdict.decision) == (b.verdict and b.verdict.decision)
    for ra, rb in zip(all_records(high), all_records(low), strict=True):
        assert [_mirror(r) for r in ra] == rb


def _mirror(r: RungRecord) -> RungRecord:
    return RungRecord(
        milestone=r.milestone,
        value=None if r.value is None else -r.value,
        step=r.step,
        cutoff=None if r.cutoff is None else -r.cutoff,
        decision=r.decision,
    )


@settings(max_examples=40, deadline=None)
@given(
    setting=settings_(),
    mode=st.sampled_from(["min", "max"]),
    stream=events(ANY_VALUE),
    split=st.floats(0, 1),
)
def test_restored_scheduler_takes_the_same_future_decisions(
    setting: Setting, mode: str, stream: list[Event], split: float
) -> None:
    cut = int(len(stream) * split)
    original = setting.build(mode)
    state: dict[int, tuple[int, float]] = {}
    done: set[int] = set()
    run(original, stream[:cut], state=state, done=done)

    restarted = setting.build(mode)
    for i in range(7):
        persisted = json.loads(json.dumps([r.to_dict() for r in original.records(f"t{i}")]))
        restarted.restore(f"t{i}", [RungRecord.from_dict(d) for d in persisted])
    assert restarted.rung_table() == original.rung_table()

    after_a = run(original, stream[cut:], state=dict(state), done=set(done))
    after_b = run(restarted, stream[cut:], state=dict(state), done=set(done))
    assert [x.verdict for x in after_a] == [x.verdict for x in after_b]
    assert all_records(original) == all_records(restarted)
    assert original.rung_table() == restarted.rung_table()


@settings(max_examples=40, deadline=None)
@given(
    setting=settings_(one_bracket=True),
    mode=st.sampled_from(["min", "max"]),
    stream=events(ANY_VALUE),
    spelling=st.sampled_from(["exp-{}", "x{}", "a-much-longer-experiment-name-{}-trial", "{}"]),
)
def test_decisions_do_not_depend_on_trial_id_spelling(
    setting: Setting, mode: str, stream: list[Event], spelling: str
) -> None:
    a = run(setting.build(mode), stream)
    b = run(setting.build(mode), stream, name=spelling)
    assert [x.verdict for x in a] == [x.verdict for x in b]


@settings(max_examples=40, deadline=None)
@given(setting=settings_(), mode=st.sampled_from(["min", "max"]), stream=events(ANY_VALUE))
def test_repeating_every_observation_changes_nothing(
    setting: Setting, mode: str, stream: list[Event]
) -> None:
    once, twice = setting.build(mode), setting.build(mode)
    expected = run(once, stream)
    got = run(twice, stream, repeat=True)
    assert [x.verdict for x in got] == [x.verdict for x in expected]
    assert all_records(once) == all_records(twice)
