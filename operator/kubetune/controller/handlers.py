"""The TuneExperiment reconcile loop: read, plan, apply, on a timer per experiment.

Level-triggered: every tick reads the experiment's TuneTrials and Pods and one
Prometheus snapshot, asks the pure planner what to do, and applies it. Trial
decisions are written before pods are deleted or created, so a crash between
two writes is repaired by the next tick, by this process or a new one.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from kubetune import contract
from kubetune.api import EXPERIMENT_PLURAL, GROUP, VERSION, SpecError, validate_experiment_spec
from kubetune.contract import EXPERIMENT_TERMINAL_PHASES as TERMINAL_PHASES
from kubetune.controller import manifests
from kubetune.controller.gateway import Gateway
from kubetune.controller.metrics import OperatorMetrics
from kubetune.controller.planner import ExperimentView, Plan, PodView, TrialView, plan_tick
from kubetune.controller.prometheus import MetricsUnavailable, PrometheusSource
from kubetune.controller.settings import OperatorSettings
from kubetune.search import BasicVariantSampler

TICK_SECONDS = OperatorSettings.from_env().tick_seconds


@dataclass
class OperatorContext:
    """Per-operator state, kept in kopf's memo (never in module globals)."""

    settings: OperatorSettings
    gateway: Gateway
    prometheus: PrometheusSource
    metrics: OperatorMetrics


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _api_client() -> client.ApiClient:
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger,
              **_: Any) -> None:
    ours = OperatorSettings.from_env()
    # Our own annotations and finalizer name, so kopf's bookkeeping reads as kubetune's.
    settings.persistence.finalizer = contract.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=contract.ANNOTATIONS_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=contract.ANNOTATIONS_PREFIX)
    # Timer successes would otherwise become one Kubernetes Event per tick.
    settings.posting.level = logging.WARNING
    # Reconnect watches well before proxies and load balancers drop idle streams
    # (https://kopf.readthedocs.io/en/stable/configuration/#networking-timeouts).
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.execution.max_workers = 32
    metrics = OperatorMetrics()
    gateway = Gateway(_api_client(), count_write=metrics.count_write)
    memo.kubetune = OperatorContext(
        settings=ours, gateway=gateway,
        prometheus=PrometheusSource(ours.prometheus_url, observe=metrics.observe_query),
        metrics=metrics,
    )
    logger.info("kubetune operator: Prometheus at %s, tick %.1fs", ours.prometheus_url,
                ours.tick_seconds)


@kopf.on.probe(id="prometheus")
def prometheus_configured(memo: kopf.Memo, **_: Any) -> str:
    return str(memo.kubetune.controller.settings.prometheus_url)


def _trial_ref(namespace: str, name: str, uid: str | None) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TuneTrial",
            "metadata": {"name": name, "namespace": namespace, "uid": uid or ""}}


def _without_nulls(value: Any) -> Any:
    """What the apiserver stores: null fields are dropped."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _changed(old: Any, new: Any) -> bool:
    """True when `new` (a merge patch) would change `old`."""
    if isinstance(new, dict):
        if not isinstance(old, dict):
            return True
        return any(_changed(old.get(k), v) for k, v in new.items())
    return bool(_without_nulls(old) != _without_nulls(new))


@kopf.timer(GROUP, VERSION, EXPERIMENT_PLURAL, interval=TICK_SECONDS, initial_delay=0,
            backoff=max(5.0, 2 * TICK_SECONDS))
def reconcile(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    ctx: OperatorContext = memo.kubetune
    started = time.monotonic()
    try:
        _tick(ctx, body, logger)
    finally:
        ctx.metrics.reconcile.observe(time.monotonic() - started)
        ctx.metrics.ticks.inc()


@kopf.on.delete(GROUP, VERSION, EXPERIMENT_PLURAL, optional=True)
def forget(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    memo.kubetune.metrics.set_experiment(body["metadata"]["uid"], None, None)


def _api_message(e: ApiException) -> str:
    try:
        return str(json.loads(e.body or "").get("message", e.reason))
    except (TypeError, ValueError):
        return str(e.reason)


def _fail_invalid(ctx: OperatorContext, body: kopf.Body, error: SpecError,
                  logger: kopf.Logger) -> None:
    meta = body["metadata"]
    message = f"invalid spec: {error}"
    ctx.gateway.patch_experiment_status(meta["namespace"], meta["name"], {
        "phase": "Failed", "message": message, "observedGeneration": int(meta.get("generation", 1)),
        "conditions": [{"type": "SpecValid", "status": "False", "reason": "InvalidSpec",
                        "message": message, "lastTransitionTime": _now()}],
    })
    kopf.event(body, type="Warning", reason="InvalidSpec", message=message)
    ctx.metrics.set_experiment(meta["uid"], "Failed", Counter())
    logger.warning("%s", message)


def _check_template(spec: Any) -> None:
    params = BasicVariantSampler.from_spec(spec).config(0)
    unknown = manifests.unknown_param_references(spec.trial_template.pod_template(), params)
    if unknown:
        names = ", ".join(sorted(params))
        raise SpecError("spec.trialTemplate", f"${{params.{unknown[0]}}} in the container's "
                        f"command/args names no search-space parameter; the parameters are: {names}")


def _tick(ctx: OperatorContext, body: kopf.Body, logger: kopf.Logger) -> None:
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
            snapshot = ctx.prometheus.snapshot(namespace, name, spec.objective.metric, url=prom_url).trials
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
                     _now(), metrics_error)
    try:
        _apply(ctx, body, spec, plan, trials, logger)
    except SpecError as e:
        _fail_invalid(ctx, body, e, logger)


def _apply(ctx: OperatorContext, body: kopf.Body, spec: Any, plan: Plan,
           trials: list[dict[str, Any]], logger: kopf.Logger) -> None:
    gw = ctx.gateway
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    by_name = {t["metadata"]["name"]: t for t in trials}
    # 1. Decisions first: a pruned trial is recorded before its pod goes.
    for trial, patch in plan.trial_status.items():
        try:
            gw.patch_trial_status(namespace, trial, patch)
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
    new_status = plan.experiment_status or {}
    if _changed(body.get("status") or {}, new_status):
        gw.patch_experiment_status(namespace, name, new_status)
    counts = Counter({k: v for k, v in (new_status.get("trials") or {}).items()
                      if k in ("pending", "running", "succeeded", "pruned", "failed")})
    ctx.metrics.set_experiment(meta["uid"], new_status.get("phase"), counts)
    if plan.new_trials or plan.delete_pods:
        logger.info("created %d trials, deleted %d pods", len(plan.new_trials), len(plan.delete_pods))
