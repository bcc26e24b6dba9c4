"""spec.storage: the claim every trial pod mounts, where checkpoints then go, what is refused."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubetune import contract
from kubetune.api import SpecError
from kubetune.api.experiment import validate_experiment_spec
from kubetune.controller.manifests import build_pod, build_trial

EXP = {"metadata": {"name": "mnist", "namespace": "ml", "uid": "e-uid-123456"}}
TEMPLATE: dict[str, Any] = {"spec": {
    "containers": [
        {"name": "train", "image": "trainer:1",
         "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
        {"name": "sidecar", "image": "proxy:1"},
    ],
    "volumes": [{"name": "data", "emptyDir": {}}],
}}


def _pod(template: dict[str, Any], storage_claim: str | None) -> dict[str, Any]:
    trial = build_trial(EXP, 3, {"lr": 0.1})
    trial["metadata"]["uid"] = "t-uid"
    return build_pod(template=template, trial=trial, attempt=1, params={"lr": 0.1},
                     objective_metric="acc", milestones=[], metrics_port=8000,
                     storage_claim=storage_claim)


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


def test_claim_is_mounted_in_the_main_container_and_holds_the_checkpoint_dir() -> None:
    pod = _pod(TEMPLATE, "tune-ckpt")
    spec = pod["spec"]
    assert spec["volumes"] == [
        {"name": "data", "emptyDir": {}},
        {"name": contract.STORAGE_VOLUME, "persistentVolumeClaim": {"claimName": "tune-ckpt"}},
    ]
    main, sidecar = spec["containers"]
    assert main["volumeMounts"] == [
        {"name": "data", "mountPath": "/data"},
        {"name": contract.STORAGE_VOLUME, "mountPath": contract.STORAGE_MOUNT_PATH},
    ]
    assert "volumeMounts" not in sidecar
    assert _env(main)[contract.ENV_CHECKPOINT_DIR] == (
        f"{contract.STORAGE_MOUNT_PATH}/ml/mnist-e-uid-12/mnist-3")
    assert TEMPLATE["spec"]["volumes"] == [{"name": "data", "emptyDir": {}}]  # not mutated


def test_without_storage_checkpoints_stay_under_the_pods_own_root() -> None:
    pod = _pod(TEMPLATE, None)
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["data"]
    checkpoint_dir = _env(pod["spec"]["containers"][0])[contract.ENV_CHECKPOINT_DIR]
    assert checkpoint_dir.startswith(contract.DEFAULT_CHECKPOINT_ROOT + "/")


def _spec(template: dict[str, Any], storage: Any) -> dict[str, Any]:
    return {
        "objective": {"metric": "acc", "mode": "max"},
        "searchSpace": {"lr": {"uniform": [0.0, 1.0]}},
        "trialTemplate": template,
        "storage": storage,
    }


def test_storage_spec_reads_a_claim_name() -> None:
    spec = validate_experiment_spec(_spec(TEMPLATE, {"persistentVolumeClaim": {"claimName": "c-1"}}))
    assert spec.storage is not None and spec.storage.claim_name == "c-1"


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ({"persistentVolumeClaim": {"claimName": "Bad_Name"}}, "claimName"),
        ({"persistentVolumeClaim": {}}, "claimName"),
        ({"pvc": {"claimName": "c"}}, "pvc"),
    ],
)
def test_bad_storage_is_refused_naming_the_field(storage: Any, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        validate_experiment_spec(_spec(TEMPLATE, storage))


def test_a_template_volume_or_mount_in_the_operators_place_is_refused() -> None:
    storage = {"persistentVolumeClaim": {"claimName": "c"}}
    clash = copy.deepcopy(TEMPLATE)
    clash["spec"]["volumes"].append({"name": contract.STORAGE_VOLUME, "emptyDir": {}})
    with pytest.raises(SpecError, match="rename yours"):
        validate_experiment_spec(_spec(clash, storage))
    clash = copy.deepcopy(TEMPLATE)
    clash["spec"]["containers"][0]["volumeMounts"].append(
        {"name": "data", "mountPath": contract.STORAGE_MOUNT_PATH})
    with pytest.raises(SpecError, match="mount yours elsewhere"):
        validate_experiment_spec(_spec(clash, storage))
    validate_experiment_spec(_spec(clash, None))  # without storage the path is the user's
