"""A multi-worker trial's attempt, read as the one pod the trial machine reasons about.

An attempt of N workers is an Indexed Job and its pods. The trial machine (trial.py)
decides from one PodView per attempt, so `group_view` folds the Job and its pods into
one, by these rules (pure, from the raw objects the gateway lists):

- a worker with the DisruptionTarget condition (evicted, preempted; the Job's
  podFailurePolicy ignores it) disrupts the whole attempt: a new attempt resumes from
  the checkpoint, uncharged. It wins over other workers' failures, which follow from
  it (their peer is gone);
- otherwise a worker that failed fails the attempt (charged to trialRetries), with
  that worker's rank, pod and exit code in the words;
- otherwise rank 0's exit ends the attempt: its termination message is the trial's
  result (only rank 0 reports and checkpoints);
- until then the attempt is Running once every worker runs, else Pending (with any
  worker's image or scheduling problem).

The attempt holds its GPUs (`finished` False) until every pod of its Job has ended;
an attempt that is over while pods still run is deleted by the trial machine as a
whole (the Job and all its pods). The view is named after rank 0's pod (the pod
Prometheus scrapes and the status names), or after the Job before that pod exists.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubetune.api.workers import WorkerStatus
from kubetune.contract import ATTEMPT_LABEL, TRIAL_LABEL, TRIAL_TERMINAL_STATES, worker_rank
from kubetune.controller.planner.actions import Plan
from kubetune.controller.planner.views import PodView, TrialView

JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")


@dataclass(frozen=True)
class Worker:
    """One pod of a multi-worker attempt: its rank, name, node and phase."""

    rank: int
    pod: str
    node: str
    phase: str
    view: PodView


def job_of(pod: Mapping[str, Any]) -> str:
    """The Job a pod belongs to (the Job controller's label), "" for a plain trial pod."""
    labels = pod["metadata"].get("labels") or {}
    return next((labels[k] for k in JOB_NAME_LABELS if labels.get(k)), "")


def workers_of(pods: Sequence[Mapping[str, Any]]) -> list[Worker]:
    """The pods of one Job as workers, ascending by rank then creation."""
    out = []
    for pod in sorted(pods, key=lambda p: (p["metadata"].get("creationTimestamp") or "",
                                           p["metadata"]["name"])):
        meta = pod["metadata"]
        out.append(Worker(rank=worker_rank(meta.get("labels"), meta.get("annotations")),
                          pod=meta["name"], node=(pod.get("spec") or {}).get("nodeName") or "",
                          phase=(pod.get("status") or {}).get("phase", "Pending"),
                          view=PodView.from_body(pod)))
    return sorted(out, key=lambda w: w.rank)


def _condition(job: Mapping[str, Any], ctype: str) -> Mapping[str, Any] | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype and c.get("status") == "True":
            return dict(c)
    return None


def group_view(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> PodView:
    """The attempt of Job `job` (with `pods`, its pods) as one PodView; see the module."""
    meta = job["metadata"]
    labels = meta.get("labels") or {}
    count = int((job.get("spec") or {}).get("completions") or 1)
    workers = workers_of(pods)
    current: dict[int, Worker] = {}
    for w in workers:  # the latest pod of each rank (a replaced one is older)
        current[w.rank] = w
    rank0 = current.get(0)
    base = PodView(
        name=rank0.pod if rank0 else meta["name"], trial=labels.get(TRIAL_LABEL, ""),
        attempt=int(labels.get(ATTEMPT_LABEL, "1")), phase="Pending",
        deleting=bool(meta.get("deletionTimestamp")),
        owner_uid=next((o.get("uid", "") for o in meta.get("ownerReferences") or []
                        if o.get("kind") == "TuneTrial"), ""),
        image=rank0.view.image if rank0 else "",
        memory_limit=rank0.view.memory_limit if rank0 else "",
        config=next((w.view.config for w in workers if w.view.config is not None), None),
        waiting_since=min((w.view.waiting_since for w in workers if w.view.waiting_since),
                          default=None),
    )
    all_ended = all(w.view.finished for w in workers)
    ended_phase = "Failed"
    disrupted = next((w for w in workers if w.view.disruption), None)
    failed = next((w for w in workers if w.view.failed), None)
    if disrupted is not None:
        code = disrupted.view.exit_code or 137
        return dataclasses.replace(
            base, phase=ended_phase if all_ended else "Running", main_terminated=True,
            exit_code=code, reason=disrupted.view.reason,
            disruption=f"worker {disrupted.rank} ({disrupted.pod}): {disrupted.view.disruption}")
    if failed is not None:
        v = failed.view
        tail = v.message.strip().splitlines()[-1][:200] if v.message.strip() else ""
        words = f"worker {failed.rank} ({failed.pod}" + (f" on {failed.node})" if failed.node
                                                          else ")")
        return dataclasses.replace(
            base, phase=ended_phase if all_ended else "Running", main_terminated=True,
            exit_code=v.exit_code if v.exit_code not in (None, 0) else 1,
            reason=v.reason, message=f"{words}: {tail}" if tail else words,
            memory_limit=v.memory_limit)
    if rank0 is not None and rank0.view.done:
        return dataclasses.replace(
            base, phase="Succeeded" if all_ended else "Running", main_terminated=True,
            exit_code=0, message=rank0.view.message)
    complete = _condition(job, "Complete") or _condition(job, "SuccessCriteriaMet")
    if complete is not None and rank0 is None:
        return dataclasses.replace(base, phase="Succeeded" if all_ended else "Running",
                                   main_terminated=True, exit_code=0)
    job_failed = _condition(job, "Failed") or _condition(job, "FailureTarget")
    if job_failed is not None:
        return dataclasses.replace(
            base, phase=ended_phase if all_ended else "Running", main_terminated=True,
            exit_code=1, reason=str(job_failed.get("reason") or "Failed"),
            message=f"the attempt's Job failed: {job_failed.get('message') or ''}".strip())
    running = len(current) == count and all(w.view.phase == "Running" for w in current.values())
    waiting = next((w.view for w in current.values() if w.view.waiting_reason), None)
    unschedulable = next((w for w in current.values() if w.view.unschedulable), None)
    return dataclasses.replace(
        base, phase="Running" if running else "Pending",
        running_since=rank0.view.running_since if running and rank0 else None,
        waiting_reason=waiting.waiting_reason if waiting else "",
        waiting_message=waiting.waiting_message if waiting else "",
        image=waiting.image if waiting else base.image,
        unschedulable=(f"worker {unschedulable.rank}: {unschedulable.view.unschedulable}"
                       if unschedulable else ""))


@dataclass
class Groups:
    """The tick's multi-worker attempts: their views, and which Job each view name stands for."""

    views: list[PodView]
    job_of_view: dict[str, str]
    """View name (rank 0's pod, or the Job) -> the Job to delete when the view is deleted."""
    workers: dict[str, list[Worker]]
    """Job name -> its workers."""


def read_groups(jobs: Sequence[Mapping[str, Any]],
                pods: Sequence[Mapping[str, Any]]) -> tuple[Groups, list[Mapping[str, Any]]]:
    """Fold each Job with its pods into one view; returns them and the plain trial pods."""
    by_job: dict[str, list[Mapping[str, Any]]] = {}
    plain = []
    for pod in pods:
        job = job_of(pod)
        if job:
            by_job.setdefault(job, []).append(pod)
        else:
            plain.append(pod)
    groups = Groups(views=[], job_of_view={}, workers={})
    for body in jobs:
        name = body["metadata"]["name"]
        members = by_job.get(name, [])
        view = group_view(body, members)
        groups.views.append(view)
        groups.job_of_view[view.name] = name
        groups.job_of_view[name] = name
        groups.workers[name] = workers_of(members)
    return groups, plain


def plan_worker_status(plan: Plan, trials: Sequence[TrialView], groups: Groups) -> None:
    """Write each live trial's workers (rank, pod, node, phase of its latest attempt) when
    they changed, so the TuneTrial says where its workers run."""
    latest: dict[str, tuple[int, str]] = {}
    for view in groups.views:
        job = groups.job_of_view[view.name]
        if view.trial not in latest or view.attempt > latest[view.trial][0]:
            latest[view.trial] = (view.attempt, job)
    for trial in trials:
        if trial.name not in latest or trial.state in TRIAL_TERMINAL_STATES:
            continue
        current: dict[int, Worker] = {}
        for w in groups.workers.get(latest[trial.name][1], []):
            current[w.rank] = w
        rows = [WorkerStatus(rank=w.rank, pod=w.pod, node=w.node or None, phase=w.phase)
                for _, w in sorted(current.items())]
        stored = trial.status.get("workers") or []
        if [r.model_dump(mode="json", exclude_none=True) for r in rows] != stored:
            plan.patch_trial(trial.name, workers=rows)
