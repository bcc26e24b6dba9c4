"""A kept scheduler decides as a fresh one: ASHA's restore over any state, and plan_tick
with a SchedulerCache against plan_tick without one, over seeded random runs."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubetune.api import validate_experiment_spec
from kubetune.controller.planner import (
    ExperimentView,
    Plan,
    PodView,
    SchedulerCache,
    TrialMetrics,
    TrialView,
    plan_tick,
)
from kubetune.controller.planner.schedulers import scheduler_settings
from kubetune.schedulers import (
    AsyncHyperBandScheduler,
    Decision,
    MedianStoppingRule,
    RungRecord,
    TrialScheduler,
)

pytestmark = pytest.mark.unit

MODES = ["max", "min"]
VALUES = [0.1, 0.2, 0.5, 0.5, 0.9, 0.0, -0.0, math.nan, math.inf]
"""Ties, both zeros and non-finite values, where a multiset's order could show."""


def asha(mode: str, brackets: int = 1) -> AsyncHyperBandScheduler:
    return AsyncHyperBandScheduler(metric="acc", mode=mode, max_t=27, grace_period=1,
                                   reduction_factor=3, brackets=brackets)


def value(rng: random.Random) -> float:
    return rng.choice(VALUES) if rng.random() < 0.6 else round(rng.random(), 2)


def behaviour(s: TrialScheduler, trials: list[str]) -> str:
    """Everything a scheduler shows, zero signs included (repr), as one string."""
    records = {t: s.records(t) for t in trials}
    return repr((s.rung_table(), records, sorted(s.trials())))


def verdicts(s: TrialScheduler, trials: list[str], rng: random.Random) -> list[Any]:
    """The answers to one seeded stream of further observations (it changes `s`)."""
    out: list[Any] = []
    for _ in range(30):
        t = rng.choice(trials)
        if rng.random() < 0.15:
            out.append(s.on_complete(t, rng.randint(0, 30), value(rng)))
        else:
            out.append(s.on_result(t, rng.randint(0, 30), value(rng)))
    out.append(behaviour(s, trials))
    return out


def restored(s: TrialScheduler, persisted: dict[str, list[RungRecord]]) -> None:
    """What a tick with a kept scheduler does: forget the trials gone, restore the rest."""
    for t in s.trials():
        if t not in persisted:
            s.forget(t)
    for t, records in persisted.items():
        s.restore(t, records)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("brackets", [1, 2])
@pytest.mark.parametrize("seed", range(6))
def test_asha_restored_over_any_state_equals_a_fresh_restore(mode: str, brackets: int,
                                                             seed: int) -> None:
    rng = random.Random(seed)
    live = asha(mode, brackets)
    names = [f"t{i}" for i in range(8)]
    history: dict[str, list[list[RungRecord]]] = {t: [[]] for t in names}
    """Record lists each trial once held: what a status may still carry after failed writes."""
    persisted: dict[str, list[RungRecord]] = {}
    for round_ in range(40):
        for _ in range(rng.randint(1, 12)):
            t, op = rng.choice(names), rng.random()
            if op < 0.65:
                live.on_result(t, rng.randint(0, 30), value(rng))
            elif op < 0.8:
                live.on_complete(t, rng.randint(0, 30), value(rng))
            elif op < 0.95:
                live.restore(t, rng.choice(history[t]))
            else:
                live.forget(t)
            history[t].append(live.records(t))
        for t in names:
            if rng.random() < 0.1:
                persisted.pop(t, None)  # the TuneTrial was deleted
            elif t in live.trials() and rng.random() < 0.5:
                persisted[t] = rng.choice(history[t][-3:])  # a write went through
        restored(live, persisted)
        fresh = asha(mode, brackets)
        for t, records in sorted(persisted.items(), key=lambda item: rng.random()):
            fresh.restore(t, records)
        assert behaviour(live, names) == behaviour(fresh, names), round_
        future = rng.randint(0, 10**9)
        assert verdicts(live, names, random.Random(future)) == verdicts(
            fresh, names, random.Random(future)), round_
        for t in names:
            history[t].append(live.records(t))


