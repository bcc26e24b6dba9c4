"""Shared checkpoint storage on the local control plane: a claim bound to a directory.

The local runner maps a claim bound to a hostPath volume to that directory (see
kubetune.devcluster.podenv), so a test or benchmark can read what trials saved.
"""

from __future__ import annotations

import time
from pathlib import Path

from kubernetes import client


def hostpath_claim(core: client.CoreV1Api, namespace: str, directory: Path, *,
                   name: str = "ckpt", timeout: float = 60) -> str:
    """Create a ReadWriteMany claim `name` bound to a hostPath volume on `directory`.

    The volume is named after the namespace and kept on release (the test owns the
    directory). Returns the claim's name once it is Bound.
    """
    pv_name = f"{name}-{namespace}"
    core.create_persistent_volume(client.V1PersistentVolume(
        metadata=client.V1ObjectMeta(name=pv_name),
        spec=client.V1PersistentVolumeSpec(
            capacity={"storage": "1Gi"}, access_modes=["ReadWriteMany"], storage_class_name="",
            host_path=client.V1HostPathVolumeSource(path=str(directory)),
            persistent_volume_reclaim_policy="Retain")))
    core.create_namespaced_persistent_volume_claim(namespace, client.V1PersistentVolumeClaim(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PersistentVolumeClaimSpec(
            access_modes=["ReadWriteMany"], storage_class_name="", volume_name=pv_name,
            resources=client.V1VolumeResourceRequirements(requests={"storage": "1Gi"}))))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = core.read_namespaced_persistent_volume_claim(name, namespace).status
        if status is not None and status.phase == "Bound":
            return name
        time.sleep(0.5)
    raise TimeoutError(f"claim {namespace}/{name} not Bound after {timeout:g}s")
