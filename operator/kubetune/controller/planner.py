"""The reconcile decision for one experiment at one tick, as a pure function.

    plan_tick(experiment, trials, pods, snapshot, now) -> Plan

Everything the operator knows comes in (the experiment, its TuneTrials and Pods
as read from the API, one Prometheus snapshot or None when Prometheus could not
be read), and everything it will do comes out (objects to create, statuses to
write, pods to delete, events). The scheduler is rebuilt from the rung records
persisted on the TuneTrials at every tick, so an operator restarted at any
moment takes the same decisions: nothing here lives between ticks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubetune.api import TrialState, TuneExperimentSpec
from kubetune.contract import (
    ATTEMPT_LABEL,
    TRIAL_LABEL,
    TerminationMessage,
    decode_termination_message,
)
from kubetune.schedulers import Decision, RungRecord, TrialScheduler, Verdict, make_scheduler
from kubetune.search import BasicVariantSampler, parse_space

TERMINAL = {TrialState.SUCCEEDED.value, TrialState.PRUNED.value, TrialState.FAILED.value}


# -- what comes in ---------------------------------------------------------------------------
@dataclass(frozen=True)
class PodView:
    """The parts of a trial Pod the planner reads."""

    name: str
    trial: str
    attempt: int
    phase: str
    deleting: bool = False
    exit_code: int | None = None
    reason: str = ""
    message: str = ""

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> PodView:
        meta, status = body["metadata"], body.get("status") or {}
        labels = meta.get("labels") or {}
        terminated: Mapping[str, Any] = {}
        for cs in status.get("containerStatuses") or []:
            terminated = (cs.get("state") or {}).get("terminated") or {}
            break
        return cls(
            name=meta["name"], trial=labels.get(TRIAL_LABEL, ""),
            attempt=int(labels.get(ATTEMPT_LABEL, "1")),
            phase=status.get("phase", "Pending"), deleting=bool(meta.get("deletionTimestamp")),
            exit_code=terminated.get("exitCode"), reason=terminated.get("reason", "") or status.get("reason", ""),
            message=terminated.get("message", "") or status.get("message", ""),
        )


@dataclass(frozen=True)
class TrialView:
    name: str
    index: int
    params: Mapping[str, Any]
    status: Mapping[str, Any]

    @property
    def state(self) -> str:
        return str(self.status.get("state") or TrialState.PENDING.value)

    @property
    def records(self) -> list[RungRecord]:
        # The apiserver drops null fields: a record without cutoff/value had None there.
        return [RungRecord.from_dict({"cutoff": None, "value": None, **r})
                for r in self.status.get("rungs") or []]

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> TrialView:
        spec = body.get("spec") or {}
        return cls(name=body["metadata"]["name"], index=int(spec.get("index", 0)),
                   params=spec.get("params") or {}, status=body.get("status") or {})


class TrialObservation(Protocol):
    """One trial's metrics in a Prometheus snapshot (kubetune.controller.prometheus.TrialMetrics is one)."""

    @property
    def step(self) -> int | None: ...
    @property
    def metrics(self) -> Mapping[str, float]: ...
    @property
    def rungs(self) -> Mapping[int, tuple[int, float]]: ...


@dataclass(frozen=True)
class ExperimentView:
    name: str
    namespace: str
    generation: int
    spec: TuneExperimentSpec
    status: Mapping[str, Any]


# -- what goes out ---------------------------------------------------------------------------
@dataclass(frozen=True)
class NewTrial:
    index: int
    params: dict[str, Any]


@dataclass(frozen=True)
class NewPod:
    trial: str
    index: int
    attempt: int
    params: Mapping[str, Any]
    milestones: list[int]


@dataclass(frozen=True)
class Event:
    kind: str  # "TuneExperiment" | "TuneTrial"
    name: str
    type: str  # "Normal" | "Warning"
    reason: str
    message: str


@dataclass
class Plan:
    new_trials: list[NewTrial] = field(default_factory=list)
    new_pods: list[NewPod] = field(default_factory=list)
    trial_status: dict[str, dict[str, Any]] = field(default_factory=dict)
    delete_pods: list[tuple[str, int]] = field(default_factory=list)  # (pod, grace seconds)
    experiment_status: dict[str, Any] | None = None
    events: list[Event] = field(default_factory=list)


