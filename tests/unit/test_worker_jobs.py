"""A multi-worker trial's Indexed Job and headless Service, and torchrun reading their env."""

from __future__ import annotations

import os
from typing import Any
from unittest import mock

import pytest

from kubetune import contract
from kubetune.controller.jobs import build_job, build_service, name_problem
from kubetune.controller.manifests import build_pod, build_trial

pytestmark = pytest.mark.unit

EXP = {"metadata": {"name": "ddp", "namespace": "ml", "uid": "e-uid"}}
TEMPLATE = {"spec": {"containers": [{
    "name": "train", "image": "trainer", "command": ["torchrun"],
    "args": ["-m", "kubetune_trainer", "--lr=${params.lr}"],
    "resources": {"limits": {"nvidia.com/gpu": 1}},
}]}}
PARAMS = {"lr": 0.1, "num_workers": 3}


def job(workers: int, attempt: int = 2) -> dict[str, Any]:
    trial = build_trial(EXP, 5, PARAMS)
    trial["metadata"]["uid"] = "t-uid"
    pod = build_pod(template=TEMPLATE, trial=trial, attempt=attempt, params=PARAMS,
                    objective_metric="acc", milestones=[1, 3], metrics_port=8000)
    return build_job(pod, workers=workers, procs_per_worker=2, master_port=29500)


@pytest.mark.parametrize("workers", [2, 4])
def test_indexed_job_of_an_attempt(workers: int) -> None:
    body = job(workers)
    meta, spec = body["metadata"], body["spec"]
    assert meta["name"] == "ddp-5-a2" and meta["namespace"] == "ml"
    assert meta["ownerReferences"][0]["kind"] == "TuneTrial"
    assert meta["ownerReferences"][0]["uid"] == "t-uid"
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == workers
    assert spec["backoffLimit"] == 0
    assert spec["podFailurePolicy"] == {"rules": [{"action": "Ignore", "onPodConditions": [
        {"type": "DisruptionTarget", "status": "True"}]}]}
    assert spec["successPolicy"] == {"rules": [{"succeededIndexes": "0", "succeededCount": 1}]}
    template = spec["template"]
    labels = template["metadata"]["labels"]
    assert labels[contract.TRIAL_LABEL] == "ddp-5" and labels[contract.ATTEMPT_LABEL] == "2"
    assert labels[contract.WORKERS_LABEL] == str(workers)
    assert template["spec"]["subdomain"] == "ddp-5"
    assert template["spec"]["restartPolicy"] == "Never"
    # GPUs per pod pass through; the pod's args were substituted as for one pod
    main = template["spec"]["containers"][0]
    assert main["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert main["args"] == ["-m", "kubetune_trainer", "--lr=0.1"]


def _env(body: dict[str, Any], rank: int) -> dict[str, str]:
    """The env a pod of rank `rank` gets, with the downward API resolved as the kubelet does."""
    out = {}
    for e in body["spec"]["template"]["spec"]["containers"][0]["env"]:
        if "value" in e:
            out[e["name"]] = e["value"]
        else:
            path = e["valueFrom"]["fieldRef"]["fieldPath"]
            assert path == f"metadata.annotations['{contract.JOB_COMPLETION_INDEX}']"
            out[e["name"]] = str(rank)
    return out


@pytest.mark.parametrize("workers", [2, 4])
def test_torchrun_reads_its_options_from_the_env(workers: int) -> None:
    from torch.distributed.run import get_args_parser

    body = job(workers)
    for rank in range(workers):
        env = _env(body, rank)
        assert env["KUBETUNE_TRIAL"] == "ddp-5" and env["KUBETUNE_ATTEMPT"] == "2"
        assert env[contract.ENV_NUM_WORKERS] == str(workers)
        with mock.patch.dict(os.environ, env, clear=True):
            args = get_args_parser().parse_args(["-m", "kubetune_trainer"])
        assert args.nnodes == str(workers)
        assert args.nproc_per_node == "2"
        assert int(args.node_rank) == rank
        assert args.master_addr == "ddp-5-a2-0.ddp-5"
        assert int(args.master_port) == 29500
        assert args.rdzv_backend == "static"


def test_headless_service_publishes_not_ready_addresses() -> None:
    trial = build_trial(EXP, 5, PARAMS)
    trial["metadata"]["uid"] = "t-uid"
    svc = build_service(trial)
    assert svc["metadata"]["name"] == "ddp-5"
    assert svc["metadata"]["ownerReferences"][0]["uid"] == "t-uid"
    assert svc["spec"] == {"clusterIP": "None", "publishNotReadyAddresses": True,
                           "selector": {contract.TRIAL_LABEL: "ddp-5"}}


def test_names_too_long_or_not_dns_labels_are_refused() -> None:
    assert name_problem("ddp-5", 1, 4) is None
    assert "longer than 63" in str(name_problem("x" * 58 + "-1", 1, 4))
    assert "DNS label" in str(name_problem("my.exp-1", 1, 2))
