"""The dev cluster's runner mounts configMap volumes as a kubelet does, from the real apiserver."""

from __future__ import annotations

import base64
import stat
import uuid
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetune.devcluster.podenv import missing_ref_message, resolve_env


def pod(namespace: str, volumes: list[dict], mounts: list[dict], env: list[dict]) -> dict:
    return {"metadata": {"name": "p", "namespace": namespace, "uid": uuid.uuid4().hex},
            "spec": {"volumes": volumes,
                     "containers": [{"name": "c", "volumeMounts": mounts, "env": env}]}}


def test_config_map_volumes_show_their_keys_as_files_where_the_env_points(
        api_client, namespace: str, tmp_path: Path) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(namespace, {
        "metadata": {"name": "fn"},
        "data": {"function.json": "{}", "function.py": "print(1)\n"},
        "binaryData": {"function.pkl": base64.b64encode(b"\x80\x04K\x01.").decode()}})
    body = pod(namespace, [
        {"name": "all", "configMap": {"name": "fn"}},
        {"name": "some", "configMap": {"name": "fn", "defaultMode": 0o600, "items": [
            {"key": "function.py", "path": "code/main.py", "mode": 0o500}]}},
        {"name": "none", "configMap": {"name": "absent", "optional": True}},
    ], [
        {"name": "all", "mountPath": "/var/run/kubetune/function"},
        {"name": "some", "mountPath": "/opt/code"},
        {"name": "all", "mountPath": "/etc/one.py", "subPath": "function.py"},
        {"name": "none", "mountPath": "/opt/none"},
    ], [
        {"name": "FN_DIR", "value": "/var/run/kubetune/function"},
        {"name": "MAIN", "value": "/opt/code/code/main.py"},
        {"name": "ONE", "value": "/etc/one.py"},
        {"name": "NONE", "value": "/opt/none"},
        {"name": "ELSEWHERE", "value": "/var/run/other"},
    ])
    env = resolve_env(core, body, body["spec"]["containers"][0], tmp_path)
    fn_dir = Path(env["FN_DIR"])
    assert fn_dir == (tmp_path / body["metadata"]["uid"] / "volumes" / "kubernetes.io~configmap"
                      / "all")
    assert sorted(p.name for p in fn_dir.iterdir()) == ["function.json", "function.pkl",
                                                        "function.py"]
    assert (fn_dir / "function.pkl").read_bytes() == b"\x80\x04K\x01."
    assert (fn_dir / "function.py").read_text() == "print(1)\n"
    main = Path(env["MAIN"])
    assert main.read_text() == "print(1)\n" and stat.S_IMODE(main.stat().st_mode) == 0o500
    assert sorted(p.name for p in main.parent.parent.iterdir()) == ["code"]  # only its items
    assert Path(env["ONE"]).read_text() == "print(1)\n"
    assert Path(env["NONE"]).is_dir() and not list(Path(env["NONE"]).iterdir())
    assert env["ELSEWHERE"] == "/var/run/other"


def test_a_missing_config_map_or_key_stops_the_start_with_the_kubelets_words(
        api_client, namespace: str, tmp_path: Path) -> None:
    core = client.CoreV1Api(api_client)
    missing = pod(namespace, [{"name": "v", "configMap": {"name": "nowhere"}}],
                  [{"name": "v", "mountPath": "/m"}], [])
    with pytest.raises(ApiException) as caught:
        resolve_env(core, missing, missing["spec"]["containers"][0], tmp_path)
    assert caught.value.status == 404
    assert missing_ref_message(caught.value) == 'configmap "nowhere" not found'

    core.create_namespaced_config_map(namespace, {"metadata": {"name": "cm"}, "data": {"a": "1"}})
    no_key = pod(namespace, [{"name": "v", "configMap": {"name": "cm", "items": [
        {"key": "b", "path": "b"}]}}], [{"name": "v", "mountPath": "/m"}], [])
    with pytest.raises(ApiException, match='configmap "cm" has no key "b"'):
        resolve_env(core, no_key, no_key["spec"]["containers"][0], tmp_path)
