"""One trial's life within a tick: Pending -> Running -> Succeeded | Pruned | Failed.

`TrialMachine.advance` looks at one trial, its latest pod and its metrics, and
records what follows in the tick's Plan: the trial's status patch, the rung
values fed to the scheduler (and a STOP turned into a pruned trial and a pod
deletion), a retry for a failed pod, Events. Trials are advanced in index
order; with `decisionOrder: trialIndex` a trial's rung values wait until every
earlier live trial has recorded that rung.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from kubetune.api import Decision, PrunedAt, RungRecord, TrialState, TuneExperimentSpec
from kubetune.contract import TerminationMessage
from kubetune.controller.planner.actions import NewPod, Plan
from kubetune.controller.planner.views import (
    PodView,
    TrialMetrics,
    TrialView,
    parse_termination_message,
)
from kubetune.schedulers import TrialScheduler, Verdict

TERMINAL = frozenset({TrialState.SUCCEEDED.value, TrialState.PRUNED.value,
                      TrialState.FAILED.value})
"""The TrialState values a trial never leaves."""


def finite(value: Any) -> float | None:
    """`value` as a float when it is a finite number, else None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _rungs_from(data: TerminationMessage) -> dict[int, tuple[int, float]]:
    return {int(milestone): (rec["step"], rec["value"])
            for milestone, rec in data.get("rungs", {}).items() if "value" in rec}


