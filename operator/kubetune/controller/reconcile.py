"""One reconcile tick of one TuneExperiment: read, plan, apply.

Level-triggered: every tick reads the experiment's TuneTrials and Pods and one
Prometheus snapshot, asks the pure planner what to do, and applies it. Trial
decisions are written before pods are deleted or created, so a crash between
two writes is repaired by the next tick, by this process or a new one.
Statuses go out as the api models' merge patches (`StatusModel.merge_patch`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from kubetune.api import (
    GROUP,
    VERSION,
    Condition,
    ConditionStatus,
    ExperimentPhase,
    SpecError,
    TuneExperimentSpec,
    TuneExperimentStatus,
    validate_experiment_spec,
)
from kubetune.contract import EXPERIMENT_TERMINAL_PHASES as TERMINAL_PHASES
from kubetune.controller import manifests
from kubetune.controller.gateway import Gateway
from kubetune.controller.metrics import OperatorMetrics
from kubetune.controller.planner import ExperimentView, Plan, PodView, TrialView, plan_tick
from kubetune.controller.prometheus import MetricsUnavailable, PrometheusSource
from kubetune.controller.settings import OperatorSettings
from kubetune.search import BasicVariantSampler

COUNTED_STATES = ("pending", "running", "succeeded", "pruned", "failed")


@dataclass
class OperatorContext:
    """Per-operator state, kept in kopf's memo (never in module globals)."""

    settings: OperatorSettings
    gateway: Gateway
    prometheus: PrometheusSource
    metrics: OperatorMetrics


