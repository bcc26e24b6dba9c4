"""Pure builders of the objects the operator creates: TuneTrials and trial Pods.

Names are deterministic (`<experiment>-<index>` for a trial, `<trial>-<attempt>`
for its pods), so a restarted operator re-derives them and a repeated create
is a harmless 409.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from kubetune import contract
from kubetune.api import GROUP, VERSION
from kubetune.api.workers import lookup
from kubetune.contract import ATTEMPT_LABEL, EXPERIMENT_LABEL, TRIAL_LABEL
from kubetune.search import flatten_params

_PARAM_REF = re.compile(r"\$\{params\.([A-Za-z0-9_.\-]+)\}")


def trial_name(experiment: str, index: int) -> str:
    """The TuneTrial of an experiment's trial `index`: <experiment>-<index>."""
    return f"{experiment}-{index}"


def pod_name(trial: str, attempt: int) -> str:
    """The Pod of a trial's attempt (1 for the first, one more per retry): <trial>-<attempt>."""
    return f"{trial}-{attempt}"


def owner_reference(kind: str, api_version: str, meta: Mapping[str, Any]) -> dict[str, Any]:
    """A controller owner reference, so deleting the owner deletes what it owns."""
    return {"apiVersion": api_version, "kind": kind, "name": meta["name"], "uid": meta["uid"],
            "controller": True, "blockOwnerDeletion": True}


