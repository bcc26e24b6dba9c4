"""The reconcile tick's multi-worker part: fold the Jobs, admit whole, create and delete them.

Only for an experiment whose spec.workers may give a trial more than one pod; any other
experiment never reaches this module, so a one-pod trial behaves exactly as before.
The decisions stay in the pure planner (planner/groups.py folds an attempt's Job and
pods into one view, planner/admission.py decides what fits); this module makes the
reads and the writes they need. The experiment's Jobs come with its pods (the watch-fed
view, view.py, or the tick's own lists without it); only whole-trial admission lists,
cluster-wide, when a tick has attempts to start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kubetune import contract
from kubetune.api import SpecError, TrialState, TuneExperimentSpec
from kubetune.controller import jobs
from kubetune.controller.gateway import Gateway, template_refused
from kubetune.controller.planner import Plan
from kubetune.controller.planner.admission import Capacity
from kubetune.controller.planner.groups import Groups, read_groups


def multi(spec: TuneExperimentSpec) -> bool:
    """Whether the experiment's trials may run more than one pod."""
    return spec.workers is not None and spec.workers.multi


def check(spec: TuneExperimentSpec) -> None:
    """Refuse a template that sets the env the operator writes for torchrun."""
    if not multi(spec):
        return
    for i, container in enumerate(spec.trial_template.pod_template()["spec"]["containers"]):
        for env in container.get("env") or []:
            if env.get("name") in contract.PET_ENV_NAMES:
                raise SpecError("spec.trialTemplate", f"containers[{i}] sets {env['name']}, "
                                "which the operator sets for torchrun in a multi-worker trial "
                                "(from spec.workers); remove it")


def read(worker_jobs: list[dict[str, Any]],
         pods: list[dict[str, Any]]) -> tuple[Groups, list[dict[str, Any]]]:
    """The experiment's worker Jobs folded with their pods, and its plain trial pods."""
    groups, plain = read_groups(worker_jobs, pods)
    return groups, [dict(p) for p in plain]


def capacity(gw: Gateway) -> Capacity:
    """The cluster's free GPUs, node by node, after the demand not placed yet."""
    nodes, pods, worker_jobs = gw.capacity_objects()
    return Capacity.read(nodes, pods, worker_jobs)


def create_attempt(gw: Gateway, spec: TuneExperimentSpec, trial: Mapping[str, Any],
                   pod: Mapping[str, Any], params: Mapping[str, Any]) -> bool:
    """Create the attempt of `pod` (build_pod's) as the trial's Service and Job when it has
    more than one worker; False (nothing done) when it is one pod."""
    workers = spec.workers
    assert workers is not None
    count = workers.count_for(params)
    if count <= 1:
        return False
    meta = trial["metadata"]
    attempt = int(pod["metadata"]["labels"][contract.ATTEMPT_LABEL])
    problem = jobs.name_problem(meta["name"], attempt, count)
    if problem:
        raise SpecError("metadata.name", problem)
    job = jobs.build_job(pod, workers=count, procs_per_worker=workers.procs_per_worker,
                         master_port=workers.master_port)
    with template_refused(f"the apiserver rejected trial Job {job['metadata']['name']}"):
        gw.create_service(jobs.build_service(trial))
        gw.create_job(job)
    return True


def delete(gw: Gateway, groups: Groups | None, namespace: str, name: str, grace: int,
           plan: Plan | None = None) -> bool:
    """Delete the attempt a view name stands for (its Job and every worker); False when
    the name is a plain trial pod's. An attempt whose rank 0 succeeded keeps its Job and
    rank 0's pod unless this tick's `plan` prunes the trial."""
    if groups is None or name not in groups.job_of_view:
        return False
    job = groups.job_of_view[name]
    pods: Sequence[str] = [w.pod for w in groups.workers.get(job, [])
                           if not w.view.deleting and not w.view.finished]
    view = next((v for v in groups.views if v.name == name), None)
    patch = plan.trial_status.get(view.trial) if plan is not None and view is not None else None
    pruned = patch is not None and patch.state == TrialState.PRUNED
    if view is not None and view.done and not view.failed and not view.deleting and not pruned:
        # Rank 0 has finished: the other ranks go, the Job and rank 0's pod (its result and
        # its log) stay, as a one-pod trial's finished pod does.
        for pod in pods:
            gw.delete_pod(namespace, pod, grace)
        return True
    gw.delete_job(namespace, job, grace, pods)
    return True