@pytest.mark.parametrize("mode", MODES)
def test_asha_restore_of_unchanged_records_resets_a_completed_trial(mode: str) -> None:
    s = asha(mode)
    s.on_result("a", 1, 0.5)
    s.on_result("b", 1, 0.4)
    records = s.records("a")
    s.on_complete("a", 2, 0.6)
    assert s.on_result("a", 3, 0.9).decision is Decision.STOP
    s.restore("a", records)
    fresh = asha(mode)
    fresh.restore("a", records)
    fresh.restore("b", s.records("b"))
    assert s.on_result("a", 3, 0.9) == fresh.on_result("a", 3, 0.9)
    assert s.on_result("a", 3, 0.9).decision is Decision.CONTINUE


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("later", ["rung", "complete"])
def test_asha_restore_from_the_same_list_drops_what_was_added_since(mode: str,
                                                                     later: str) -> None:
    # A tick's decision adds a record the write then fails to persist: the next tick
    # restores from the very list it restored from before, and the record must go.
    s = asha(mode)
    s.on_result("b", 1, 0.4)
    s.on_result("b", 3, 0.4)
    s.on_result("a", 1, 0.5 if mode == "max" else 0.3)  # better than b: it continues
    records = s.records("a")
    s.restore("a", records)
    if later == "rung":
        s.on_result("a", 3, 0.1 if mode == "max" else 0.9)
    else:
        s.on_complete("a", 5, 0.7)
    assert len(s.records("a")) == 2
    s.restore("a", records)
    assert s.records("a") == records
    fresh = asha(mode)
    fresh.restore("b", s.records("b"))
    fresh.restore("a", records)
    assert s.on_result("a", 3, 0.45) == fresh.on_result("a", 3, 0.45)


def record(milestone: int, value: float | None, decision: Decision = Decision.CONTINUE,
           cutoff: float | None = None) -> RungRecord:
    return RungRecord(milestone=milestone, value=value, step=milestone, cutoff=cutoff,
                      decision=decision)


@pytest.mark.parametrize("mode", MODES)
def test_cutoff_of_a_zero_does_not_depend_on_which_zero_was_removed(mode: str) -> None:
    kept = asha(mode)
    kept.restore("b", [record(1, 0.0)])
    kept.restore("a", [record(1, -0.0)])
    kept.forget("a")  # removes one of two equal zeros: either may go
    fresh = asha(mode)
    fresh.restore("b", [record(1, 0.0)])
    assert repr(kept.rung_table()) == repr(fresh.rung_table())
    assert repr(kept.on_result("c", 1, 0.5)) == repr(fresh.on_result("c", 1, 0.5))


@pytest.mark.parametrize("mode", MODES)
def test_restore_takes_records_that_differ_only_in_a_zeros_sign(mode: str) -> None:
    kept = asha(mode)
    kept.restore("a", [record(1, 0.0)])
    kept.restore("a", [record(1, -0.0)])
    fresh = asha(mode)
    fresh.restore("a", [record(1, -0.0)])
    assert repr(kept.records("a")) == repr(fresh.records("a"))
    assert repr(kept.on_result("a", 2, 0.5)) == repr(fresh.on_result("a", 2, 0.5))


def test_forget_removes_the_trials_values_from_its_rungs() -> None:
    s = asha("max")
    s.on_result("a", 1, 0.5)
    s.on_result("b", 1, 0.1)
    s.forget("a")
    assert s.trials() == ["b"]
    assert s.records("a") == []
    assert s.rung_table()[0].recorded == 1
    assert s.rung_table()[0].cutoff == 0.1


def test_median_rule_forgets_a_trials_running_means() -> None:
    s = MedianStoppingRule(metric="acc", mode="max", max_t=5, grace_period=1,
                           min_samples_required=1)
    s.on_result("a", 2, 0.5)
    s.on_result("b", 2, 0.9)
    s.forget("a")
    assert s.trials() == ["b"]
    assert [r.recorded for r in s.rung_table()[:2]] == [1, 1]


# plan_tick with and without a cache


NOW = datetime(2026, 1, 1, tzinfo=UTC)
ALL_MILESTONES = (1, 3, 9)


def raw_spec(scheduler: dict[str, Any], mode: str) -> dict[str, Any]:
    return {
        "objective": {"metric": "accuracy", "mode": mode},
        "searchSpace": {"lr": {"loguniform": [1e-4, 1e-1]}},
        "numSamples": 40,
        "maxConcurrentTrials": 8,
        "trialRetries": 1,
        "maxFailedTrials": 30,
        "scheduler": scheduler,
        "trialTemplate": {"spec": {"containers": [{"name": "t", "image": "x",
                                                   "command": ["train"]}]}},
    }


def merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """Apply a JSON merge patch as the apiserver does (a null deletes, lists are replaced)."""
    for key, new in patch.items():
        if new is None:
            target.pop(key, None)
        elif isinstance(new, dict) and isinstance(target.get(key), dict):
            merge(target[key], new)
        elif isinstance(new, dict):
            target[key] = {}
            merge(target[key], new)
        else:
            target[key] = new