def build_trial(experiment: Mapping[str, Any], index: int, params: Mapping[str, Any],
                sampler_state: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The TuneTrial of trial `index` with its config, owned and labelled by its experiment."""
    meta = experiment["metadata"]
    name = trial_name(meta["name"], index)
    spec: dict[str, Any] = {"experiment": meta["name"], "index": index, "params": dict(params)}
    if sampler_state:
        spec["samplerState"] = dict(sampler_state)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TuneTrial",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": {EXPERIMENT_LABEL: meta["name"], TRIAL_LABEL: name},
            "ownerReferences": [owner_reference("TuneExperiment", f"{GROUP}/{VERSION}", meta)],
        },
        "spec": spec,
    }


def substitute_params(text: str, params: Mapping[str, Any]) -> str:
    """Replace `${params.NAME}` (dotted for nested parameters) with the trial's value."""

    def sub(m: re.Match[str]) -> str:
        value = lookup(params, m.group(1))
        return value if isinstance(value, str) else json.dumps(value)

    return _PARAM_REF.sub(sub, text)


def unknown_param_references(template: Mapping[str, Any], params: Mapping[str, Any]) -> list[str]:
    """`${params.NAME}` references in the containers' command/args that name no parameter."""
    unknown = []
    for container in (template.get("spec") or {}).get("containers") or []:
        for arg in [*(container.get("command") or []), *(container.get("args") or [])]:
            for ref in _PARAM_REF.findall(str(arg)):
                try:
                    lookup(params, ref)
                except KeyError:
                    unknown.append(ref)
    return unknown


def _mount_storage(spec: dict[str, Any], main: dict[str, Any], claim: str) -> str:
    """Add spec.storage's claim as a volume mounted in the main container; its mount path."""
    spec["volumes"] = [*(spec.get("volumes") or []),
                       {"name": contract.STORAGE_VOLUME, "persistentVolumeClaim": {"claimName": claim}}]
    main["volumeMounts"] = [*(main.get("volumeMounts") or []),
                            {"name": contract.STORAGE_VOLUME, "mountPath": contract.STORAGE_MOUNT_PATH}]
    return contract.STORAGE_MOUNT_PATH


def build_pod(
    *,
    template: Mapping[str, Any],
    trial: Mapping[str, Any],
    attempt: int,
    params: Mapping[str, Any],
    objective_metric: str,
    milestones: Sequence[int],
    metrics_port: int,
    storage_claim: str | None = None,
    start_checkpoint: str = "",
    checkpoint_segment: int = 0,
    keep_checkpoint_steps: Sequence[int] = (),
) -> dict[str, Any]:
    """A trial Pod from the experiment's PodTemplateSpec; GPU requests pass through untouched.

    With `storage_claim` (spec.storage) the claim is mounted in the main container at
    contract.STORAGE_MOUNT_PATH and the trial's checkpoint directory is under it. PBT:
    after its n-th exploit a trial checkpoints in `exploit-<n>` of its directory
    (`checkpoint_segment`), starting from `start_checkpoint` (a donor's, relative to the
    experiment's directory), and keeps the checkpoints at `keep_checkpoint_steps`.
    """
    meta = trial["metadata"]
    experiment = meta["labels"][EXPERIMENT_LABEL]
    tmpl_meta = copy.deepcopy(dict(template.get("metadata") or {}))
    spec = copy.deepcopy(dict(template["spec"]))
    labels = {**(tmpl_meta.get("labels") or {}),
              EXPERIMENT_LABEL: experiment, TRIAL_LABEL: meta["name"], ATTEMPT_LABEL: str(attempt)}
    spec["restartPolicy"] = "Never"
    spec.setdefault("automountServiceAccountToken", False)
    containers = spec["containers"]
    main = containers[0]
    user_env = list(main.get("env") or [])
    user_names = {e.get("name") for e in user_env}
    checkpoint_root = next((e.get("value") for e in user_env
                            if e.get("name") == contract.ENV_CHECKPOINT_ROOT), contract.DEFAULT_CHECKPOINT_ROOT)
    if storage_claim:
        checkpoint_root = _mount_storage(spec, main, storage_claim)
    # The experiment's uid keeps a rerun under the same name from resuming old checkpoints.
    owner_uid = next((o.get("uid", "") for o in meta.get("ownerReferences") or []), "")
    run = f"{experiment}-{owner_uid[:8]}" if owner_uid else experiment
    ours = {
        contract.ENV_CONFIG: json.dumps(dict(params), sort_keys=True),
        contract.ENV_EXPERIMENT: experiment,
        contract.ENV_TRIAL: meta["name"],
        contract.ENV_ATTEMPT: str(attempt),
        contract.ENV_METRIC: objective_metric,
        contract.ENV_MILESTONES: ",".join(str(m) for m in milestones),
        contract.ENV_METRICS_PORT: str(metrics_port),
        contract.ENV_CHECKPOINT_DIR: f"{checkpoint_root}/{meta['namespace']}/{run}/{meta['name']}"
        + (f"/exploit-{checkpoint_segment}" if checkpoint_segment else ""),
    }
    if start_checkpoint:
        ours[contract.ENV_START_CHECKPOINT] = f"{checkpoint_root}/{meta['namespace']}/{run}/{start_checkpoint}"
    if keep_checkpoint_steps:
        ours[contract.ENV_KEEP_CHECKPOINT_STEPS] = ",".join(str(s) for s in keep_checkpoint_steps)
    ours.update({f"{contract.ENV_PARAM_PREFIX}{k}": v for k, v in flatten_params(dict(params)).items()})
    main["env"] = [{"name": k, "value": v} for k, v in ours.items() if k not in user_names] + user_env
    for key in ("command", "args"):
        if main.get(key):
            main[key] = [substitute_params(str(a), params) for a in main[key]]
    for container in containers:
        resources = container.get("resources") or {}
        for kind in ("limits", "requests"):
            if isinstance(resources.get(kind), dict):
                # Quantities are strings in the Pod API; `nvidia.com/gpu: 1` from YAML is an int.
                resources[kind] = {k: str(v) for k, v in resources[kind].items()}
    ports = list(main.get("ports") or [])
    if not any(p.get("name") == "metrics" or p.get("containerPort") == metrics_port for p in ports):
        ports.append({"name": "metrics", "containerPort": metrics_port, "protocol": "TCP"})
    main["ports"] = ports
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            **{k: v for k, v in tmpl_meta.items() if k in ("annotations",)},
            "name": pod_name(meta["name"], attempt),
            "namespace": meta["namespace"],
            "labels": labels,
            "ownerReferences": [owner_reference("TuneTrial", f"{GROUP}/{VERSION}", meta)],
        },
        "spec": spec,
    }
