"""Pure builders of a multi-worker trial's objects: its Indexed Job and headless Service.

An attempt of a trial of N workers is one Indexed Job (`<trial>-a<attempt>`) whose pod
template is the trial pod `manifests.build_pod` makes, plus torchrun's environment:

- completions = parallelism = N, `backoffLimit: 0` (an attempt's failure is the
  operator's to retry, from the checkpoint, with the whole group), a podFailurePolicy
  that ignores DisruptionTarget (an eviction is no failure of the trial), a
  successPolicy on index 0 (rank 0 finishing ends the Job), `podReplacementPolicy:
  Failed` (never two pods of one rank at once);
- each pod's hostname is `<job>-<rank>` (the Job controller sets it) under the
  subdomain of the trial's headless Service (`publishNotReadyAddresses`, so peers
  resolve before they are ready), and its env has PET_NNODES, PET_NPROC_PER_NODE,
  PET_NODE_RANK (the completion index, through the downward API), PET_MASTER_ADDR
  (`<job>-0.<service>`) and PET_MASTER_PORT, next to the usual KUBETUNE_* env.

Both are owned by the TuneTrial; names are deterministic, so a restarted operator
re-derives them and a repeated create is a harmless 409 (the object is adopted).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from kubetune import contract
from kubetune.api import GROUP, VERSION
from kubetune.contract import EXPERIMENT_LABEL, TRIAL_LABEL, WORKERS_LABEL

GPU = "nvidia.com/gpu"
"""The extended resource whole-trial admission counts."""


def _owner(trial: Mapping[str, Any]) -> dict[str, Any]:
    meta = trial["metadata"]
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TuneTrial", "name": meta["name"],
            "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}


def torchrun_env(trial: str, attempt: int, workers: int, procs_per_worker: int,
                 master_port: int) -> list[dict[str, Any]]:
    """The PET_* env of every pod of an attempt (PET_NODE_RANK from the completion index)."""
    return [
        {"name": contract.ENV_PET_NNODES, "value": str(workers)},
        {"name": contract.ENV_PET_NPROC_PER_NODE, "value": str(procs_per_worker)},
        {"name": contract.ENV_PET_NODE_RANK, "valueFrom": {"fieldRef": {
            "fieldPath": f"metadata.annotations['{contract.JOB_COMPLETION_INDEX}']"}}},
        {"name": contract.ENV_PET_MASTER_ADDR, "value": contract.master_addr(trial, attempt)},
        {"name": contract.ENV_PET_MASTER_PORT, "value": str(master_port)},
        {"name": contract.ENV_NUM_WORKERS, "value": str(workers)},
    ]


def build_job(pod: Mapping[str, Any], *, workers: int, procs_per_worker: int = 1,
              master_port: int = contract.DEFAULT_MASTER_PORT) -> dict[str, Any]:
    """The Indexed Job of one attempt, its pod template the trial pod `pod` (build_pod's)."""
    meta = pod["metadata"]
    labels = dict(meta["labels"])
    trial = labels[TRIAL_LABEL]
    attempt = int(labels[contract.ATTEMPT_LABEL])
    labels[WORKERS_LABEL] = str(workers)
    spec = copy.deepcopy(dict(pod["spec"]))
    spec["subdomain"] = contract.worker_service_name(trial)
    main = spec["containers"][0]
    main["env"] = [*torchrun_env(trial, attempt, workers, procs_per_worker, master_port),
                   *(main.get("env") or [])]
    template_meta: dict[str, Any] = {"labels": labels}
    if meta.get("annotations"):
        template_meta["annotations"] = dict(meta["annotations"])
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": contract.worker_job_name(trial, attempt),
            "namespace": meta["namespace"],
            "labels": labels,
            "ownerReferences": copy.deepcopy(meta["ownerReferences"]),
        },
        "spec": {
            "completionMode": "Indexed",
            "completions": workers,
            "parallelism": workers,
            "backoffLimit": 0,
            "podReplacementPolicy": "Failed",
            "podFailurePolicy": {"rules": [{
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
            }]},
            "successPolicy": {"rules": [{"succeededIndexes": "0", "succeededCount": 1}]},
            "template": {"metadata": template_meta, "spec": spec},
        },
    }


def build_service(trial: Mapping[str, Any]) -> dict[str, Any]:
    """The trial's headless Service: the subdomain under which `<job>-<rank>` resolves."""
    meta = trial["metadata"]
    experiment = (meta.get("labels") or {}).get(EXPERIMENT_LABEL, "")
    labels = {EXPERIMENT_LABEL: experiment, TRIAL_LABEL: meta["name"]}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": contract.worker_service_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": labels,
            "ownerReferences": [_owner(trial)],
        },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {TRIAL_LABEL: meta["name"]},
        },
    }


def gpus_per_pod(pod_spec: Mapping[str, Any]) -> int:
    """The nvidia.com/gpu one trial pod asks for (requests, else limits, summed over containers)."""
    total = 0
    for container in pod_spec.get("containers") or []:
        resources = container.get("resources") or {}
        value = (resources.get("requests") or {}).get(GPU) or (resources.get("limits") or {}).get(GPU)
        if value is not None:
            total += int(str(value))
    return total


MAX_NAME = 63
"""A Service name and a pod hostname are DNS labels: at most 63 characters."""


def name_problem(trial: str, attempt: int, workers: int) -> str | None:
    """Why a trial's Job pods could not get their DNS names, or None."""
    host = f"{contract.worker_job_name(trial, attempt)}-{workers - 1}"
    if len(host) > MAX_NAME:
        return (f"the hostname {host} of trial {trial}'s last worker is longer than "
                f"{MAX_NAME} characters; use a shorter experiment name")
    if not (trial[:1].isalpha() and trial.replace("-", "").isalnum() and trial.islower()):
        return (f"trial {trial} cannot name its workers' Service (a DNS label: lowercase "
                "letters, digits and '-', starting with a letter); rename the experiment")
    return None
