"""A trial's checkpoints as the user's side finds them: `Result.checkpoint`.

Imported on the user's side. The operator points each trial's
KUBETUNE_CHECKPOINT_DIR at `<root>/<namespace>/<experiment>-<uid[:8]>/<trial>`
(controller/manifests.py), where root is spec.storage's claim mounted at
contract.STORAGE_MOUNT_PATH, else the template's KUBETUNE_CHECKPOINT_ROOT (or
contract.DEFAULT_CHECKPOINT_ROOT) in the pod's own filesystem. From here that
directory is readable when the claim is bound to a hostPath or local volume of
this machine (the dev cluster's claims), or, on a dev cluster whose trials run
as local processes, at the pod-side path itself. Elsewhere the checkpoint is on
the cluster only and `Result.checkpoint` is None; `Result.path` says where it is.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetune import contract
from kubetune.client.errors import TuneError

_STEP = re.compile(r"step-(\d+)")
_SEGMENT = re.compile(r"exploit-(\d+)")


@dataclass(frozen=True)
class Checkpoint:
    """A trial's checkpoint directory, as Ray's `ray.tune.Checkpoint` on local storage."""

    path: str
    """The checkpoint's directory on this machine."""
    step: int | None = None
    """The step the trial saved it at (its `step-<n>` directory), None when not known."""

    @classmethod
    def from_directory(cls, path: str | Path) -> Checkpoint:
        """A checkpoint of the files in `path`, as Ray's Checkpoint.from_directory."""
        match = _STEP.fullmatch(Path(path).name)
        return cls(str(Path(path)), int(match.group(1)) if match else None)

    def to_directory(self, path: str | Path | None = None) -> str:
        """Copy the checkpoint's files into `path` (a new temporary directory by default)."""
        source = Path(self.path)
        if not source.is_dir():
            raise TuneError(f"checkpoint {self.path} is not a directory on this machine")
        target = Path(path) if path is not None else Path(tempfile.mkdtemp(prefix="checkpoint-"))
        shutil.copytree(source, target, dirs_exist_ok=True)
        return str(target)

    @contextlib.contextmanager
    def as_directory(self) -> Iterator[str]:
        """The checkpoint's files in place (read them, do not change them), as Ray's."""
        if not Path(self.path).is_dir():
            raise TuneError(f"checkpoint {self.path} is not a directory on this machine")
        yield self.path

    def __repr__(self) -> str:
        return f"Checkpoint(path={self.path!r}, step={self.step})"


def run_directory(experiment: Mapping[str, Any]) -> str:
    """`<namespace>/<experiment>-<uid[:8]>`: the experiment's checkpoints under the root."""
    meta = experiment["metadata"]
    uid = str(meta.get("uid") or "")
    run = f"{meta['name']}-{uid[:8]}" if uid else meta["name"]
    return f"{meta.get('namespace', '')}/{run}"


def storage_uri(experiment: Mapping[str, Any]) -> str | None:
    """pvc://<claim>/<namespace>/<run>: where spec.storage keeps the experiment's
    checkpoints, None without spec.storage."""
    claim = ((experiment["spec"].get("storage") or {}).get("persistentVolumeClaim") or {})
    if not claim.get("claimName"):
        return None
    return f"pvc://{claim['claimName']}/{run_directory(experiment)}"


def pod_checkpoint_root(experiment: Mapping[str, Any]) -> str:
    """The checkpoint root in a pod without spec.storage (the template's, else the default)."""
    spec = (experiment["spec"].get("trialTemplate") or {}).get("spec") or {}
    main = (spec.get("containers") or [{}])[0]
    for env in main.get("env") or []:
        if env.get("name") == contract.ENV_CHECKPOINT_ROOT and env.get("value"):
            return str(env["value"])
    return contract.DEFAULT_CHECKPOINT_ROOT


def claim_directory(api: Any, namespace: str, claim: str) -> Path | None:
    """The directory on this machine that holds a claim's files, when it is bound to a
    hostPath or local PersistentVolume that exists here; None otherwise."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api)
    try:
        pvc = core.read_namespaced_persistent_volume_claim(claim, namespace)
        volume = pvc.spec.volume_name if pvc.spec else None
        if not volume:
            return None
        pv = core.read_persistent_volume(volume).spec
    except ApiException:
        return None  # not allowed to read PersistentVolumes, or gone: not reachable
    source = (pv.host_path or pv.local) if pv else None
    if source is None or not Path(source.path).is_dir():
        return None
    return Path(source.path)


def latest_checkpoint(trial_dir: Path) -> Checkpoint | None:
    """The trial's newest complete `step-<n>` checkpoint; after PBT exploits, in the last
    `exploit-<k>` segment that has one."""
    if not trial_dir.is_dir():
        return None
    exploits = sorted((int(m.group(1)), d) for d in trial_dir.iterdir()
                      if d.is_dir() and (m := _SEGMENT.fullmatch(d.name)))
    for _, directory in reversed([(0, trial_dir), *exploits]):
        steps = [(int(m.group(1)), d) for d in directory.iterdir()
                 if d.is_dir() and (m := _STEP.fullmatch(d.name))]
        if steps:
            step, path = max(steps)
            return Checkpoint(str(path), step)
    return None


__all__ = ["Checkpoint", "claim_directory", "latest_checkpoint", "pod_checkpoint_root",
           "run_directory", "storage_uri"]
