"""The pod statuses the local runner writes, shaped as a kubelet writes them.

Pure builders: Running once the process started, then Succeeded or Failed with
the container's exit code, reason and termination message.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from kubetune import contract

_LABEL = re.compile(r"[^a-zA-Z0-9_]")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def running_status(container: dict[str, Any], pid: int, started: str) -> dict[str, Any]:
    """Phase Running, every condition True, the container running as local process `pid`."""
    cond = [{"type": t, "status": "True", "lastTransitionTime": started}
            for t in ("Initialized", "PodReadyToStartContainers", "ContainersReady", "Ready")]
    return {
        "phase": "Running", "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
        "podIPs": [{"ip": "127.0.0.1"}], "startTime": started, "conditions": cond,
        "containerStatuses": [{
            "name": container["name"], "image": container.get("image", ""), "imageID": "",
            "containerID": f"local://{pid}", "ready": True, "started": True,
            "restartCount": 0, "state": {"running": {"startedAt": started}},
        }],
    }


def terminated_status(pid: int | None, code: int, message: str, reason: str,
                      container: str, started: str) -> dict[str, Any]:
    """Succeeded (exit 0) or Failed, with the container's terminated state."""
    finished = now()
    cond = [{"type": t, "status": "False", "reason": "PodCompleted",
             "lastTransitionTime": finished} for t in ("ContainersReady", "Ready")]
    return {
        "phase": "Succeeded" if code == 0 else "Failed",
        "conditions": cond,
        "containerStatuses": [{
            "name": container, "image": "", "imageID": "",
            "containerID": f"local://{pid}" if pid is not None else "",
            "ready": False, "started": False, "restartCount": 0,
            "state": {"terminated": {"exitCode": code, "reason": reason, "message": message,
                                     "startedAt": started, "finishedAt": finished}},
        }],
    }


def target_labels(pod: dict[str, Any]) -> dict[str, str]:
    """Prometheus target labels from the pod, never from the trial: its namespace, name and
    labels, with the experiment and trial labels also under their short names."""
    meta = pod["metadata"]
    labels = {"namespace": meta["namespace"], "pod": meta["name"]}
    for key, value in (meta.get("labels") or {}).items():
        labels[_LABEL.sub("_", key)] = value
    own = meta.get("labels") or {}
    for short, key in (("experiment", contract.EXPERIMENT_LABEL), ("trial", contract.TRIAL_LABEL)):
        if key in own:
            labels[short] = own[key]
    return labels