# -- helpers -----------------------------------------------------------------------------------
def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def parse_termination_message(message: str) -> TerminationMessage | None:
    """The trial's final report as written by kubetune.trial, or None if absent/garbled."""
    if not message:
        return None
    try:
        return decode_termination_message(message)
    except ValueError:
        return None


def _rungs_from(data: TerminationMessage) -> dict[int, tuple[int, float]]:
    return {int(milestone): (rec["step"], rec["value"])
            for milestone, rec in data.get("rungs", {}).items() if "value" in rec}


def _condition(ctype: str, ok: bool, reason: str, message: str, now: str,
               previous: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    status = "True" if ok else "False"
    since = now
    for c in previous:
        if c.get("type") == ctype and c.get("status") == status:
            since = c.get("lastTransitionTime", now)
    return {"type": ctype, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": since}


def build_scheduler(spec: TuneExperimentSpec) -> TrialScheduler:
    s = spec.scheduler
    return make_scheduler(
        s.type, metric=spec.objective.metric, mode=spec.objective.mode, time_attr=s.time_attr,
        max_t=s.max_t, grace_period=s.grace_period, reduction_factor=s.reduction_factor,
        brackets=s.brackets, min_samples_required=s.min_samples_required,
    )


# -- the tick ----------------------------------------------------------------------------------
class _Tick:
    def __init__(self, exp: ExperimentView, trials: Sequence[TrialView], pods: Sequence[PodView],
                 snapshot: Mapping[str, TrialObservation] | None, now: str,
                 metrics_error: str | None) -> None:
        self.exp = exp
        self.spec = exp.spec
        self.trials = sorted(trials, key=lambda t: t.index)
        self.pods: dict[str, list[PodView]] = {}
        for p in pods:
            self.pods.setdefault(p.trial, []).append(p)
        for group in self.pods.values():
            group.sort(key=lambda p: p.attempt)
        self.snapshot = snapshot
        self.metrics_error = metrics_error
        self.now = now
        self.plan = Plan()
        self.scheduler = build_scheduler(self.spec)
        for t in self.trials:
            self.scheduler.restore(t.name, t.records)
        self.sampler = BasicVariantSampler(
            parse_space(self.spec.search_space_raw()), seed=self.spec.search_algorithm.seed,
            num_samples=self.spec.num_samples)
        self.objective = self.spec.objective.metric
        self.states: dict[str, str] = {t.name: t.state for t in self.trials}
        self.ordered = getattr(self.spec.scheduler, "decision_order", "arrival") == "trialIndex"
        # milestone -> an earlier live trial has not recorded it yet (ordered decisions only)
        self.blocked: set[int] = set()

    # A trial's status patch accumulates here and is written once.
    def patch(self, trial: TrialView, **fields: Any) -> dict[str, Any]:
        p = self.plan.trial_status.setdefault(trial.name, {})
        p.update({k: v for k, v in fields.items()})
        return p

    def event(self, kind: str, name: str, type_: str, reason: str, message: str) -> None:
        self.plan.events.append(Event(kind, name, type_, reason, message))

    def feed(self, trial: TrialView, rungs: Mapping[int, tuple[int, float]],
             latest: tuple[int, float] | None) -> Verdict | None:
        """Feed rung values (ascending) and the latest value; return a STOP verdict if any."""
        known = {r.milestone for r in self.scheduler.records(trial.name)}
        milestones = self.scheduler.milestones(trial.name)
        verdict: Verdict | None = None
        for m in sorted(rungs):
            if m in known or m not in milestones:
                continue
            if self.ordered and m in self.blocked:
                return None
            step, value = rungs[m]
            v = self.scheduler.on_result(trial.name, step, value)
            if v.decision is Decision.STOP:
                return v
        if latest is not None and not (self.ordered and self.blocked):
            step, value = latest
            if all(m in {r.milestone for r in self.scheduler.records(trial.name)} or m > step
                   for m in milestones):
                v = self.scheduler.on_result(trial.name, step, value)
                if v.decision is Decision.STOP:
                    verdict = v
        return verdict

    def block_after(self, trial: TrialView) -> None:
        """In trial-index order, later trials wait for this live trial's missing rungs."""
        if not self.ordered:
            return
        recorded = {r.milestone for r in self.scheduler.records(trial.name)}
        self.blocked.update(m for m in self.scheduler.milestones(trial.name) if m not in recorded)

    def records_changed(self, trial: TrialView) -> list[dict[str, Any]] | None:
        now = [r.to_dict() for r in self.scheduler.records(trial.name)]
        return now if now != list(trial.status.get("rungs") or []) else None

    def stop(self, trial: TrialView, verdict: Verdict, pod: PodView | None, step: int | None,
             metrics: Mapping[str, float]) -> None:
        rung = verdict.rung
        if rung is None:  # reached max_t: a completed trial, as in Ray
            self.finish_succeeded(trial, step, metrics, "ReachedMaxT", verdict.reason)
        else:
            self.states[trial.name] = TrialState.PRUNED.value
            self.patch(trial, state=TrialState.PRUNED.value, reason="Pruned", message=verdict.reason,
                       prunedAt={"milestone": rung.milestone, "value": rung.value,
                                 "cutoff": rung.cutoff, "step": rung.step},
                       completionTime=self.now, step=step, metrics=dict(metrics),
                       objective=_finite(metrics.get(self.objective)))
            self.event("TuneTrial", trial.name, "Normal", "TrialPruned", verdict.reason)
        if pod is not None and not pod.deleting:
            # A pruned trial's pod goes even if it finished before the verdict could be taken.
            grace = 0 if pod.finished else self.spec.prune_grace_period_seconds
            self.plan.delete_pods.append((pod.name, grace))

    def finish_succeeded(self, trial: TrialView, step: int | None, metrics: Mapping[str, float],
                         reason: str, message: str) -> None:
        self.scheduler.on_complete(trial.name, step or 0, metrics.get(self.objective))
        self.states[trial.name] = TrialState.SUCCEEDED.value
        self.patch(trial, state=TrialState.SUCCEEDED.value, reason=reason, message=message,
                   completionTime=self.now, step=step, metrics=dict(metrics),
                   objective=_finite(metrics.get(self.objective)))

    def fail_or_retry(self, trial: TrialView, pod: PodView | None, why: str) -> NewPod | None:
        attempt = pod.attempt if pod else int(trial.status.get("attempts") or 0)
        if attempt <= self.spec.trial_retries:
            self.event("TuneTrial", trial.name, "Warning", "TrialRetried",
                       f"attempt {attempt} failed ({why}); starting attempt {attempt + 1}")
            return NewPod(trial.name, trial.index, attempt + 1, trial.params,
                          self.scheduler.milestones(trial.name))
        self.states[trial.name] = TrialState.FAILED.value
        message = f"failed after {attempt} attempt(s): {why}"
        self.patch(trial, state=TrialState.FAILED.value, reason="Failed", message=message,
                   completionTime=self.now, attempts=attempt)
        self.event("TuneTrial", trial.name, "Warning", "TrialFailed", message)
        return None

    def run(self) -> Plan:
        spec = self.spec
        retries: list[NewPod] = []
        unfinished = 0
        for trial in self.trials:
            pods = self.pods.get(trial.name, [])
            if trial.state in TERMINAL:
                # A pruned trial's pod holds its GPU until its deletion completes.
                unfinished += sum(1 for p in pods if not p.finished)
                continue
            pod = pods[-1] if pods else None
            if pod is None:
                if int(trial.status.get("attempts") or 0) == 0:
                    # Created, but its first pod was never made (e.g. a restart in between).
                    retries.append(NewPod(trial.name, trial.index, 1, trial.params,
                                          self.scheduler.milestones(trial.name)))
                else:
                    retry = self.fail_or_retry(trial, None, "its pod disappeared")
                    if retry:
                        retries.append(retry)
                continue
            if not pod.finished:
                unfinished += 1
                if pod.deleting:
                    continue
                self.observe_running(trial, pod)
            else:
                self.observe_finished(trial, pod, retries)
            if self.states[trial.name] not in TERMINAL:
                self.block_after(trial)

        failed = sum(1 for s in self.states.values() if s == TrialState.FAILED.value)
        too_many_failed = spec.max_failed_trials > 0 and failed >= spec.max_failed_trials
        created = len(self.trials)
        total = self.sampler.total_trials
        if not too_many_failed:
            for retry in retries:
                if unfinished >= spec.max_concurrent_trials:
                    break
                self.plan.new_pods.append(retry)
                unfinished += 1
            next_index = max((t.index for t in self.trials), default=-1) + 1
            while unfinished < spec.max_concurrent_trials and next_index < total:
                params = self.sampler.config(next_index)
                self.plan.new_trials.append(NewTrial(next_index, params))
                name = f"{self.exp.name}-{next_index}"
                self.plan.new_pods.append(NewPod(name, next_index, 1, params,
                                                 self.scheduler.milestones(name)))
                self.states[name] = TrialState.PENDING.value
                self.event("TuneTrial", name, "Normal", "TrialCreated",
                           f"trial {next_index} with {json.dumps(params, sort_keys=True)}")
                unfinished += 1
                next_index += 1
                created += 1
        self.plan.experiment_status = self.experiment_status(total, created, failed, too_many_failed)
        return self.plan

    def observe_running(self, trial: TrialView, pod: PodView) -> None:
        obs = self.snapshot.get(trial.name) if self.snapshot is not None else None
        updates: dict[str, Any] = {}
        if pod.phase == "Running" and (trial.state != TrialState.RUNNING.value
                                       or trial.status.get("podName") != pod.name):
            updates.update(state=TrialState.RUNNING.value, podName=pod.name, attempts=pod.attempt,
                           startTime=trial.status.get("startTime") or self.now)
            self.states[trial.name] = TrialState.RUNNING.value
        if obs is not None:
            latest = None
            value = obs.metrics.get(self.objective)
            if obs.step is not None and value is not None:
                latest = (obs.step, value)
            verdict = self.feed(trial, obs.rungs, latest)
            if verdict is not None:
                self.patch(trial, **updates)
                self.patch(trial, rungs=[r.to_dict() for r in self.scheduler.records(trial.name)])
                self.stop(trial, verdict, pod, obs.step, obs.metrics)
                return
            rungs = self.records_changed(trial)
            if rungs is not None:
                updates.update(rungs=rungs, step=obs.step, metrics=dict(obs.metrics),
                               objective=_finite(value))
        if updates:
            self.patch(trial, **updates)

    def observe_finished(self, trial: TrialView, pod: PodView, retries: list[NewPod]) -> None:
        if pod.phase == "Failed":
            why = f"exit code {pod.exit_code}" if pod.exit_code is not None else (pod.reason or "failed")
            if pod.message and not parse_termination_message(pod.message):
                why += f": {pod.message.strip().splitlines()[-1][:200]}"
            retry = self.fail_or_retry(trial, pod, why)
            if retry:
                retries.append(retry)
            return
        data = parse_termination_message(pod.message)
        obs = self.snapshot.get(trial.name) if self.snapshot is not None else None
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
            self.patch(trial, state=TrialState.FAILED.value, reason="MetricsUnavailable",
                       message=message, completionTime=self.now, attempts=pod.attempt)
            self.event("TuneTrial", trial.name, "Warning", "TrialFailed", message)
            return
        verdict = self.feed(trial, rungs, None)
        if self.ordered and verdict is None and any(
                m not in {r.milestone for r in self.scheduler.records(trial.name)}
                for m in rungs if m in self.scheduler.milestones(trial.name)):
            return  # wait for earlier trials' rung records before settling this one
        if verdict is not None:
            self.patch(trial, rungs=[r.to_dict() for r in self.scheduler.records(trial.name)],
                       podName=pod.name, attempts=pod.attempt)
            self.stop(trial, verdict, pod, step, metrics)
            return
        self.patch(trial, rungs=[r.to_dict() for r in self.scheduler.records(trial.name)],
                   podName=pod.name, attempts=pod.attempt,
                   startTime=trial.status.get("startTime") or self.now)
        self.finish_succeeded(trial, step, metrics, "Completed", "the trial finished")

    def best_trial(self) -> dict[str, Any] | None:
        sign = 1.0 if self.spec.objective.mode == "max" else -1.0
        best: tuple[float, int, TrialView, Mapping[str, Any]] | None = None
        for t in self.trials:
            if self.states[t.name] != TrialState.SUCCEEDED.value:
                continue
            status = {**t.status, **self.plan.trial_status.get(t.name, {})}
            value = _finite((status.get("metrics") or {}).get(self.objective))
            if value is None:
                continue
            key = (sign * value, -t.index)
            if best is None or key > (best[0], best[1]):
                best = (key[0], key[1], t, status)
        if best is None:
            return None
        _, _, t, chosen = best
        metrics = chosen.get("metrics") or {}
        return {"name": t.name, "config": dict(t.params), "metric": float(metrics[self.objective]),
                "step": chosen.get("step"), "metrics": dict(metrics)}

    def experiment_status(self, total: int, created: int, failed: int,
                          too_many_failed: bool) -> dict[str, Any]:
        previous = self.exp.status
        counts = {s: 0 for s in ("pending", "running", "succeeded", "pruned", "failed")}
        for state in self.states.values():
            counts[state.lower()] += 1
        done = created >= total and all(s in TERMINAL for s in self.states.values())
        best = self.best_trial()
        phase = "Running"
        message = f"{counts['running']} running, {created}/{total} trials created"
        if too_many_failed:
            phase = "Failed"
            message = (f"{failed} trials failed, reaching maxFailedTrials={self.spec.max_failed_trials}; "
                       "see the TuneTrials' messages")
        elif done:
            phase = "Succeeded" if best is not None else "Failed"
            message = (f"best trial {best['name']}: {self.objective}={best['metric']:g}"
                       if best else "no trial completed with a finite objective value")
        conditions = list(previous.get("conditions") or [])
        metrics_ok = self.metrics_error is None
        new_conditions = [
            _condition("SpecValid", True, "Valid", "the spec is valid", self.now, conditions),
            _condition("MetricsAvailable", metrics_ok, "Queried" if metrics_ok else "PrometheusUnavailable",
                       "metrics read from Prometheus" if metrics_ok else
                       f"{self.metrics_error}; no trial is pruned until metrics return",
                       self.now, conditions),
            _condition("Complete", phase in ("Succeeded", "Failed"), phase, message, self.now, conditions),
        ]
        status: dict[str, Any] = {
            "phase": phase, "message": message, "observedGeneration": self.exp.generation,
            "startTime": previous.get("startTime") or self.now,
            "trials": {"total": total, "created": created, **counts},
            "rungs": [{"milestone": r.milestone, "recorded": r.recorded, "cutoff": r.cutoff}
                      for r in self.scheduler.rung_table()],
            "conditions": new_conditions,
        }
        if best is not None:
            status["bestTrial"] = best
        if phase in ("Succeeded", "Failed"):
            status["completionTime"] = previous.get("completionTime") or self.now
            if previous.get("phase") != phase:
                self.event("TuneExperiment", self.exp.name, "Normal" if phase == "Succeeded" else "Warning",
                           f"Experiment{phase}", message)
            if phase == "Failed":
                for t in self.trials:
                    if self.states[t.name] not in TERMINAL:
                        self.patch(t, state=TrialState.FAILED.value, reason="ExperimentFailed",
                                   message=f"stopped because the experiment failed: {message}",
                                   completionTime=self.now)
                    for p in self.pods.get(t.name, []):
                        if not p.finished and not p.deleting:
                            self.plan.delete_pods.append((p.name, self.spec.prune_grace_period_seconds))
        return status


def plan_tick(exp: ExperimentView, trials: Sequence[TrialView], pods: Sequence[PodView],
              snapshot: Mapping[str, TrialObservation] | None, now: str,
              metrics_error: str | None = None) -> Plan:
    """Decide this tick's actions for one experiment (pure; see the module docstring)."""
    return _Tick(exp, trials, pods, snapshot, now, metrics_error).run()
