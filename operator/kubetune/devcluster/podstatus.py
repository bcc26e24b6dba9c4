"""The pod statuses the local runner writes, shaped as a kubelet writes them.

Pure builders: Pending with a waiting reason while a container cannot start,
Running while any container runs, then Succeeded or Failed with each container's
exit code, reason and termination message.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kubetune import contract


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def running_status(container: dict[str, Any], pid: int, started: str) -> dict[str, Any]:
    """Phase Running, every condition True, the container running as local process `pid`."""
    return containers_status([container_entry(container["name"], container.get("image", ""),
                                              pid, {"running": {"startedAt": started}})],
                             started)


def container_entry(name: str, image: str, pid: int | None,
                    state: dict[str, Any]) -> dict[str, Any]:
    """One containerStatuses entry in `state` (running, terminated or waiting)."""
    running = "running" in state
    return {"name": name, "image": image, "imageID": "",
            "containerID": f"local://{pid}" if pid is not None else "",
            "ready": running, "started": running, "restartCount": 0, "state": state}


def containers_status(entries: list[dict[str, Any]], started: str) -> dict[str, Any]:
    """The pod's status from its containers' entries, as the kubelet derives it.

    Running while any container runs (a sidecar keeps the pod Running after the main
    container exits); then Succeeded if every container exited 0, else Failed.
    Container statuses are listed by name, as the kubelet lists them.
    """
    entries = sorted(entries, key=lambda e: e["name"])
    states = [e["state"] for e in entries]
    if any("running" in st for st in states):
        phase = "Running"
    elif all("terminated" in st for st in states):
        ok = all(st["terminated"]["exitCode"] == 0 for st in states)
        phase = "Succeeded" if ok else "Failed"
    else:
        phase = "Pending"
    all_ready = phase == "Running" and all(e["ready"] for e in entries)
    moment = now()
    cond = [{"type": "Initialized", "status": "True", "lastTransitionTime": started},
            {"type": "PodReadyToStartContainers", "status": "True",
             "lastTransitionTime": started}]
    for t in ("ContainersReady", "Ready"):
        if all_ready:
            cond.append({"type": t, "status": "True", "lastTransitionTime": started})
        else:
            reason = "PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady"
            cond.append({"type": t, "status": "False", "reason": reason,
                         "lastTransitionTime": moment})
    status: dict[str, Any] = {"phase": phase, "startTime": started, "conditions": cond,
                              "containerStatuses": entries}
    if phase in ("Running", "Pending"):
        status.update({"hostIP": "127.0.0.1", "podIP": "127.0.0.1",
                       "podIPs": [{"ip": "127.0.0.1"}]})
    return status


def waiting_status(pod: dict[str, Any], failing: str, reason: str, message: str,
                   started: str) -> dict[str, Any]:
    """Phase Pending: container `failing` waits with `reason` (ErrImagePull, ...), the others
    wait to be created, as the kubelet reports a pod that cannot start."""
    entries = []
    for c in pod["spec"]["containers"]:
        if c["name"] == failing:
            state = {"waiting": {"reason": reason, "message": message}}
        else:
            state = {"waiting": {"reason": "ContainerCreating"}}
        entries.append(container_entry(c["name"], c.get("image", ""), None, state))
    return containers_status(entries, started)


def terminated_status(pid: int | None, code: int, message: str, reason: str,
                      container: str, started: str) -> dict[str, Any]:
    """Succeeded (exit 0) or Failed, with the container's terminated state."""
    return containers_status([container_entry(container, "", pid, {"terminated": {
        "exitCode": code, "reason": reason, "message": message,
        "startedAt": started, "finishedAt": now()}})], started)


def target_labels(pod: dict[str, Any]) -> dict[str, str]:
    """Prometheus target labels from the pod's metadata, never from the trial nor from its
    other labels, as the chart's relabelling sets them: `namespace` and `pod` from the pod,
    `experiment`, `trial` and `attempt` from the kubetune labels only. So a pod label named
    `namespace` (or `experiment`) cannot move its series into another experiment."""
    meta = pod["metadata"]
    own = meta.get("labels") or {}
    labels = {short: own[key] for short, key in (
        ("experiment", contract.EXPERIMENT_LABEL), ("trial", contract.TRIAL_LABEL),
        ("attempt", contract.ATTEMPT_LABEL)) if key in own}
    labels.update({"namespace": meta["namespace"], "pod": meta["name"]})
    return labels