def wire(plan: Plan) -> str:
    """The whole Plan as the operator would write it, floats in repr (zero signs kept)."""
    return json.dumps({
        "new_trials": [dataclasses.asdict(t) for t in plan.new_trials],
        "new_pods": [dataclasses.asdict(p) for p in plan.new_pods],
        "trial_status": {n: s.merge_patch() for n, s in plan.trial_status.items()},
        "delete_pods": plan.delete_pods,
        "experiment_status": (plan.experiment_status.merge_patch()
                              if plan.experiment_status is not None else None),
        "events": [dataclasses.asdict(e) for e in plan.events],
        "more_to_create": plan.more_to_create,
    }, sort_keys=True, default=repr)


class Cluster:
    """The TuneTrials, Pods and Prometheus of one experiment, moved on by seeded chance."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.trials: dict[str, TrialView] = {}
        self.pods: dict[str, PodView] = {}
        self.steps: dict[str, int] = {}
        self.observed: dict[str, dict[int, tuple[int, float]]] = {}
        self.status: dict[str, Any] = {}

    def apply(self, plan: Plan, now: str) -> None:
        rng = self.rng
        for t in plan.new_trials:
            name = f"exp-{t.index}"
            self.trials.setdefault(name, TrialView(name, t.index, t.params, {}))
        for name, status in plan.trial_status.items():
            if name in self.trials and rng.random() < 0.75:  # else the write failed
                # A write makes a new version, which the operator parses into a new view;
                # an unchanged trial keeps its view (and its records list) between ticks.
                stored = json.loads(json.dumps(self.trials[name].status))
                merge(stored, status.merge_patch())
                self.trials[name] = dataclasses.replace(self.trials[name], status=stored)
        for p in plan.new_pods:
            pod = f"{p.trial}-{p.attempt}"
            self.pods.setdefault(pod, PodView(pod, p.trial, p.attempt, "Pending"))
        for pod, _ in plan.delete_pods:
            if pod in self.pods:
                if rng.random() < 0.3:
                    self.pods[pod] = dataclasses.replace(self.pods[pod], deleting=True)
                else:
                    del self.pods[pod]
        if plan.experiment_status is not None and rng.random() < 0.8:
            merge(self.status, plan.experiment_status.merge_patch())

    def advance(self, now: str) -> None:
        rng = self.rng
        for name, pod in list(self.pods.items()):
            if pod.deleting:
                if rng.random() < 0.6:
                    del self.pods[name]
            elif pod.phase == "Pending" and rng.random() < 0.7:
                self.pods[name] = dataclasses.replace(pod, phase="Running", running_since=now)
            elif pod.phase == "Running":
                step = self.steps[pod.trial] = self.steps.get(pod.trial, 0) + rng.randint(0, 4)
                seen = self.observed.setdefault(pod.trial, {})
                for m in ALL_MILESTONES:
                    if m <= step and m not in seen:
                        seen[m] = (step, value(rng))
                if rng.random() < 0.04:
                    self.pods[name] = dataclasses.replace(pod, phase="Failed", exit_code=1,
                                                          main_terminated=True)
                elif step >= 9 or rng.random() < 0.05:
                    self.pods[name] = dataclasses.replace(pod, phase="Succeeded", exit_code=0,
                                                          main_terminated=True)
        if self.trials and rng.random() < 0.04:
            del self.trials[rng.choice(sorted(self.trials))]  # deleted by hand

    def snapshot(self) -> dict[str, TrialMetrics] | None:
        if self.rng.random() < 0.1:
            return None  # Prometheus could not be read
        out = {}
        for name, seen in self.observed.items():
            rungs = {m: v for m, v in seen.items() if self.rng.random() < 0.85}  # scrape lag
            latest = max(seen.values()) if seen else None
            out[name] = TrialMetrics(
                step=self.steps.get(name), rungs=rungs,
                metrics={"accuracy": latest[1]} if latest else {})
        return out


SCENARIOS = {
    "asha": {"type": "asha", "maxT": 9, "gracePeriod": 1, "reductionFactor": 3},
    "hyperband": {"type": "asha", "maxT": 9, "gracePeriod": 1, "reductionFactor": 3,
                  "brackets": 2},
    "asha-trial-index": {"type": "asha", "maxT": 9, "gracePeriod": 1, "reductionFactor": 3,
                         "decisionOrder": "trialIndex"},
    "median": {"type": "median", "maxT": 9, "gracePeriod": 1, "minSamplesRequired": 2},
}


def tick(exp: ExperimentView, cluster: Cluster, snapshot: dict[str, TrialMetrics] | None,
         now: str, cache: SchedulerCache | None) -> Plan | str:
    """plan_tick's Plan, or the error it raised."""
    try:
        return plan_tick(exp, list(cluster.trials.values()), list(cluster.pods.values()),
                         snapshot, now, creates=5, schedulers=cache)
    except ValueError as err:
        return f"ValueError: {err}"


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("seed", range(4))
def test_plan_with_a_kept_scheduler_equals_the_plan_of_a_fresh_one(scenario: str,
                                                                   seed: int) -> None:
    rng = random.Random(seed)
    cluster = Cluster(rng)
    mode = rng.choice(MODES)
    cache = SchedulerCache()
    pruned = kept_ticks = 0
    for n in range(160):
        if rng.random() < 0.03:
            mode = "min" if mode == "max" else "max"  # a settings change
        if rng.random() < 0.04:
            cache = SchedulerCache()  # an operator restart
        spec = validate_experiment_spec(raw_spec(SCENARIOS[scenario], mode))
        exp = ExperimentView("exp", "ns", 1, spec, json.loads(json.dumps(cluster.status)))
        now = (NOW + timedelta(seconds=7 * n)).strftime("%Y-%m-%dT%H:%M:%SZ")
        snapshot = cluster.snapshot()
        kept_ticks += len(cache)  # a scheduler kept from the tick before
        with_cache = tick(exp, cluster, snapshot, now, cache)
        without = tick(exp, cluster, snapshot, now, None)
        assert with_cache == without, n
        if isinstance(with_cache, Plan):
            assert isinstance(without, Plan)
            assert wire(with_cache) == wire(without), n
            pruned += sum(1 for s in with_cache.trial_status.values()
                          if s.state is not None and s.state.value == "Pruned")
            cluster.apply(with_cache, now)
        cluster.advance(now)
    assert pruned > 0  # the run took stop decisions
    if scenario != "median":
        assert kept_ticks > 100  # and most ticks started from a kept scheduler


