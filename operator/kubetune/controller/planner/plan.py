"""plan_tick: one experiment's whole decision at one tick.

The scheduler is rebuilt from the rung records on the TuneTrials (or a kept one is
brought back to them, schedulers.py), every trial is advanced (trial.py), freed
slots go first to retries and then to new trials up to maxConcurrentTrials, and
the experiment's status is computed (status.py).
An experiment that has failed stops its live trials.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from kubetune.api import ExperimentPhase, TrialState, TuneExperimentSpec, TuneExperimentStatus
from kubetune.controller.planner.actions import NewPod, NewTrial, Plan
from kubetune.controller.planner.budget import (
    BUDGET_REASON,
    budget_message,
    budget_spent,
    stop_for_budget,
)
from kubetune.controller.planner.pbt import plan_exploits
from kubetune.controller.planner.pods import became_true
from kubetune.controller.planner.schedulers import SchedulerCache, scheduler_settings
from kubetune.controller.planner.status import (
    FINISHED_PHASES,
    best_trial,
    condition,
    experiment_phase,
    experiment_status,
)
from kubetune.controller.planner.suggest import TrialConfigs, configs_to_record
from kubetune.controller.planner.trial import TERMINAL, TrialMachine
from kubetune.controller.planner.views import ExperimentView, PodView, TrialMetrics, TrialView
from kubetune.schedulers import PBTCheckSteps, TrialScheduler, make_scheduler

CREATES_PER_TICK = 32
"""The most trial pods (new trials and retries) one tick creates; the rest go to the next
tick, which follows at once (Plan.more_to_create). A tick's decisions wait for its writes to
end, so at hundreds of free slots (a large experiment's start, a burst of prunes) an
unbounded tick took seconds of creates while rung values already in Prometheus waited for
the next one. Bounded, a tick writes at most about 2 x 32 creates, plus its decisions, and
the next tick reads the rungs again; Kubernetes' ReplicaSet controller bounds the creates
of one sync the same way (burstReplicas). A batch sent in the background (controller/
creations.py) has the same bound: at 10,000 trials, batches of 256 kept the writers busy
with creations and doubled the decision latency's p99 (benchmarks/RESULTS.md 2.1h)."""


def build_scheduler(spec: TuneExperimentSpec) -> TrialScheduler:
    """A fresh scheduler of the kind and with the settings `spec.scheduler` names."""
    s = spec.scheduler
    if s.type == "pbt":  # stops nothing; its milestones are the PBT check steps (pbt.py)
        return PBTCheckSteps(metric=spec.objective.metric, mode=spec.objective.mode,
                             time_attr=s.time_attr, perturbation_interval=s.perturbation_interval,
                             burn_in_period=s.burn_in_period)
    return make_scheduler(
        s.type, metric=spec.objective.metric, mode=spec.objective.mode, time_attr=s.time_attr,
        max_t=s.max_t, grace_period=s.grace_period, reduction_factor=s.reduction_factor,
        brackets=s.brackets, min_samples_required=s.min_samples_required,
    )


def plan_tick(exp: ExperimentView, trials: Sequence[TrialView], pods: Sequence[PodView],
              snapshot: Mapping[str, TrialMetrics] | None, now: str,
              metrics_error: str | None = None, creates: int = CREATES_PER_TICK,
              schedulers: SchedulerCache | None = None) -> Plan:
    """Decide this tick's actions for one experiment, from what was read of it.

    `snapshot` is one Prometheus read of every trial's metrics, None when
    Prometheus could not be read (`metrics_error` says why) or nothing runs;
    `now` is the RFC 3339 time written into the statuses; at most `creates` pods are
    started (retries first), the rest by the next tick. Pure: the same inputs
    give the same Plan, so an operator restarted at any moment decides the same.
    `schedulers` keeps the experiment's scheduler for the next tick, which then
    restores only what changed; the Plan is the same with it or without.
    """
    spec = exp.spec
    ordered_trials = sorted(trials, key=lambda t: t.index)
    pods_of: dict[str, list[PodView]] = {}
    for p in pods:
        pods_of.setdefault(p.trial, []).append(p)
    for group in pods_of.values():
        group.sort(key=lambda p: p.attempt)
    restored = {t.name: t.records for t in ordered_trials}
    settings = scheduler_settings(spec) if schedulers is not None else ""
    kept = schedulers.take(exp.namespace, exp.name, settings) if schedulers is not None else None
    scheduler = kept if kept is not None else build_scheduler(spec)
    if kept is not None:
        for name in kept.trials():
            if name not in restored:
                kept.forget(name)
    for name, records in restored.items():
        scheduler.restore(name, records)
    plan = Plan()
    machine = TrialMachine(spec, scheduler, restored, plan, snapshot, now)

    retries: list[NewPod] = []
    unfinished = 0
    for trial in ordered_trials:
        slots, retry = machine.advance(trial, pods_of.get(trial.name, []))
        unfinished += slots
        if retry is not None:
            retries.append(retry)

    states = machine.states
    if spec.scheduler.type == "pbt":
        plan_exploits(exp, ordered_trials, pods_of, snapshot, states, plan, TERMINAL)
    configs = TrialConfigs(exp, ordered_trials, states, plan)
    total = configs.total
    recreated = _recreate_deleted(exp, ordered_trials, pods_of, configs, scheduler, plan, total)
    for new_pod in recreated:
        states[new_pod.trial] = TrialState.PENDING.value
        unfinished += sum(1 for p in pods_of.get(new_pod.trial, []) if not p.finished)
        if not pods_of.get(new_pod.trial):
            retries.append(new_pod)
    failed = sum(1 for s in states.values() if s == TrialState.FAILED.value)
    too_many_failed = spec.max_failed_trials > 0 and failed >= spec.max_failed_trials
    created = len(ordered_trials) + len(recreated)
    fatal = _start_failure_fatal(machine, ordered_trials)
    spent = budget_spent(spec, exp.status, now)  # None while within spec.timeBudgetSeconds
    if spent is not None and not too_many_failed and fatal is None:
        stop_for_budget(plan, spec, ordered_trials, pods_of, states, snapshot,
                        budget_message(spec, spent), now)
    if not too_many_failed and fatal is None and spent is None:
        def bounded() -> bool:  # this tick's creates are spent: the next tick goes on
            plan.more_to_create = len(plan.new_pods) >= creates
            return plan.more_to_create

        for retry in retries:
            if unfinished >= spec.max_concurrent_trials or bounded():
                break
            plan.new_pods.append(retry)
            unfinished += 1
        next_index = max((t.index for t in ordered_trials), default=-1) + 1
        next_index = max([next_index, *(p.index + 1 for p in recreated)])
        while unfinished < spec.max_concurrent_trials and next_index < total and not bounded():
            params = configs.config(next_index)
            plan.new_trials.append(NewTrial(next_index, params, configs.state(next_index)))
            name = trial_name(exp.name, next_index)
            plan.new_pods.append(NewPod(name, next_index, 1, params, scheduler.milestones(name)))
            states[name] = TrialState.PENDING.value
            plan.event("TuneTrial", name, "Normal", "TrialCreated",
                       f"trial {next_index} with {json.dumps(params, sort_keys=True)}")
            unfinished += 1
            next_index += 1
            created += 1

    best = best_trial(spec, ordered_trials, states, plan.trial_status)
    phase, message = experiment_phase(spec, states, total, created, failed, too_many_failed, best)
    reason = None
    if fatal is not None:
        phase, message, reason = ExperimentPhase.FAILED, fatal, "TrialsCannotStart"
    elif spent is not None and not too_many_failed:
        phase, reason = (ExperimentPhase.SUCCEEDED if best else ExperimentPhase.FAILED), BUDGET_REASON
        message = budget_message(spec, spent) + (
            f"; best trial {best.name}: {spec.objective.metric}={best.metric:g}" if best
            else "; no trial had reported a finite objective value")
        if exp.status.get("phase") != phase.value:
            plan.event("TuneExperiment", exp.name, "Normal" if best else "Warning",
                       BUDGET_REASON, message)
    status = plan.experiment_status = experiment_status(
        generation=exp.generation, previous=exp.status, phase=phase, message=message,
        states=states, total=total, created=created, best=best, scheduler=scheduler,
        metrics_error=metrics_error, now=now, reason=reason)
    recorded = configs_to_record(exp, ordered_trials,
                                 [(t.index, t.params) for t in plan.new_trials])
    if recorded:  # a merge patch: only the new entries are written
        status.trial_configs = recorded
    _add_pod_health(plan, status, machine, exp, now)
    if phase in FINISHED_PHASES and exp.status.get("phase") != phase.value:
        plan.event("TuneExperiment", exp.name,
                   "Normal" if phase is ExperimentPhase.SUCCEEDED else "Warning",
                   f"Experiment{phase.value}", message)
    if phase is ExperimentPhase.FAILED:
        _stop_live_trials(plan, ordered_trials, pods_of, states, spec, message, now)
    if schedulers is not None:
        schedulers.put(exp.namespace, exp.name, settings, scheduler)
    return plan


def _stop_live_trials(plan: Plan, trials: Sequence[TrialView], pods_of: Mapping[str, list[PodView]],
                      states: Mapping[str, str], spec: TuneExperimentSpec, message: str,
                      now: str) -> None:
    """A failed experiment fails its unfinished trials and deletes their running pods."""
    for t in trials:
        if states[t.name] not in TERMINAL:
            plan.patch_trial(t.name, state=TrialState.FAILED, reason="ExperimentFailed",
                             message=f"stopped because the experiment failed: {message}",
                             completion_time=now)
        for p in pods_of.get(t.name, []):
            if not p.finished and not p.deleting and p.name not in plan.deleting:
                plan.delete_pods.append((p.name, spec.prune_grace_period_seconds))


def trial_name(experiment: str, index: int) -> str:
    """The TuneTrial of an experiment's trial `index` (manifests.trial_name says the same)."""
    return f"{experiment}-{index}"


def _recreate_deleted(exp: ExperimentView, trials: Sequence[TrialView],
                      pods_of: Mapping[str, list[PodView]], configs: TrialConfigs,
                      scheduler: TrialScheduler, plan: Plan, total: int) -> list[NewPod]:
    """TuneTrials deleted by hand come back with the same index and config, to run again.

    A trial is missing when its index is below the highest one that exists, or below the
    count the stored status says was created. Other trials' rung records are untouched, so
    decisions already taken stand; the rerun resumes from the trial's checkpoint, and its
    first pod waits until the deleted trial's pods are gone. Returns each one's first pod.
    A model-based config depends on what the search had seen when the trial was created,
    so it is read back from status.trialConfigs, else from the trial's pods (their
    KUBETUNE_CONFIG); only when neither has it is a new one suggested, and the Event says so.
    """
    present = {t.index for t in trials}
    stored = int((exp.status.get("trials") or {}).get("created") or 0)
    expected = min(max(max(present, default=-1) + 1, stored), total)
    out = []
    for index in range(expected):
        if index in present:
            continue
        name = trial_name(exp.name, index)
        params, kept = _deleted_config(exp, pods_of.get(name, []), configs, index)
        plan.new_trials.append(NewTrial(index, params))
        for p in pods_of.get(name, []):
            if not p.deleting:
                plan.delete_pods.append((p.name, 0 if p.finished else
                                         exp.spec.prune_grace_period_seconds))
        said = ("the same config" if kept else
                "a new config (its pods, which held the old one, are gone)")
        plan.event("TuneExperiment", exp.name, "Warning", "TrialRecreated",
                   f"TuneTrial {name} was deleted; it is created again with {said} "
                   f"(index {index}) and runs again, resuming from its checkpoint")
        out.append(NewPod(name, index, 1, params, scheduler.milestones(name)))
    return out


def _deleted_config(exp: ExperimentView, pods: Sequence[PodView], configs: TrialConfigs,
                    index: int) -> tuple[dict[str, Any], bool]:
    """A deleted trial's config (status.trialConfigs, else its pods) and whether it is its own."""
    if not configs.model_based:
        return configs.config(index), True
    recorded = (exp.status.get("trialConfigs") or {}).get(str(index))
    if isinstance(recorded, dict):
        configs.keep(index, recorded)
        return dict(recorded), True
    for p in sorted(pods, key=lambda p: p.attempt, reverse=True):
        if p.config is not None:
            configs.keep(index, p.config)
            return dict(p.config), True
    return configs.config(index), False


def _start_failure_fatal(machine: TrialMachine, trials: Sequence[TrialView]) -> str | None:
    """The experiment's failure message when pods cannot start and no trial ever ran."""
    if not machine.start_failures:
        return None
    if machine.ran or any(t.status.get("startTime") for t in trials):
        return None
    return (f"trial pods cannot start: {machine.start_failures[0]}; every trial started so far "
            "failed this way. Fix spec.trialTemplate (the image name, its registry credentials, "
            "or the ConfigMaps and Secrets its containers reference) and create the experiment "
            "again")


def _add_pod_health(plan: Plan, status: TuneExperimentStatus, machine: TrialMachine,
                    exp: ExperimentView, now: str) -> None:
    """The pods' conditions (TrialsUnschedulable, TrialsReporting) and the disruption count."""
    previous = list(exp.status.get("conditions") or [])
    health = machine.health.conditions(
        exp.spec.trial_report_timeout_seconds, now, previous,
        lambda ctype, ok, reason, message, at, before: condition(
            ctype, ok, reason, message, at, before, generation=exp.generation))
    status.conditions = [*(status.conditions or []), *health]
    if status.trials is not None:
        status.trials.disruptions = sum(machine.disruptions.values())
    stuck = became_true("TrialsUnschedulable", health, previous)
    if stuck is not None:
        plan.event("TuneExperiment", exp.name, "Warning", "TrialsUnschedulable",
                   stuck.message or "")
