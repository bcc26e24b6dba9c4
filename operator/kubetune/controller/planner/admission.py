"""Whole-trial admission: a multi-worker trial starts only when all its pods fit.

Without a queueing system in the cluster, two trials that each got half their pods
placed would hold GPUs forever, each waiting for the other's. So an attempt of N
workers of g GPUs each is started only when the nodes' free `nvidia.com/gpu` fit N
whole pods: free = allocatable minus what the non-terminated pods bound to the node
request, node by node, after the demand already decided but not placed yet (pods
waiting for the scheduler, and pods a worker Job has yet to make) has been placed
first. Attempts are admitted in the planner's order, the first that does not fit
stops the rest (so a large trial is not starved by smaller ones behind it), and each
one admitted takes its GPUs out of the snapshot for the next.

Pure: the capacity snapshot (`Capacity.read`) is input, the decision a function of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubetune.api import TuneExperimentSpec
from kubetune.controller.planner.actions import Plan
from kubetune.controller.planner.pods import became_true
from kubetune.controller.planner.status import condition
from kubetune.controller.planner.views import TrialView

GPU = "nvidia.com/gpu"
TERMINATED = ("Succeeded", "Failed")
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")


def pod_gpus(spec: Mapping[str, Any]) -> int:
    """nvidia.com/gpu a pod spec asks for: requests, else limits, summed over containers."""
    total = 0
    for container in spec.get("containers") or []:
        resources = container.get("resources") or {}
        value = (resources.get("requests") or {}).get(GPU) or (resources.get("limits") or {}).get(GPU)
        if value is not None:
            total += int(str(value))
    return total


@dataclass
class Capacity:
    """Free GPUs per schedulable node, and GPU pods decided but not placed yet."""

    free: dict[str, int] = field(default_factory=dict)
    unplaced: list[int] = field(default_factory=list)
    """GPUs of each pod that will need a node: waiting for the scheduler, or not made yet."""

    @classmethod
    def read(cls, nodes: Sequence[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]],
             jobs: Sequence[Mapping[str, Any]] = ()) -> Capacity:
        """The snapshot from the cluster's Nodes, Pods and worker Jobs (raw JSON).

        A cordoned node offers nothing; a worker Job that is not finished or deleted and
        has fewer live pods than its parallelism adds its missing pods as unplaced.
        """
        free: dict[str, int] = {}
        for node in nodes:
            if (node.get("spec") or {}).get("unschedulable"):
                continue
            allocatable = ((node.get("status") or {}).get("allocatable") or {}).get(GPU)
            free[node["metadata"]["name"]] = int(str(allocatable or 0))
        unplaced = []
        live_per_job: dict[tuple[str, str], int] = {}
        for pod in pods:
            if (pod.get("status") or {}).get("phase") in TERMINATED:
                continue
            meta = pod["metadata"]
            labels = meta.get("labels") or {}
            job = next((labels[k] for k in JOB_NAME_LABELS if labels.get(k)), "")
            if job:
                key = (meta.get("namespace", ""), job)
                live_per_job[key] = live_per_job.get(key, 0) + 1
            gpus = pod_gpus(pod.get("spec") or {})
            if gpus <= 0:
                continue
            bound = (pod.get("spec") or {}).get("nodeName")
            if bound:
                if bound in free:
                    free[bound] -= gpus
            else:
                unplaced.append(gpus)
        for job in jobs:
            meta, spec = job["metadata"], job.get("spec") or {}
            if meta.get("deletionTimestamp") or _finished(job):
                continue
            gpus = pod_gpus((spec.get("template") or {}).get("spec") or {})
            want = int(spec.get("parallelism") or 0)
            have = live_per_job.get((meta.get("namespace", ""), meta["name"]), 0)
            unplaced.extend([gpus] * max(0, want - have) if gpus > 0 else [])
        snapshot = cls(free={n: max(0, f) for n, f in free.items()}, unplaced=unplaced)
        for gpus in sorted(snapshot.unplaced, reverse=True):
            snapshot._take(gpus)
        snapshot.unplaced = []
        return snapshot

    def _take(self, gpus: int) -> bool:
        """Place one pod on the node with the least room that fits it (best fit)."""
        fitting = [(f, n) for n, f in self.free.items() if f >= gpus]
        if not fitting:
            return False
        _, node = min(fitting)
        self.free[node] -= gpus
        return True

    def fits(self, workers: int, gpus: int) -> bool:
        """Whether `workers` pods of `gpus` GPUs each fit now, whole pods per node."""
        if gpus <= 0:
            return True
        return sum(f // gpus for f in self.free.values()) >= workers

    def admit(self, workers: int, gpus: int) -> bool:
        """Take the GPUs of an attempt that fits out of the snapshot; False if it does not fit."""
        if not self.fits(workers, gpus):
            return False
        for _ in range(workers if gpus > 0 else 0):
            self._take(gpus)
        return True

    @property
    def total_free(self) -> int:
        return sum(self.free.values())


def _finished(job: Mapping[str, Any]) -> bool:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return True
    return False


@dataclass(frozen=True)
class Waiting:
    """An attempt that waits for capacity: the numbers that say why."""

    trial: str
    workers: int
    gpus_per_worker: int
    free: int
    """Free GPUs in all (not all usable: whole pods per node)."""
    nodes: int


def admit_in_order(capacity: Capacity,
                   attempts: Sequence[tuple[str, int, int]]) -> tuple[list[str], list[Waiting]]:
    """Admit (trial, workers, gpus per worker) attempts in order until one does not fit.

    Returns the admitted trials and, for the rest, what each waits for.
    """
    admitted: list[str] = []
    waiting: list[Waiting] = []
    blocked = False
    for trial, workers, gpus in attempts:
        if not blocked and capacity.admit(workers, gpus):
            admitted.append(trial)
            continue
        blocked = True
        waiting.append(Waiting(trial, workers, gpus, capacity.total_free, len(capacity.free)))
    return admitted, waiting


def capacity_message(waiting: Sequence[Waiting]) -> str:
    """The CapacityLimited condition's message."""
    first = waiting[0]
    more = f" ({len(waiting) - 1} more trial(s) wait behind it)" if len(waiting) > 1 else ""
    return (f"trial {first.trial} needs {first.workers} pods x {first.gpus_per_worker} "
            f"nvidia.com/gpu at once; the {first.nodes} node(s) have {first.free} free "
            f"nvidia.com/gpu, not enough whole pods{more}; it starts when GPUs free up")