class TrialMachine:
    """Advances each trial of one experiment by one tick, writing into one Plan."""

    def __init__(self, spec: TuneExperimentSpec, scheduler: TrialScheduler,
                 restored: Mapping[str, list[RungRecord]], plan: Plan,
                 snapshot: Mapping[str, TrialMetrics] | None, now: str) -> None:
        self.spec = spec
        self.scheduler = scheduler
        self.restored = restored
        """Each trial's rung records as stored, which the scheduler was rebuilt from."""
        self.plan = plan
        self.snapshot = snapshot
        self.now = now
        self.objective = spec.objective.metric
        self.states: dict[str, str] = {}
        """Every trial's TrialState value as of the end of this tick, by trial name."""
        self.ordered = spec.scheduler.decision_order == "trialIndex"
        self._blocked: set[int] = set()
        """Milestones an earlier live trial has not recorded yet (ordered decisions only)."""

    def advance(self, trial: TrialView, pods: list[PodView]) -> tuple[int, NewPod | None]:
        """Take this tick's decisions for one trial (its pods ascending by attempt).

        Returns the number of its pods that hold a slot (a GPU) and the pod to start
        for it, if any: a first pod that was never made, or a retry.
        """
        self.states[trial.name] = trial.state
        if trial.state in TERMINAL:
            # A pruned trial's pod holds its GPU until its deletion completes.
            return sum(1 for p in pods if not p.finished), None
        pod = pods[-1] if pods else None
        if pod is None:
            if int(trial.status.get("attempts") or 0) == 0:
                # Created, but its first pod was never made (e.g. a restart in between).
                return 0, NewPod(trial.name, trial.index, 1, trial.params,
                                 self.scheduler.milestones(trial.name))
            return 0, self._fail_or_retry(trial, None, "its pod disappeared")
        slots, retry = 0, None
        if not pod.finished:
            slots = 1
            if pod.deleting:
                return slots, None
            self._observe_running(trial, pod)
        else:
            retry = self._observe_finished(trial, pod)
        if self.states[trial.name] not in TERMINAL:
            self._block_after(trial)
        return slots, retry

    def _feed(self, trial: TrialView, rungs: Mapping[int, tuple[int, float]],
              latest: tuple[int, float] | None) -> Verdict | None:
        """Feed rung values (ascending) and the latest value; return a STOP verdict if any."""
        known = {r.milestone for r in self.scheduler.records(trial.name)}
        milestones = self.scheduler.milestones(trial.name)
        verdict: Verdict | None = None
        for m in sorted(rungs):
            if m in known or m not in milestones:
                continue
            if self.ordered and m in self._blocked:
                return None
            step, value = rungs[m]
            v = self.scheduler.on_result(trial.name, step, value)
            if v.decision is Decision.STOP:
                return v
        if latest is not None and not (self.ordered and self._blocked):
            step, value = latest
            if all(m in {r.milestone for r in self.scheduler.records(trial.name)} or m > step
                   for m in milestones):
                v = self.scheduler.on_result(trial.name, step, value)
                if v.decision is Decision.STOP:
                    verdict = v
        return verdict

    def _block_after(self, trial: TrialView) -> None:
        """In trial-index order, later trials wait for this live trial's missing rungs."""
        if not self.ordered:
            return
        recorded = {r.milestone for r in self.scheduler.records(trial.name)}
        self._blocked.update(m for m in self.scheduler.milestones(trial.name) if m not in recorded)

    def _records_changed(self, trial: TrialView) -> list[RungRecord] | None:
        """The trial's rung records when they differ from the stored ones, else None."""
        records = self.scheduler.records(trial.name)
        return records if records != self.restored.get(trial.name, []) else None

    def _stop(self, trial: TrialView, verdict: Verdict, pod: PodView | None, step: int | None,
              metrics: Mapping[str, float]) -> None:
        rung = verdict.rung
        if rung is None:  # reached max_t: a completed trial, as in Ray
            self._finish_succeeded(trial, step, metrics, "ReachedMaxT", verdict.reason)
        else:
            self.states[trial.name] = TrialState.PRUNED.value
            self.plan.patch_trial(
                trial.name, state=TrialState.PRUNED, reason="Pruned", message=verdict.reason,
                pruned_at=PrunedAt(milestone=rung.milestone, value=rung.value,
                                   cutoff=rung.cutoff, step=rung.step),
                completion_time=self.now, step=step, metrics=dict(metrics),
                objective=finite(metrics.get(self.objective)))
            self.plan.event("TuneTrial", trial.name, "Normal", "TrialPruned", verdict.reason)
        if pod is not None and not pod.deleting:
            # A pruned trial's pod goes even if it finished before the verdict could be taken.
            grace = 0 if pod.finished else self.spec.prune_grace_period_seconds
            self.plan.delete_pods.append((pod.name, grace))

    def _finish_succeeded(self, trial: TrialView, step: int | None,
                          metrics: Mapping[str, float], reason: str, message: str) -> None:
        self.scheduler.on_complete(trial.name, step or 0, metrics.get(self.objective))
        self.states[trial.name] = TrialState.SUCCEEDED.value
        self.plan.patch_trial(
            trial.name, state=TrialState.SUCCEEDED, reason=reason, message=message,
            completion_time=self.now, step=step, metrics=dict(metrics),
            objective=finite(metrics.get(self.objective)))

    def _fail_or_retry(self, trial: TrialView, pod: PodView | None, why: str) -> NewPod | None:
        attempt = pod.attempt if pod else int(trial.status.get("attempts") or 0)
        if attempt <= self.spec.trial_retries:
            self.plan.event("TuneTrial", trial.name, "Warning", "TrialRetried",
                            f"attempt {attempt} failed ({why}); starting attempt {attempt + 1}")
            return NewPod(trial.name, trial.index, attempt + 1, trial.params,
                          self.scheduler.milestones(trial.name))
        self.states[trial.name] = TrialState.FAILED.value
        message = f"failed after {attempt} attempt(s): {why}"
        self.plan.patch_trial(trial.name, state=TrialState.FAILED, reason="Failed",
                              message=message, completion_time=self.now, attempts=attempt)
        self.plan.event("TuneTrial", trial.name, "Warning", "TrialFailed", message)
        return None

    def _observe_running(self, trial: TrialView, pod: PodView) -> None:
        obs = self.snapshot.get(trial.name) if self.snapshot is not None else None
        updates: dict[str, Any] = {}
        if pod.phase == "Running" and (trial.state != TrialState.RUNNING.value
                                       or trial.status.get("podName") != pod.name):
            updates.update(state=TrialState.RUNNING, pod_name=pod.name, attempts=pod.attempt,
                           start_time=trial.status.get("startTime") or self.now)
            self.states[trial.name] = TrialState.RUNNING.value
        if obs is not None:
            latest = None
            value = obs.metrics.get(self.objective)
            if obs.step is not None and value is not None:
                latest = (obs.step, value)
            verdict = self._feed(trial, obs.rungs, latest)
            if verdict is not None:
                self.plan.patch_trial(trial.name, **updates,
                                      rungs=self.scheduler.records(trial.name))
                self._stop(trial, verdict, pod, obs.step, obs.metrics)
                return
            rungs = self._records_changed(trial)
            if rungs is not None:
                updates.update(rungs=rungs, step=obs.step, metrics=dict(obs.metrics),
                               objective=finite(value))
        if updates:
            self.plan.patch_trial(trial.name, **updates)

    def _observe_finished(self, trial: TrialView, pod: PodView) -> NewPod | None:
        if pod.phase == "Failed":
            why = f"exit code {pod.exit_code}" if pod.exit_code is not None else (pod.reason or "failed")
            if pod.message and not parse_termination_message(pod.message):
                why += f": {pod.message.strip().splitlines()[-1][:200]}"
            return self._fail_or_retry(trial, pod, why)
        data = parse_termination_message(pod.message)
        obs = self.snapshot.get(trial.name) if self.snapshot is not None else None
        metrics: dict[str, float]
        rungs: dict[int, tuple[int, float]]
        step: int | None
        if data is not None:
            metrics, rungs = dict(data.get("metrics", {})), _rungs_from(data)
            step = data.get("step")
        elif obs is not None:
            metrics, rungs, step = dict(obs.metrics), dict(obs.rungs), obs.step
        else:
            metrics, rungs, step = {}, {}, None
        if self.objective not in metrics:
            self.states[trial.name] = TrialState.FAILED.value
            message = (f"the trial exited 0 without reporting '{self.objective}' "
                       "(neither its termination message nor Prometheus has it)")
            self.plan.patch_trial(trial.name, state=TrialState.FAILED,
                                  reason="MetricsUnavailable", message=message,
                                  completion_time=self.now, attempts=pod.attempt)
            self.plan.event("TuneTrial", trial.name, "Warning", "TrialFailed", message)
            return None
        verdict = self._feed(trial, rungs, None)
        if self.ordered and verdict is None and any(
                m not in {r.milestone for r in self.scheduler.records(trial.name)}
                for m in rungs if m in self.scheduler.milestones(trial.name)):
            return None  # wait for earlier trials' rung records before settling this one
        if verdict is not None:
            self.plan.patch_trial(trial.name, rungs=self.scheduler.records(trial.name),
                                  pod_name=pod.name, attempts=pod.attempt)
            self._stop(trial, verdict, pod, step, metrics)
            return None
        self.plan.patch_trial(trial.name, rungs=self.scheduler.records(trial.name),
                              pod_name=pod.name, attempts=pod.attempt,
                              start_time=trial.status.get("startTime") or self.now)
        self._finish_succeeded(trial, step, metrics, "Completed", "the trial finished")
        return None
