"""What a trial process on the dev cluster is given, and nothing more.

A kubelet starts a container with the pod's environment and the image's, never
with its own; the local runner runs pods as processes next to the cluster's
control plane, so it must take care not to hand them what it has itself: the
caller's environment (KUBECONFIG, cloud credentials, tokens) and the cluster's
state directory, which holds the admin kubeconfig and the PKI.

- environment: the pod's variables (`podenv`) plus what the runner must add in
  place of an image: PATH (this Python's directory first), HOME in the pod's own
  directory, HOSTNAME, and the runner's PYTHONPATH, LANG, LC_ALL and TZ, so that
  `python` runs kubetune and the reference trainer as the image would;
- working directory: each pod gets a directory under the pods root, which lies
  outside the state directory (`pods_root`); a container's `workingDir` is used
  only when it exists on this host and neither lies inside the state directory
  nor contains it.

Part of the dev cluster (the runner's process).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

PASSED_THROUGH = ("PYTHONPATH", "LANG", "LC_ALL", "TZ")
"""The runner's own variables an image would also have set; nothing else of its own."""


def pods_root(state_dir: Path) -> Path:
    """Where the pods' directories live: next to the state directory, never inside it, so
    no path relative to a pod's directory reaches the kubeconfigs or the PKI."""
    state_dir = Path(state_dir).resolve()
    return state_dir.parent / f"{state_dir.name}-pods"


def process_env(pod_env: Mapping[str, str], home: Path,
                runner_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The whole environment of a container's process: the pod's variables over the few the
    runner adds in place of an image's."""
    runner_env = os.environ if runner_env is None else runner_env
    python_dir = str(Path(sys.executable).parent)
    path = [python_dir, *(p for p in runner_env.get("PATH", os.defpath).split(os.pathsep)
                          if p and p != python_dir)]
    env = {"PATH": os.pathsep.join(path), "HOME": str(home)}
    env.update({k: runner_env[k] for k in PASSED_THROUGH if k in runner_env})
    env.update(pod_env)
    return env


def inside(path: Path, directory: Path) -> bool:
    """True when `path` is `directory` or below it, links resolved."""
    try:
        Path(path).resolve().relative_to(Path(directory).resolve())
    except ValueError:
        return False
    return True


def working_dir(requested: str | None, default: Path, state_dir: Path | None) -> Path:
    """The container's working directory: its `workingDir` if that exists here and neither
    lies inside the state directory nor contains it, else the pod's own directory."""
    if not requested or not Path(requested).is_dir():
        return default
    if state_dir is not None and (inside(Path(requested), state_dir)
                                  or inside(state_dir, Path(requested))):
        return default
    return Path(requested)