def now() -> str:
    """The current time as the statuses write it (RFC 3339, UTC, seconds)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def tick(ctx: OperatorContext, body: kopf.Body, logger: kopf.Logger) -> None:
    """Reconcile one experiment once; an experiment that ended stays as it is."""
    meta, status = body["metadata"], dict(body.get("status") or {})
    name, namespace, generation = meta["name"], meta["namespace"], int(meta.get("generation", 1))
    if status.get("phase") in TERMINAL_PHASES and status.get("observedGeneration") == generation:
        ctx.metrics.set_experiment(meta["uid"], status["phase"], Counter())
        return
    gw = ctx.gateway
    try:
        spec = validate_experiment_spec(dict(body.get("spec") or {}))
        _check_template(spec)
    except SpecError as e:
        _fail_invalid(ctx, body, e, logger)
        return

    trials = gw.list_trials(namespace, name)
    pods = gw.list_pods(namespace, name)
    pod_views = [PodView.from_body(p) for p in pods]
    snapshot = None
    metrics_error = None
    if any(not p.finished for p in pod_views):
        try:
            prom_url = spec.prometheus.url if spec.prometheus else None
            snapshot = ctx.prometheus.snapshot(namespace, name, spec.objective.metric,
                                               url=prom_url).trials
        except MetricsUnavailable as e:
            metrics_error = str(e)
            logger.warning("metrics unavailable: %s", e)
    elif status.get("conditions"):
        # Nothing runs: keep the previous metrics condition rather than claim a fresh read.
        prev = next((c for c in status["conditions"] if c.get("type") == "MetricsAvailable"), None)
        if prev is not None and prev.get("status") == "False":
            metrics_error = str(prev.get("message", "")).split(";")[0]
    view = ExperimentView(name=name, namespace=namespace, generation=generation, spec=spec,
                          status=status)
    plan = plan_tick(view, [TrialView.from_body(t) for t in trials], pod_views, snapshot,
                     now(), metrics_error)
    try:
        _apply(ctx, body, spec, plan, trials, logger)
    except SpecError as e:
        _fail_invalid(ctx, body, e, logger)


def _check_template(spec: TuneExperimentSpec) -> None:
    params = BasicVariantSampler.from_spec(spec).config(0)
    unknown = manifests.unknown_param_references(spec.trial_template.pod_template(), params)
    if unknown:
        names = ", ".join(sorted(params))
        raise SpecError("spec.trialTemplate", f"${{params.{unknown[0]}}} in the container's "
                        f"command/args names no search-space parameter; the parameters are: {names}")


def _fail_invalid(ctx: OperatorContext, body: kopf.Body, error: SpecError,
                  logger: kopf.Logger) -> None:
    meta = body["metadata"]
    message = f"invalid spec: {error}"
    ctx.gateway.patch_experiment_status(meta["namespace"], meta["name"], TuneExperimentStatus(
        phase=ExperimentPhase.FAILED, message=message,
        observed_generation=int(meta.get("generation", 1)),
        conditions=[Condition(type="SpecValid", status=ConditionStatus.FALSE, reason="InvalidSpec",
                              message=message, last_transition_time=now())],
    ))
    kopf.event(body, type="Warning", reason="InvalidSpec", message=message)
    ctx.metrics.set_experiment(meta["uid"], "Failed", Counter())
    logger.warning("%s", message)


def _apply(ctx: OperatorContext, body: kopf.Body, spec: TuneExperimentSpec, plan: Plan,
           trials: list[dict[str, Any]], logger: kopf.Logger) -> None:
    gw = ctx.gateway
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    by_name = {t["metadata"]["name"]: t for t in trials}
    # 1. Decisions first: a pruned trial is recorded before its pod goes.
    for trial, trial_status in plan.trial_status.items():
        try:
            gw.patch_trial_status(namespace, trial, trial_status)
        except ApiException as e:
            if e.status != 404:
                raise
    for pod, grace in plan.delete_pods:
        gw.delete_pod(namespace, pod, grace)
    # 2. New trials, then pods owned by them.
    for new in plan.new_trials:
        created = gw.create_trial(manifests.build_trial(body, new.index, new.params))
        by_name[created["metadata"]["name"]] = created
    for new_pod in plan.new_pods:
        trial_body = by_name.get(new_pod.trial) or gw.get_trial(namespace, new_pod.trial)
        pod_body = manifests.build_pod(
            template=spec.trial_template.pod_template(), trial=trial_body, attempt=new_pod.attempt,
            params=new_pod.params, objective_metric=spec.objective.metric,
            milestones=new_pod.milestones, metrics_port=spec.metrics_port)
        try:
            gw.create_pod(pod_body)
        except ApiException as e:
            if e.status not in (400, 422):
                raise
            # The template itself is wrong: say so on the resource instead of retrying forever.
            raise SpecError("spec.trialTemplate", "the apiserver rejected trial pod "
                            f"{pod_body['metadata']['name']}: {_api_message(e)}") from e
    # 3. Events and the experiment's status.
    for ev in plan.events:
        if ev.kind == "TuneExperiment":
            target: Any = body
        else:
            uid = (by_name.get(ev.name) or {}).get("metadata", {}).get("uid")
            target = _trial_ref(namespace, ev.name, uid)
        kopf.event(target, type=ev.type, reason=ev.reason, message=ev.message)
    status = plan.experiment_status or TuneExperimentStatus()
    patch = status.merge_patch()
    if changes(body.get("status") or {}, patch):
        gw.patch_experiment_status(namespace, name, status)
    counts = Counter({k: v for k, v in (patch.get("trials") or {}).items() if k in COUNTED_STATES})
    ctx.metrics.set_experiment(meta["uid"], patch.get("phase"), counts)
    if plan.new_trials or plan.delete_pods:
        logger.info("created %d trials, deleted %d pods", len(plan.new_trials), len(plan.delete_pods))


def _trial_ref(namespace: str, name: str, uid: str | None) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TuneTrial",
            "metadata": {"name": name, "namespace": namespace, "uid": uid or ""}}


def _api_message(e: ApiException) -> str:
    try:
        return str(json.loads(e.body or "").get("message", e.reason))
    except (TypeError, ValueError):
        return str(e.reason)


def without_nulls(value: Any) -> Any:
    """`value` as the apiserver stores it: null fields are dropped."""
    if isinstance(value, Mapping):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def changes(stored: Any, patch: Any) -> bool:
    """True when applying the merge patch `patch` would change `stored`."""
    if isinstance(patch, Mapping):
        if not isinstance(stored, Mapping):
            return True
        return any(changes(stored.get(k), v) for k, v in patch.items())
    return bool(without_nulls(stored) != without_nulls(patch))
