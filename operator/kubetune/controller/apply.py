"""The apply step of a tick: a plan's writes, in the order restart safety needs.

Writes go out concurrently, one chain per trial (concurrent.py): every decision and
deletion before any creation, the trials that end or lose their pod before those only
marked (Running, a rung recorded), and within a trial its decision before its pod is deleted,
so a crash between two writes is repaired by the next tick, by this process or a new
one. A tick's creations may run in the background (creations.py); its Events and its
status follow them. A tick that runs while an earlier one's creations are in flight
writes only its decisions about other trials, and their Events.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import kopf

from kubetune.api import GROUP, VERSION, TuneExperimentSpec, TuneExperimentStatus
from kubetune.contract import EXPERIMENT_TERMINAL_PHASES as TERMINAL_PHASES
from kubetune.contract import TRIAL_TERMINAL_STATES
from kubetune.controller import manifests, writes
from kubetune.controller.concurrent import DECISION, MARK, run_chains
from kubetune.controller.context import OperatorContext
from kubetune.controller.pace import changes, progress_only
from kubetune.controller.planner import Plan
from kubetune.controller.planner.actions import Event
from kubetune.controller.planner.events import aggregate
from kubetune.controller.planner.groups import Groups

COUNTED_STATES = ("pending", "running", "succeeded", "pruned", "failed")


def apply_plan(ctx: OperatorContext, body: kopf.Body, spec: TuneExperimentSpec, plan: Plan,
               trials: list[dict[str, Any]], logger: kopf.Logger, groups: Groups | None = None,
               pod_trials: Mapping[str, str] | None = None,
               creating: frozenset[str] | None = None) -> None:
    """Write `plan`. With `creating` (an earlier tick's creations in flight, about those
    trials) only the decisions about other trials are written, and their Events."""
    gw = ctx.gateway
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    by_name = {t["metadata"]["name"]: t for t in trials}
    pod_trials = pod_trials or {}
    untouched = frozenset() if creating is None else creating
    # Writes go out concurrently, one chain per trial, in the order each trial needs
    # (concurrent.py); every decision and deletion before any creation.
    # 1. Decisions first: a pruned trial is recorded before its pod goes.
    decided: dict[str, list[Callable[[], object]]] = {}
    for trial, trial_status in plan.trial_status.items():
        # a trial gone since is skipped
        if trial not in untouched:
            decided.setdefault(trial, []).append(
                functools.partial(gw.patch_trial_status, namespace, trial, trial_status))
    ending = {trial for trial, trial_status in plan.trial_status.items()
              if trial_status.state in TRIAL_TERMINAL_STATES}
    for pod, grace in plan.delete_pods:
        owner = pod_trials.get(pod, pod)
        if owner not in untouched:
            decided.setdefault(owner, []).append(
                functools.partial(writes.delete, gw, groups, namespace, pod, grace, plan))
            ending.add(owner)
    # A trial that ends or loses its pod goes before one only marked (Running, a rung).
    run_chains(ctx.writers, list(decided.values()),
               [DECISION if trial in ending else MARK for trial in decided])
    if creating is not None:  # decide only; the status waits for the batch's end
        post_events(body, ctx.decision_events.due(meta["uid"], [
            e for e in plan.events if decision_event(e, creating)]), by_name)
        if decided:
            logger.info("decided %d trials while creations are in flight", len(decided))
        return
    # 2. New trials, then pods owned by them; the very first pod is tried on the apiserver
    # before any trial exists, so a template it refuses fails the experiment at once.
    if plan.new_trials and not trials:
        writes.dry_run_first_pod(gw, body, spec, plan)
    created: dict[str, list[Callable[[], object]]] = {}
    for new in plan.new_trials:
        trial_body = manifests.build_trial(body, new.index, new.params, new.sampler_state)
        created.setdefault(trial_body["metadata"]["name"], []).append(
            functools.partial(writes.create_trial, gw, by_name, trial_body))
    for new_pod in plan.new_pods:
        created.setdefault(new_pod.trial, []).append(
            functools.partial(writes.create_pod, gw, spec, by_name, namespace, new_pod, groups))

    def then() -> None:
        # 3. Events (one per decision kind on the experiment: planner/events.py, merged
        # over ticks: pace.py) and its status.
        status = plan.experiment_status or TuneExperimentStatus()
        ended = status.phase in TERMINAL_PHASES
        post_events(body, ctx.decision_events.due(meta["uid"], plan.events, ended=ended), by_name)
        patch = status.merge_patch()
        stored = body.get("status") or {}
        if changes(stored, patch) and ctx.pace.due(meta["uid"], progress_only(stored, patch)):
            gw.patch_experiment_status(namespace, name, status)
        counts = Counter({k: v for k, v in (patch.get("trials") or {}).items()
                          if k in COUNTED_STATES})
        ctx.metrics.set_experiment(meta["uid"], patch.get("phase"), counts)
        if plan.new_trials or plan.delete_pods:
            logger.info("created %d trials, deleted %d pods", len(plan.new_trials),
                        len(plan.delete_pods))

    if ctx.creations is None:
        run_chains(ctx.writers, list(created.values()))
        then()
    else:  # in the background: the experiment's next tick need not wait for them
        ctx.creations.start((namespace, name), created, then)


def decision_event(event: Event, creating: frozenset[str]) -> bool:
    """An Event a tick that decides only posts: about a trial it wrote the decision of. The
    experiment's own Events follow its status, which that tick does not write."""
    return event.kind == "TuneTrial" and event.name not in creating and \
        event.reason != "TrialCreated"


def post_events(body: kopf.Body, events: list[Event],
                trials: Mapping[str, Mapping[str, Any]]) -> None:
    """Post a tick's Events as planner/events.py aggregates them; `trials` by name."""
    meta = body["metadata"]
    for ev in aggregate(events, meta["name"]):
        if ev.kind == "TuneExperiment":
            target: Any = body
        else:
            uid = (trials.get(ev.name) or {}).get("metadata", {}).get("uid")
            target = _trial_ref(meta["namespace"], ev.name, uid)
        kopf.event(target, type=ev.type, reason=ev.reason, message=ev.message)


def _trial_ref(namespace: str, name: str, uid: str | None) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TuneTrial",
            "metadata": {"name": name, "namespace": namespace, "uid": uid or ""}}
