"""kind-config.yaml is a kind v1alpha4 Cluster that kind will accept.

No kind schema is published for Python, so the fields and types below are those
of kind's own config types (sigs.k8s.io/kind pkg/apis/config/v1alpha4/types.go);
kind rejects unknown fields, and so does this check.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]

STRING, INT, BOOL = str, int, bool
PATCH_6902 = {"group": STRING, "version": STRING, "kind": STRING, "patch": STRING}
NODE: dict[str, Any] = {
    "role": STRING, "image": STRING, "labels": {STRING: STRING}, "gpus": STRING,
    "extraMounts": [{"containerPath": STRING, "hostPath": STRING, "readOnly": BOOL,
                     "selinuxRelabel": BOOL, "propagation": STRING}],
    "extraPortMappings": [{"containerPort": INT, "hostPort": INT, "listenAddress": STRING,
                           "protocol": STRING}],
    "kubeadmConfigPatches": [STRING], "kubeadmConfigPatchesJSON6902": [PATCH_6902],
}
CLUSTER: dict[str, Any] = {
    "kind": STRING, "apiVersion": STRING, "name": STRING, "nodes": [NODE],
    "networking": {"ipFamily": STRING, "apiServerPort": INT, "apiServerAddress": STRING,
                   "podSubnet": STRING, "serviceSubnet": STRING, "disableDefaultCNI": BOOL,
                   "kubeProxyMode": STRING, "dnsSearch": [STRING]},
    "featureGates": {STRING: BOOL}, "runtimeConfig": {STRING: STRING},
    "kubeadmConfigPatches": [STRING], "kubeadmConfigPatchesJSON6902": [PATCH_6902],
    "containerdConfigPatches": [STRING], "containerdConfigPatchesJSON6902": [STRING],
}


# Kubernetes label syntax: kubectl would reject the node labels kind applies otherwise.
LABEL_KEY = re.compile(r"([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")


def problems(value: Any, shape: Any, path: str = "") -> list[str]:
    """Where `value` does not fit `shape` (a type, [shape], {field: shape} or {type: shape})."""
    if isinstance(shape, type):
        ok = isinstance(value, shape) and not (shape is INT and isinstance(value, bool))
        return [] if ok else [f"{path or '.'}: expected {shape.__name__}, got {value!r}"]
    if isinstance(shape, list):
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        return [p for i, item in enumerate(value) for p in problems(item, shape[0], f"{path}[{i}]")]
    if not isinstance(value, dict):
        return [f"{path}: expected a mapping"]
    if len(shape) == 1 and isinstance(next(iter(shape)), type):  # a map of key type -> value shape
        key_type, value_shape = next(iter(shape.items()))
        return [p for k, v in value.items()
                for p in problems(k, key_type, f"{path}.{k}") + problems(v, value_shape, f"{path}.{k}")]
    unknown = [f"{path}.{k}: unknown field" for k in value if k not in shape]
    return unknown + [p for k, v in value.items() if k in shape for p in problems(v, shape[k], f"{path}.{k}")]


def load() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "kind-config.yaml").read_text()))


def test_kind_config_is_a_v1alpha4_cluster_with_only_known_fields() -> None:
    config = load()
    assert config["kind"] == "Cluster"
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert problems(config, CLUSTER) == []


def test_kind_config_has_one_control_plane_and_one_worker_labelled_for_fake_gpus() -> None:
    nodes = load()["nodes"]
    assert [n.get("role", "control-plane") for n in nodes] == ["control-plane", "worker"]
    assert nodes[1]["labels"] == {"kubetune.io/fake-gpu": "true"}
    # hack/kind-up.sh patches exactly the nodes carrying that label.
    assert "-l kubetune.io/fake-gpu=true" in (ROOT / "hack" / "kind-up.sh").read_text()


def test_kind_config_values_are_ones_kind_accepts() -> None:
    config = load()
    assert config["name"].replace("-", "").isalnum() and config["name"].islower()
    for node in config["nodes"]:
        assert node.get("role", "control-plane") in ("control-plane", "worker")
        for key, value in (node.get("labels") or {}).items():
            assert LABEL_KEY.fullmatch(key), key
            assert LABEL_VALUE.fullmatch(value), value
    networking = config.get("networking") or {}
    assert networking.get("ipFamily", "ipv4") in ("ipv4", "ipv6", "dual")
    assert networking.get("kubeProxyMode", "iptables") in ("iptables", "ipvs", "nftables", "none")
    for subnet in ("podSubnet", "serviceSubnet"):
        if subnet in networking:
            ipaddress.ip_network(networking[subnet])


def test_the_validator_rejects_what_kind_rejects() -> None:
    assert problems({"kind": "Cluster", "nodes": [{"role": "worker", "gpu": "all"}]}, CLUSTER) == [
        ".nodes[0].gpu: unknown field"]
    assert problems({"networking": {"apiServerPort": "6443"}}, CLUSTER)
    assert problems({"featureGates": {"Foo": "yes"}}, CLUSTER)