# The cache


def asha_spec(mode: str = "max") -> Any:
    return validate_experiment_spec(raw_spec(SCENARIOS["asha"], mode))


def test_cache_keeps_an_asha_scheduler_and_drops_it_when_settings_change() -> None:
    cache = SchedulerCache()
    spec = asha_spec()
    exp = ExperimentView("exp", "ns", 1, spec, {})
    plan_tick(exp, [], [], None, "2026-01-01T00:00:00Z", schedulers=cache)
    assert len(cache) == 1
    assert cache.take("ns", "exp", scheduler_settings(asha_spec("min"))) is None
    assert len(cache) == 0
    plan_tick(exp, [], [], None, "2026-01-01T00:00:00Z", schedulers=cache)
    assert isinstance(cache.take("ns", "exp", scheduler_settings(spec)),
                      AsyncHyperBandScheduler)


def test_cache_does_not_keep_other_scheduler_kinds() -> None:
    cache = SchedulerCache()
    spec = validate_experiment_spec(raw_spec(SCENARIOS["median"], "max"))
    plan_tick(ExperimentView("exp", "ns", 1, spec, {}), [], [], None,
              "2026-01-01T00:00:00Z", schedulers=cache)
    assert len(cache) == 0


def test_forget_experiment_drops_its_scheduler() -> None:
    cache = SchedulerCache()
    spec = asha_spec()
    for name in ("a", "b"):
        plan_tick(ExperimentView(name, "ns", 1, spec, {}), [], [], None,
                  "2026-01-01T00:00:00Z", schedulers=cache)
    cache.forget_experiment("ns", "a")
    assert cache.take("ns", "a", scheduler_settings(spec)) is None
    assert cache.take("ns", "b", scheduler_settings(spec)) is not None


def test_a_tick_that_raises_leaves_no_scheduler_behind() -> None:
    cache = SchedulerCache()
    spec = asha_spec()
    exp = ExperimentView("exp", "ns", 1, spec, {})
    plan_tick(exp, [], [], None, "2026-01-01T00:00:00Z", schedulers=cache)
    bad = TrialView("exp-0", 0, {"lr": 0.01}, {"state": "Running", "rungs": [
        {"milestone": 2, "value": 0.5, "step": 2, "decision": "continue"}]})
    with pytest.raises(ValueError, match="milestone 2"):
        plan_tick(exp, [bad], [], None, "2026-01-01T00:00:00Z", schedulers=cache)
    assert len(cache) == 0