def plan_admission(plan: Plan, spec: TuneExperimentSpec, trials: Sequence[TrialView],
                   capacity: Capacity, now: str, previous: Sequence[Mapping[str, Any]],
                   generation: int, experiment: str) -> list[Waiting]:
    """Keep only the new attempts that fit whole (in the plan's order) in `plan.new_pods`.

    An attempt that waits keeps its trial Pending (its TuneTrial may be new), so it is
    planned again first at the next tick and keeps its slot of maxConcurrentTrials. The
    experiment gets the CapacityLimited condition (True with the numbers while a trial
    waits, with one Event when it becomes so), and a waiting trial's status says so.
    """
    workers = spec.workers
    if workers is None or not workers.multi:
        return []
    gpus = pod_gpus(spec.trial_template.pod_template().get("spec") or {})
    attempts = [(p.trial, workers.count_for(p.params), gpus) for p in plan.new_pods]
    admitted, waiting = admit_in_order(capacity, attempts)
    keep = set(admitted)
    plan.new_pods = [p for p in plan.new_pods if p.trial in keep]
    if waiting:  # what is left waits for capacity (a wake or the interval), not at once
        plan.more_to_create = False
    stored = {t.name: t.status for t in trials}
    for w in waiting:
        message = capacity_message([w])
        if stored.get(w.trial, {}).get("reason") != "CapacityLimited":
            plan.patch_trial(w.trial, reason="CapacityLimited", message=message)
    for name in admitted:
        if stored.get(name, {}).get("reason") == "CapacityLimited":
            plan.patch_trial(name, reason="Admitted", message="all its workers fit: started")
    status = plan.experiment_status
    if status is not None:
        limited = condition(
            "CapacityLimited", bool(waiting), "InsufficientGPUs" if waiting else "Admitted",
            capacity_message(waiting) if waiting else "every trial due to start fits whole",
            now, previous, generation=generation)
        status.conditions = [*(status.conditions or []), limited]
        if became_true("CapacityLimited", [limited], previous) is not None:
            plan.event("TuneExperiment", experiment, "Normal", "CapacityLimited",
                       limited.message or "")
    return waiting
