"""One trial's life within a tick: Pending -> Running -> Succeeded | Pruned | Failed.

`TrialMachine.advance` looks at one trial, its latest pod and its metrics, and
records what follows in the tick's Plan: the trial's status patch, the rung
values fed to the scheduler (and a STOP turned into a pruned trial and a pod
deletion), a new attempt for a failed or disrupted pod, Events. Trials are
advanced in index order; with `decisionOrder: trialIndex` a trial's rung values
wait until every earlier live trial has recorded that rung.

Attempts: a failed attempt (the trial's container exited non-zero, or its pod
could not start within trialStartTimeoutSeconds) is charged to trialRetries; a
disrupted one (evicted, preempted, lost with its node, deleted by someone else)
is not, and is counted in status.disruptions. When a new attempt is decided the
status says so first (state Pending, attempts = the new attempt), so a pod
that vanishes is told apart from one that was never made.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from kubetune.api import Decision, PrunedAt, RungRecord, TrialState, TuneExperimentSpec
from kubetune.api.pbt import PBTMemberStatus
from kubetune.api.stop import stop_reason
from kubetune.contract import TerminationMessage, encode_float
from kubetune.controller.planner.actions import NewPod, Plan
from kubetune.controller.planner.pods import PodHealth, failure, seconds_between, start_failure
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


def _owned(pod: PodView, trial: TrialView) -> bool:
    """The pod belongs to this TuneTrial, not to an earlier one of the same name."""
    return not pod.owner_uid or not trial.uid or pod.owner_uid == trial.uid


def _epoch(moment: str) -> float:
    return seconds_between("1970-01-01T00:00:00Z", moment)


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
        self.disruptions: dict[str, int] = {}
        """Every trial's disruption count as of the end of this tick, by trial name."""
        self.start_failures: list[str] = []
        """Why each attempt that failed to start this tick failed (naming the image)."""
        self.ran: set[str] = set()
        """Trials seen with a running or finished container this tick."""
        self.health = PodHealth()
        self.ordered = spec.scheduler.decision_order == "trialIndex"
        self._blocked: set[int] = set()
        """Milestones an earlier live trial has not recorded yet (ordered decisions only)."""

    def advance(self, trial: TrialView, pods: list[PodView]) -> tuple[int, NewPod | None]:
        """Take this tick's decisions for one trial (its pods ascending by attempt).

        Returns the number of its pods that hold a slot (a GPU) and the pod to start
        for it, if any: a first pod that was never made, a retry or a resumed attempt.
        """
        self.states[trial.name] = trial.state
        self.disruptions[trial.name] = int(trial.status.get("disruptions") or 0)
        held = sum(1 for p in pods if not p.finished)
        own = [p for p in pods if _owned(p, trial)]
        for p in pods:
            if p.deleting:
                continue
            if not _owned(p, trial):
                # A pod of a TuneTrial deleted by hand: it goes before this one starts.
                self.plan.delete_pods.append((p.name, 0 if p.finished else self._grace))
            elif trial.state in TERMINAL and not p.finished:
                # An ended trial's pod still runs (a sidecar, or a crash before its deletion).
                self.plan.delete_pods.append((p.name, self._grace))
        if trial.state in TERMINAL or (own == [] and len(pods) > 0):
            return held, None
        pod = own[-1] if own else None
        if pod is None:
            return held, self._no_pod(trial)
        if pod.deleting and not pod.finished:
            return held, None  # judged once it is gone: a disruption, unless it finished
        planned = int(trial.status.get("attempts") or 0)
        if planned > pod.attempt:
            if not pod.done:
                # The attempt was replaced (a PBT exploit) but its pod still runs: it goes first.
                self.plan.delete_pods.append((pod.name, self._grace))
                return held, None
            # A new attempt was decided on an earlier tick; its pod was not made yet.
            return held, self._new_pod(trial, planned)
        if pod.unschedulable and not pod.done:
            self.health.unschedulable.append((pod.name, pod.unschedulable))
        retry = None
        if pod.done:
            self.ran.add(trial.name)
            retry = self._observe_done(trial, pod)
        else:
            why = start_failure(pod, self.now, self.spec.trial_start_timeout_seconds)
            if why is not None:
                self.plan.delete_pods.append((pod.name, 0))
                self.start_failures.append(why)
                retry = self._fail_or_retry(trial, pod, pod.waiting_reason, why)
            else:
                self._observe_running(trial, pod)
        if self.states[trial.name] not in TERMINAL:
            self._block_after(trial)
        return held, retry

    @property
    def _grace(self) -> int:
        return self.spec.prune_grace_period_seconds

    def _new_pod(self, trial: TrialView, attempt: int) -> NewPod:
        milestones = self.scheduler.milestones(trial.name)
        member = trial.status.get("pbt")
        if not member:
            return NewPod(trial.name, trial.index, attempt, trial.params, milestones)
        # PBT: the config and the checkpoint of the trial's last exploit, as persisted.
        pbt = PBTMemberStatus.model_validate(member)
        start = pbt.exploits[-1].donor_checkpoint if pbt.exploits else ""
        return NewPod(trial.name, trial.index, attempt, pbt.config, milestones,
                      start_checkpoint=start, checkpoint_segment=len(pbt.exploits))

    def _no_pod(self, trial: TrialView) -> NewPod:
        attempts = int(trial.status.get("attempts") or 0)
        if attempts == 0 or trial.state == TrialState.PENDING.value:
            # Never made, or gone before it ran (e.g. a restart in between): make it now.
            return self._new_pod(trial, max(attempts, 1))
        pod = trial.status.get("podName") or f"of attempt {attempts}"
        return self._disrupted(trial, attempts, f"its pod {pod} is gone without having "
                               "finished: deleted by someone else, or lost with its node")

    def _disrupted(self, trial: TrialView, attempt: int, why: str) -> NewPod:
        count = self.disruptions[trial.name] = self.disruptions[trial.name] + 1
        nxt = attempt + 1
        message = (f"attempt {attempt} was disrupted ({why}); attempt {nxt} resumes from its "
                   "checkpoint and is not counted against trialRetries")
        self.states[trial.name] = TrialState.PENDING.value
        self.plan.patch_trial(trial.name, state=TrialState.PENDING, attempts=nxt,
                              disruptions=count, reason="Disrupted", message=message)
        self.plan.event("TuneTrial", trial.name, "Warning", "TrialDisrupted", message)
        return self._new_pod(trial, nxt)

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
              metrics: Mapping[str, float], stop_condition: bool = False) -> None:
        rung = verdict.rung
        if stop_condition:  # spec.stop met: a completed trial, as in Ray
            self._finish_succeeded(trial, step, metrics, "StopConditionMet", verdict.reason)
            self.plan.event("TuneTrial", trial.name, "Normal", "TrialStopped", verdict.reason)
        elif rung is None:  # reached max_t: a completed trial, as in Ray
            self._finish_succeeded(trial, step, metrics, "ReachedMaxT", verdict.reason)
        else:
            self.states[trial.name] = TrialState.PRUNED.value
            self.plan.patch_trial(
                trial.name, state=TrialState.PRUNED, reason="Pruned", message=verdict.reason,
                pruned_at=PrunedAt(milestone=rung.milestone, value=rung.value,
                                   cutoff=rung.cutoff, step=rung.step),
                completion_time=self.now, step=step,
                **self._metric_fields(trial, metrics),
                objective=finite(metrics.get(self.objective)))
            self.plan.event("TuneTrial", trial.name, "Normal", "TrialPruned", verdict.reason)
        if pod is not None and not pod.deleting and pod.name not in self.plan.deleting:
            # A pruned trial's pod goes even if it finished before the verdict could be taken.
            grace = 0 if pod.finished else self._grace
            self.plan.delete_pods.append((pod.name, grace))

    def _metric_fields(self, trial: TrialView, metrics: Mapping[str, float]) -> dict[str, Any]:
        """metrics and nonFiniteMetrics for a status patch: each metric in one of the two.

        A metric finite again is removed from nonFiniteMetrics (a null in the merge patch).
        """
        stored = trial.status.get("nonFiniteMetrics") or {}
        finite_values: dict[str, float | None] = {}
        non_finite: dict[str, str | None] = {}
        for name, value in metrics.items():
            number = finite(value)
            finite_values[name] = number
            if number is None:
                non_finite[name] = str(encode_float(float(value)))
            elif name in stored:
                non_finite[name] = None
        fields: dict[str, Any] = {"metrics": finite_values}
        if non_finite:
            fields["non_finite_metrics"] = non_finite
        return fields

    def _finish_succeeded(self, trial: TrialView, step: int | None,
                          metrics: Mapping[str, float], reason: str, message: str) -> None:
        self.scheduler.on_complete(trial.name, step or 0, metrics.get(self.objective))
        self.states[trial.name] = TrialState.SUCCEEDED.value
        self.plan.patch_trial(
            trial.name, state=TrialState.SUCCEEDED, reason=reason, message=message,
            completion_time=self.now, step=step, **self._metric_fields(trial, metrics),
            objective=finite(metrics.get(self.objective)))

    def _fail_or_retry(self, trial: TrialView, pod: PodView, reason: str,
                       why: str) -> NewPod | None:
        attempt = pod.attempt
        failures = attempt - self.disruptions[trial.name]
        if failures <= self.spec.trial_retries:
            nxt = attempt + 1
            message = f"attempt {attempt} failed ({why}); starting attempt {nxt}"
            self.states[trial.name] = TrialState.PENDING.value
            self.plan.patch_trial(trial.name, state=TrialState.PENDING, attempts=nxt,
                                  reason=reason, message=message)
            self.plan.event("TuneTrial", trial.name, "Warning", "TrialRetried", message)
            return self._new_pod(trial, nxt)
        self.states[trial.name] = TrialState.FAILED.value
        message = f"failed after {attempt} attempt(s): {why}"
        self.plan.patch_trial(trial.name, state=TrialState.FAILED, reason=reason,
                              message=message, completion_time=self.now, attempts=attempt)
        self.plan.event("TuneTrial", trial.name, "Warning", "TrialFailed", message)
        return None

    def _observe_running(self, trial: TrialView, pod: PodView) -> None:
        obs = self.snapshot.get(trial.name) if self.snapshot is not None else None
        updates: dict[str, Any] = {}
        if pod.phase == "Running":
            self.ran.add(trial.name)
            if trial.state != TrialState.RUNNING.value or trial.status.get("podName") != pod.name:
                updates.update(state=TrialState.RUNNING, pod_name=pod.name, attempts=pod.attempt,
                               start_time=trial.status.get("startTime") or self.now)
                self.states[trial.name] = TrialState.RUNNING.value
            updates.update(self._check_reporting(trial, pod, obs))
        if obs is not None:
            latest = None
            value = obs.metrics.get(self.objective)
            if obs.step is not None and value is not None:
                latest = (obs.step, value)
            verdict = self._feed(trial, obs.rungs, latest)
            met = None if verdict else stop_reason(self.spec.stop, obs.step, obs.metrics)
            if verdict is not None or met:
                self.plan.patch_trial(trial.name, **updates,
                                      rungs=self.scheduler.records(trial.name))
                self._stop(trial, verdict or Verdict(Decision.STOP, met or ""), pod, obs.step,
                           obs.metrics, stop_condition=bool(met))
                return
            rungs = self._records_changed(trial)
            if rungs is not None:
                updates.update(rungs=rungs, step=obs.step, objective=finite(value),
                               **self._metric_fields(trial, obs.metrics))
        if updates:
            self.plan.patch_trial(trial.name, **updates)

    def _check_reporting(self, trial: TrialView, pod: PodView,
                         obs: TrialMetrics | None) -> dict[str, Any]:
        """Flag a running trial that reported nothing within trialReportTimeoutSeconds.

        Returns the status fields to write: the NotReporting reason when it is first
        flagged (with a Warning Event), its removal once the trial reports again.
        """
        timeout = self.spec.trial_report_timeout_seconds
        if timeout <= 0 or self.snapshot is None or pod.running_since is None:
            return {}
        since = _epoch(pod.running_since)
        if obs is not None and obs.last_report is not None:
            since = max(since, obs.last_report)
        silent = _epoch(self.now) - since
        flagged = trial.status.get("reason") == "NotReporting"
        if silent <= timeout:
            return {"reason": None, "message": None} if flagged else {}
        self.health.silent.append((trial.name, silent))
        if flagged:
            return {}
        message = (f"no metric reported for {silent:.0f}s (trialReportTimeoutSeconds="
                   f"{timeout}); the trial holds its pod: check its logs")
        self.plan.event("TuneTrial", trial.name, "Warning", "TrialNotReporting", message)
        return {"reason": "NotReporting", "message": message}

    def _observe_done(self, trial: TrialView, pod: PodView) -> NewPod | None:
        if not pod.finished and not pod.deleting:
            # The trial's container has exited; a sidecar must not hold the GPU.
            self.plan.delete_pods.append((pod.name, self._grace))
        if pod.failed:
            if pod.disruption:
                return self._disrupted(trial, pod.attempt, pod.disruption)
            reason, why = failure(pod)
            return self._fail_or_retry(trial, pod, reason, why)
        data = parse_termination_message(pod.message)
        obs = self.snapshot.get(trial.name) if self.snapshot is not None else None
        # Two sources, neither a gate: the termination message wins where it has a value,
        # Prometheus (the pod's last report) gives the rest.
        metrics = {**(obs.metrics if obs else {}), **(data.get("metrics", {}) if data else {})}
        rungs = {**(obs.rungs if obs else {}), **(_rungs_from(data) if data else {})}
        step = data.get("step") if data and data.get("step") is not None else (
            obs.step if obs else None)
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
