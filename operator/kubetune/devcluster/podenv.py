"""A container's environment as the kubelet builds it, for the local runner.

`env` values with `$(VAR)` expansion, `envFrom` ConfigMaps, and `valueFrom`
references to the pod's own fields, ConfigMap keys and Secret keys. A value
under the mount path of a claim bound to a hostPath or local volume is pointed
at that directory, as the mount would show it (`claim_paths`).
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: defined names are replaced, `$$` escapes."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env.get(name, m.group(0))

    return _VAR.sub(sub, text)


def field_value(pod: dict[str, Any], path: str) -> str:
    """The downward API: a `fieldRef` path of the pod (this host's IPs are 127.0.0.1)."""
    meta = pod["metadata"]
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    return str({
        "metadata.name": meta["name"], "metadata.namespace": meta["namespace"],
        "metadata.uid": meta["uid"], "spec.nodeName": pod["spec"].get("nodeName", ""),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
        "status.podIP": "127.0.0.1", "status.hostIP": "127.0.0.1",
    }.get(path, ""))


def resolve_env(api: client.CoreV1Api, pod: dict[str, Any],
                container: dict[str, Any]) -> dict[str, str]:
    """The container's variables, in the kubelet's order; raises ApiException if a ref fails."""
    meta = pod["metadata"]
    env: dict[str, str] = {}
    for src in container.get("envFrom") or []:
        if "configMapRef" in src:
            cm = api.read_namespaced_config_map(src["configMapRef"]["name"], meta["namespace"])
            for k, v in (cm.data or {}).items():
                env[src.get("prefix", "") + k] = v
    for item in container.get("env") or []:
        name = item["name"]
        if "value" in item:
            env[name] = expand(item.get("value") or "", env)
            continue
        ref = item.get("valueFrom") or {}
        if "fieldRef" in ref:
            env[name] = field_value(pod, ref["fieldRef"]["fieldPath"])
        elif "configMapKeyRef" in ref:
            r = ref["configMapKeyRef"]
            cm = api.read_namespaced_config_map(r["name"], meta["namespace"])
            env[name] = (cm.data or {}).get(r["key"], "")
        elif "secretKeyRef" in ref:
            r = ref["secretKeyRef"]
            sec = api.read_namespaced_secret(r["name"], meta["namespace"])
            env[name] = base64.b64decode((sec.data or {}).get(r["key"], "")).decode()
    return with_claim_paths(env, claim_paths(api, pod, container))


def claim_paths(api: client.CoreV1Api, pod: dict[str, Any],
                container: dict[str, Any]) -> dict[str, str]:
    """Each of the container's claim mounts and the local directory of its bound volume.

    Processes here share the host's filesystem, so a PersistentVolumeClaim bound to a
    hostPath or local PersistentVolume is that directory (created if missing, as a
    hostPath DirectoryOrCreate is); claims on other volume types are left out.
    """
    volumes = {v.get("name"): v for v in pod["spec"].get("volumes") or []}
    paths: dict[str, str] = {}
    for mount in container.get("volumeMounts") or []:
        claim = (volumes.get(mount.get("name")) or {}).get("persistentVolumeClaim")
        if not claim:
            continue
        pvc = api.read_namespaced_persistent_volume_claim(
            claim["claimName"], pod["metadata"]["namespace"])
        volume_name = pvc.spec.volume_name if pvc.spec else None
        if not volume_name:
            continue
        pv_spec = api.read_persistent_volume(volume_name).spec
        source = (pv_spec.host_path or pv_spec.local) if pv_spec else None
        if source is None:
            continue
        local = Path(source.path) / mount.get("subPath", "")
        local.mkdir(parents=True, exist_ok=True)
        paths[mount["mountPath"].rstrip("/")] = str(local)
    return paths


def with_claim_paths(env: dict[str, str], paths: dict[str, str]) -> dict[str, str]:
    """`env` with values under a claim's mount path pointed at its local directory."""
    mapped = dict(env)
    for name, value in env.items():
        for mount, local in paths.items():
            if value == mount or value.startswith(mount + "/"):
                mapped[name] = local + value[len(mount):]
    return mapped


def missing_ref_message(e: ApiException) -> str:
    """The kubelet's words for an env reference to a ConfigMap or Secret that is not there."""
    try:
        details = json.loads(e.body or "").get("details") or {}
        return f'{details.get("kind", "object").rstrip("s")} "{details.get("name", "?")}" not found'
    except (TypeError, ValueError, AttributeError):
        return str(e.reason)
