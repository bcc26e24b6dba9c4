"""One reconcile tick of one TuneExperiment: read, plan, apply.

Level-triggered: every tick reads the experiment's TuneTrials and Pods and one
Prometheus snapshot, asks the pure planner what to do, and applies it (apply.py). Trial
decisions are written before pods are deleted or created, so a crash between
two writes is repaired by the next tick, by this process or a new one.
Statuses go out as the api models' merge patches (`StatusModel.merge_patch`).

`reconcile_once` is the one failure path of a tick: whatever it raises lands on
its experiment (failures.py decides how). A permanent failure ends the experiment
Failed with the message and stops its trials; a transient one is retried with
backoff (kopf.TemporaryError) and shown as a ReconcileError condition and an
Event, at most once a minute while it stays the same.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import kopf

from kubetune.api import (
    SpecError,
    TrialState,
    TuneExperimentSpec,
    TuneTrialStatus,
    validate_experiment_spec,
)
from kubetune.contract import EXPERIMENT_TERMINAL_PHASES as TERMINAL_PHASES
from kubetune.controller import distributed, manifests
from kubetune.controller.apply import apply_plan, post_events
from kubetune.controller.context import OperatorContext, now
from kubetune.controller.failures import (
    ErrorHistory,
    Failure,
    classify,
    failed_status,
    retrying_status,
)
from kubetune.controller.gateway import Gateway
from kubetune.controller.planner import ExperimentView, PodView, TrialView, plan_tick
from kubetune.controller.planner.admission import Capacity, plan_admission
from kubetune.controller.planner.groups import plan_worker_status
from kubetune.controller.planner.trial import TERMINAL
from kubetune.controller.prometheus import MetricsUnavailable, experiment_url_refusal
from kubetune.controller.settings import OperatorSettings
from kubetune.controller.view import Observed
from kubetune.search import BasicVariantSampler


def reconcile_once(ctx: OperatorContext, body: kopf.Body, history: ErrorHistory,
                   logger: kopf.Logger, observed: Observed | None = None) -> bool:
    """One tick of one experiment, every error of which lands on that experiment.

    `observed` is the watch-fed view of its trials, pods and worker Jobs; without it they
    are listed.
    Returns whether the experiment has more to do at once (Plan.more_to_create).

    Raises kopf.TemporaryError (with the backoff's delay) after a transient error only.
    """
    generation = int(body["metadata"].get("generation", 1))
    if history.failed_generation == generation:
        return False  # failed for good, though its Failed status could not be written
    try:
        again = tick(ctx, body, logger, observed)
    except Exception as e:  # the one failure path: every error is classified
        failure = classify(e)
        ctx.metrics.reconcile_errors.labels(failure.reason).inc()
        if failure.permanent:
            if ctx.creations is not None:  # what is being created is stopped with the rest
                ctx.creations.wait((body["metadata"]["namespace"], body["metadata"]["name"]),
                                   ctx.settings.retry_seconds)
            _fail(ctx, body, failure, history, logger)
            return False
        delay, report = history.failed(failure, time.monotonic(), ctx.settings.retry_seconds,
                                       ctx.settings.max_retry_seconds)
        if report:
            _report_transient(ctx, body, failure, delay, e, logger)
        raise kopf.TemporaryError(failure.message, delay=delay) from e
    history.succeeded()
    return again


def _fail(ctx: OperatorContext, body: kopf.Body, failure: Failure, history: ErrorHistory,
          logger: kopf.Logger) -> None:
    """End the experiment Failed with the message: status, one Event, its trials stopped."""
    meta = body["metadata"]
    generation = int(meta.get("generation", 1))
    if history.first_report(failure, time.monotonic()):
        # the Events held back to be merged go out first
        post_events(body, ctx.decision_events.due(meta["uid"], [], ended=True), {})
        kopf.event(body, type="Warning", reason=failure.reason, message=failure.message)
        logger.warning("experiment failed: %s", failure.message)
    try:
        ctx.gateway.patch_experiment_status(meta["namespace"], meta["name"], failed_status(
            failure, generation, body.get("status") or {}, now()))
    except Exception as e:  # the experiment must not loop on its own failure
        written = classify(e)
        if not written.permanent:  # the next tick meets the same failure and writes it again
            raise kopf.TemporaryError(f"{failure.message}; writing the Failed status: "
                                      f"{written.message}", delay=ctx.settings.retry_seconds) from e
        logger.warning("the Failed status cannot be written (%s); the Event says why",
                       written.message)
    history.failed_generation = generation
    ctx.metrics.set_experiment(meta["uid"], "Failed", Counter())
    _stop_trials(ctx.gateway, body, failure.message, logger)


def _stop_trials(gw: Gateway, body: kopf.Body, message: str, logger: kopf.Logger) -> None:
    """Best effort: fail the unfinished trials and delete their pods (the next tick will not)."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    try:
        grace = int((body.get("spec") or {}).get("pruneGracePeriodSeconds", 30))
        for trial in gw.list_trials(namespace, name):
            if TrialView.from_body(trial).state not in TERMINAL:
                gw.patch_trial_status(namespace, trial["metadata"]["name"], TuneTrialStatus(
                    state=TrialState.FAILED, reason="ExperimentFailed",
                    message=f"stopped because the experiment failed: {message}",
                    completion_time=now()))
        for pod in gw.list_pods(namespace, name):
            view = PodView.from_body(pod)
            if not view.finished and not view.deleting:
                gw.delete_pod(namespace, view.name, grace)
    except Exception as e:  # the experiment has failed already; its pods are owned
        logger.warning("could not stop every trial of the failed experiment: %s", e)


def _report_transient(ctx: OperatorContext, body: kopf.Body, failure: Failure, delay: float,
                      error: Exception, logger: kopf.Logger) -> None:
    meta = body["metadata"]
    if failure.reason == "InternalError":
        logger.error("reconcile failed: %s", failure.message, exc_info=error)  # once, with traceback
    else:
        logger.warning("reconcile failed, retrying in %.0fs: %s", delay, failure.message)
    kopf.event(body, type="Warning", reason="ReconcileError",
               message=f"{failure.reason}: {failure.message}; retrying")
    try:
        ctx.gateway.patch_experiment_status(meta["namespace"], meta["name"], retrying_status(
            failure, delay, int(meta.get("generation", 1)), body.get("status") or {}, now()))
    except Exception as e:  # the Event already says it; the tick is retried
        logger.warning("could not write the ReconcileError condition: %s", e)


def tick(ctx: OperatorContext, body: kopf.Body, logger: kopf.Logger,
         observed: Observed | None = None) -> bool:
    """Reconcile one experiment once; an experiment that ended stays as it is.

    Returns whether it left free slots to the next tick (Plan.more_to_create)."""
    meta, status = body["metadata"], dict(body.get("status") or {})
    name, namespace, generation = meta["name"], meta["namespace"], int(meta.get("generation", 1))
    if status.get("phase") in TERMINAL_PHASES and status.get("observedGeneration") == generation:
        ctx.metrics.set_experiment(meta["uid"], status["phase"], Counter())
        return False
    gw = ctx.gateway
    spec = validate_experiment_spec(dict(body.get("spec") or {}))
    _check_template(spec)
    _check_prometheus_url(ctx.settings, spec)
    distributed.check(spec)
    multi = distributed.multi(spec)
    if ctx.creations is not None:
        failure = ctx.creations.take_failure((namespace, name))
        if failure is not None:  # the last batch of creations failed: this tick says so
            raise failure
    if observed is None:
        creating = ctx.creations.creating((namespace, name)) if ctx.creations else None
        observed = Observed(gw.list_trials(namespace, name), gw.list_pods(namespace, name),
                            gw.list_jobs(namespace, name) if multi else [], creating)
    trials, pods = observed.trials, observed.pods
    groups = None  # a multi-worker attempt (a Job and its pods) is one view
    if multi:
        groups, pods = distributed.read(observed.jobs, pods)
    trial_views = ctx.trial_views.read((namespace, name), trials)
    pod_views = [PodView.from_body(p) for p in pods] + (groups.views if groups else [])
    snapshot = None
    metrics_error = None
    unsettled = awaiting_results(trial_views, pod_views)
    if unsettled is not None:
        try:
            prom_url = spec.prometheus.url if spec.prometheus else None
            snapshot = ctx.prometheus.snapshot(
                namespace, name, spec.objective.metric, url=prom_url,
                finished_pods=unsettled.finished, running_pods=unsettled.running).trials
        except MetricsUnavailable as e:
            metrics_error = str(e)
            logger.warning("metrics unavailable: %s", e)
    elif status.get("conditions"):
        # Nothing is waiting for a result: keep the previous metrics condition rather
        # than claim a fresh read.
        prev = next((c for c in status["conditions"] if c.get("type") == "MetricsAvailable"), None)
        if prev is not None and prev.get("status") == "False":
            metrics_error = str(prev.get("message", "")).split(";")[0]
    view = ExperimentView(name=name, namespace=namespace, generation=generation, spec=spec,
                          status=status)
    plan = plan_tick(view, trial_views, pod_views, snapshot, now(), metrics_error,
                     schedulers=ctx.schedulers)
    if plan.experiment_status is not None and plan.experiment_status.phase in TERMINAL_PHASES:
        ctx.schedulers.forget_experiment(namespace, name)  # it ticks no more
        ctx.trial_views.forget_experiment((namespace, name))
    if groups is not None:  # whole-trial admission of the attempts due to start
        plan_admission(plan, spec, trial_views,
                       distributed.capacity(gw) if plan.new_pods and observed.creating is None
                       else Capacity(), now(),
                       status.get("conditions") or [], generation, name)
        plan_worker_status(plan, trial_views, groups)
    apply_plan(ctx, body, spec, plan, trials, logger, groups, {p.name: p.trial for p in pod_views},
           observed.creating)
    # With creations in the background, their end wakes the loop (creations.py).
    return plan.more_to_create and ctx.creations is None


@dataclass(frozen=True)
class Awaiting:
    """The latest pods of the trials whose result is not settled yet, by whether they ended."""

    finished: list[str]
    """Their trial container has exited: their last report is wanted."""
    running: list[str]
    """Still running as far as the operator has seen: read past a staleness marker too."""


def awaiting_results(trials: list[TrialView], pods: list[PodView]) -> Awaiting | None:
    """None when no trial's result can still change (no Prometheus read is needed); else
    the latest pods of the trials not settled yet.

    A trial is unsettled while it is not Succeeded, Pruned or Failed: its pod may run,
    or its trial container have exited without the result recorded yet (the termination
    message is one source of that result, Prometheus the other).
    """
    latest: dict[str, PodView] = {}
    for p in pods:
        if p.trial not in latest or p.attempt > latest[p.trial].attempt:
            latest[p.trial] = p
    open_trials = [t for t in trials if t.state not in TERMINAL]
    if not open_trials and all(p.finished for p in pods):
        return None
    own = sorted((latest[t.name] for t in open_trials if t.name in latest), key=lambda p: p.name)
    return Awaiting(finished=[p.name for p in own if p.done],
                    running=[p.name for p in own if not p.done and not p.deleting])


def _check_template(spec: TuneExperimentSpec) -> None:
    params = BasicVariantSampler.from_spec(spec).config(0)
    unknown = manifests.unknown_param_references(spec.trial_template.pod_template(), params)
    if unknown:
        names = ", ".join(sorted(params))
        raise SpecError("spec.trialTemplate", f"${{params.{unknown[0]}}} in the container's "
                        f"command/args names no search-space parameter; the parameters are: {names}")


def _check_prometheus_url(settings: OperatorSettings, spec: TuneExperimentSpec) -> None:
    """Refuse an experiment's own Prometheus unless the configuration allows it (before any
    request is made to it)."""
    if spec.prometheus is None:
        return
    refusal = experiment_url_refusal(spec.prometheus.url, settings.experiment_prometheus_prefixes,
                                     settings.prometheus_url)
    if refusal is not None:
        raise SpecError("spec.prometheus.url", refusal)


def _fail_invalid(ctx: OperatorContext, body: kopf.Body, error: SpecError,
                  logger: kopf.Logger) -> None:
    """Fail the experiment for a spec that can never work (SpecValid=False, InvalidSpec)."""
    _fail(ctx, body, classify(error), ErrorHistory(), logger)
