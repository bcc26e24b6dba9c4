"""A container's environment and volumes as the kubelet builds them, for the local runner.

`env` values with `$(VAR)` expansion, `envFrom` ConfigMaps, and `valueFrom`
references to the pod's own fields, ConfigMap keys and Secret keys. Processes here
share the host's filesystem, so a volume shows where the env says it is mounted: a
value under a container's `mountPath` is pointed at the local directory that plays
the volume, as the mount would show it:

- a claim bound to a hostPath or local volume is that directory (`claim_paths`);
- a `configMap` volume is materialised as the kubelet does it, one file per key
  (`data` as text, `binaryData` as bytes) or only the keys its `items` list at their
  `path`s, with `defaultMode`/`mode`, in a directory of the pod's own laid out as the
  kubelet's (`<root>/<pod uid>/volumes/kubernetes.io~configmap/<volume>`; the runner
  gives each pod a root in its own directory);
  `subPath` mounts one entry of it. A ConfigMap that does not exist, or an `items`
  key it lacks, fails the start unless the volume is `optional` (then it is empty);
  the kubelet would show ContainerCreating with a FailedMount Event, the runner shows
  CreateContainerConfigError and tries again (`config_map_paths`). Unlike the
  kubelet's, the files are written once, at the container's start: a later update of
  the ConfigMap is not seen.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import tempfile
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


def resolve_env(api: client.CoreV1Api, pod: dict[str, Any], container: dict[str, Any],
                volumes_root: Path | None = None) -> dict[str, str]:
    """The container's variables, in the kubelet's order; raises ApiException if a ref fails.

    Its configMap volumes are materialised under `volumes_root` (default: a directory
    in the system's temporary directory), and values under their mount paths point there.
    """
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
    mounts = {**claim_paths(api, pod, container),
              **config_map_paths(api, pod, container, volumes_root or default_volumes_root())}
    return with_claim_paths(env, mounts)


def default_volumes_root() -> Path:
    return Path(tempfile.gettempdir()) / "kubetune-pod-volumes"


def config_map_paths(api: client.CoreV1Api, pod: dict[str, Any], container: dict[str, Any],
                     root: Path) -> dict[str, str]:
    """Each of the container's configMap mounts and the local directory (or file) playing it."""
    volumes = {v.get("name"): v for v in pod["spec"].get("volumes") or []}
    paths: dict[str, str] = {}
    for mount in container.get("volumeMounts") or []:
        source = (volumes.get(mount.get("name")) or {}).get("configMap")
        if source is None:
            continue
        local = (root / pod["metadata"]["uid"] / "volumes" / "kubernetes.io~configmap"
                 / mount["name"])
        write_config_map_volume(api, pod["metadata"]["namespace"], source, local)
        target = local / mount["subPath"] if mount.get("subPath") else local
        paths[mount["mountPath"].rstrip("/")] = str(target)
    return paths


def write_config_map_volume(api: client.CoreV1Api, namespace: str, source: dict[str, Any],
                            directory: Path) -> None:
    """Fill `directory` with the files a configMap volume shows; raises ApiException (404)
    for a missing ConfigMap or key of a volume that is not optional."""
    optional = bool(source.get("optional"))
    try:
        cm = api.read_namespaced_config_map(source["name"], namespace)
        files: dict[str, bytes] = {k: v.encode() for k, v in (cm.data or {}).items()}
        files.update({k: base64.b64decode(v) for k, v in (cm.binary_data or {}).items()})
    except ApiException as e:
        if e.status != 404 or not optional:
            raise
        files = {}
    default_mode = int(source.get("defaultMode", 0o644))
    chosen: list[tuple[str, bytes, int]] = []
    if source.get("items"):
        for item in source["items"]:
            if item["key"] not in files:
                if optional:
                    continue
                raise ApiException(status=404, reason=f'configmap "{source["name"]}" has no '
                                                      f'key "{item["key"]}"')
            chosen.append((item["path"], files[item["key"]], int(item.get("mode", default_mode))))
    else:
        chosen = [(key, data, default_mode) for key, data in files.items()]
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=_made(directory.parent)))
    for relative, data, mode in chosen:
        path = staging / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.chmod(path, mode)
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(staging, directory)


def _made(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory


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
