"""The workers of multi-worker trials, as the CLI shows them: rank, pod, node, phase, log.

A trial of N workers runs each attempt as an Indexed Job of N pods; a pod's rank is its
Job completion index (contract.worker_rank). Read from the pods that still exist (a
pruned or finished trial's pods may be gone; their logs stay on the local cluster).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubetune.client.errors import KubetuneError
from kubetune.contract import ATTEMPT_LABEL, TRIAL_LABEL, pod_log_path, worker_rank


@dataclass(frozen=True)
class WorkerRow:
    """One pod of a trial: which attempt and rank, where it runs, and its phase."""

    trial: str
    attempt: int
    rank: int
    pod: str
    node: str
    phase: str


def worker_rows(pods: Sequence[Any]) -> list[WorkerRow]:
    """Rows from pods as the kubernetes client lists them (V1Pod objects)."""
    rows = []
    for p in pods:
        labels = p.metadata.labels or {}
        if TRIAL_LABEL not in labels:
            continue
        rows.append(WorkerRow(
            trial=labels[TRIAL_LABEL], attempt=int(labels.get(ATTEMPT_LABEL, "1")),
            rank=worker_rank(labels, p.metadata.annotations), pod=p.metadata.name,
            node=p.spec.node_name or "", phase=p.status.phase or "Pending"))
    return sorted(rows, key=lambda r: (r.trial, r.attempt, r.rank, r.pod))


def latest_attempts(rows: Sequence[WorkerRow]) -> dict[str, list[WorkerRow]]:
    """Each trial's workers of its latest attempt that still has pods."""
    latest: dict[str, int] = {}
    for r in rows:
        latest[r.trial] = max(latest.get(r.trial, 0), r.attempt)
    out: dict[str, list[WorkerRow]] = {}
    for r in rows:
        if r.attempt == latest[r.trial]:
            out.setdefault(r.trial, []).append(r)
    return out


def placement(rows: Sequence[WorkerRow]) -> str:
    """`0@node-a 1@node-b`: each rank and the node it runs on ("-" while unscheduled)."""
    return " ".join(f"{r.rank}@{r.node or '-'}" for r in rows)


def list_workers(core: Any, namespace: str, selector: str) -> list[WorkerRow]:
    """The worker rows of the pods matching a label selector (a trial's, an experiment's)."""
    return worker_rows(core.list_namespaced_pod(namespace, label_selector=selector,
                                                _request_timeout=30).items)


def rank_log(core: Any, namespace: str, trial: str, rank: int, attempt: int | None,
             status: Mapping[str, Any], state_dir: str | None) -> tuple[str, str]:
    """(pod, log) of rank `rank` of the trial's attempt (default: its latest)."""
    rows = [r for r in list_workers(core, namespace, f"{TRIAL_LABEL}={trial}") if r.rank == rank]
    wanted = attempt or int(status.get("attempts") or 0) or max((r.attempt for r in rows),
                                                                default=0)
    rows = [r for r in rows if r.attempt == wanted]
    if state_dir is not None:
        from pathlib import Path

        job = f"{trial}-a{wanted}-{rank}-"
        directory = pod_log_path(state_dir, namespace, "x").parent
        found = sorted(Path(directory).glob(f"{job}*.log")) if Path(directory).is_dir() else []
        if rows:
            found = [pod_log_path(state_dir, namespace, rows[-1].pod), *found]
        for path in found:
            if path.is_file():
                return path.stem, path.read_text(errors="replace")
        raise KubetuneError(f"no log for rank {rank} of trial {trial!r} attempt {wanted} "
                            f"(looked in {directory})")
    if not rows:
        raise KubetuneError(f"trial {trial!r} has no pod of rank {rank} in attempt {wanted} "
                            "(a pruned or finished trial's pods are deleted)")
    pod = rows[-1].pod
    return pod, str(core.read_namespaced_pod_log(pod, namespace, _request_timeout=30))
