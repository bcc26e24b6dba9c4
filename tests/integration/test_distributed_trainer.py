"""A torchrun group on the local control plane, with no operator: an Indexed Job and a
headless Service made by hand, their pods made by the kube-controller-manager's Job
controller, placed by the scheduler on the KWOK GPU nodes and run by the local runner,
which plays cluster DNS (rank 0's name is this host) and gives each Job its own
rendezvous port. The reference trainer's data-parallel mode runs in every pod; each
rank writes a digest of its final weights and the sample indices it trained on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubernetes import client

from kubetune import contract
from tests.integration.kube import wait_for

COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"


def torchrun_job(name: str, workers: int, config: dict[str, Any], checkpoints: Path,
                 audit: Path) -> dict[str, Any]:
    """What the operator makes for one attempt of a multi-worker trial, written by hand."""
    env = [
        {"name": "PET_NNODES", "value": str(workers)},
        {"name": "PET_NPROC_PER_NODE", "value": "1"},
        {"name": "PET_NODE_RANK", "valueFrom": {"fieldRef": {"fieldPath": COMPLETION_INDEX}}},
        {"name": "PET_MASTER_ADDR", "value": f"{name}-0.{name}"},
        {"name": "PET_MASTER_PORT", "value": "29500"},
        {"name": contract.ENV_CONFIG, "value": json.dumps(config)},
        {"name": contract.ENV_TRIAL, "value": name},
        {"name": contract.ENV_METRICS_PORT, "value": "9090"},
        {"name": contract.ENV_CHECKPOINT_DIR, "value": str(checkpoints)},
        {"name": contract.ENV_LINGER_SECONDS, "value": "3"},
    ]
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {
            "completionMode": "Indexed", "completions": workers, "parallelism": workers,
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "subdomain": name, "restartPolicy": "Never",
                    "containers": [{
                        "name": "trainer", "image": "kubetune-trainer:dev",
                        "command": ["python", "-m", "torch.distributed.run",
                                    "-m", "kubetune_trainer"],
                        "args": ["--dataset", "digits", "--audit-dir", str(audit)],
                        "env": env,
                        "resources": {"limits": {"nvidia.com/gpu": "1"}},
                    }],
                },
            },
        },
    }


def headless_service(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                     "selector": {"app": name}, "ports": [{"name": "rdzv", "port": 29500}]}}


def run_job(api_client: Any, namespace: str, body: dict[str, Any]) -> None:
    batch, core = client.BatchV1Api(api_client), client.CoreV1Api(api_client)
    name = body["metadata"]["name"]
    core.create_namespaced_service(namespace, headless_service(name))
    batch.create_namespaced_job(namespace, body)


def pods_report(core: client.CoreV1Api, state_dir: Path | None, namespace: str,
                name: str) -> str:
    """Each pod of Job `name`: how its container ended, and the tail of its output."""
    lines = []
    for pod in core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items:
        states = [cs.state for cs in pod.status.container_statuses or []]
        ended = [s.terminated for s in states if s.terminated is not None]
        how = (f"exit {ended[0].exit_code} ({ended[0].reason}): {ended[0].message}" if ended
               else pod.status.phase)
        lines.append(f"--- {pod.metadata.name} on {pod.spec.node_name}: {how}")
        log = contract.pod_log_path(state_dir, namespace, pod.metadata.name) if state_dir else None
        if log is not None and log.exists():
            lines.extend(log.read_text(errors="replace").splitlines()[-40:])
    return "\n".join(lines)


def wait_job_succeeded(api_client: Any, namespace: str, name: str, timeout: float = 300,
                       state_dir: Path | None = None) -> list[client.V1Pod]:
    """The Job's pods once it completed; a failed Job fails the test with its pods' story."""
    batch, core = client.BatchV1Api(api_client), client.CoreV1Api(api_client)

    def done() -> bool:
        status = batch.read_namespaced_job_status(name, namespace).status
        failed = [c for c in status.conditions or [] if c.type == "Failed" and c.status == "True"]
        assert not failed, (f"Job {name} failed: {failed[0].message}\n"
                            f"{pods_report(core, state_dir, namespace, name)}")
        return any(c.type == "Complete" and c.status == "True" for c in status.conditions or [])

    wait_for(done, timeout=timeout, interval=1, what=f"Job {name} to complete")
    return core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items


def audits(directory: Path, workers: int) -> list[dict[str, Any]]:
    return [json.loads((directory / f"rank-{r}.json").read_text()) for r in range(workers)]


def assert_one_group(records: list[dict[str, Any]], epochs: list[int], per_rank: int) -> None:
    """Disjoint shards of equal size each epoch, and every rank ends with the same weights."""
    workers = len(records)
    assert [r["world_size"] for r in records] == [workers] * workers
    for epoch in epochs:
        shards = [set(r["indices"][str(epoch)]) for r in records]
        assert [len(s) for s in shards] == [per_rank] * workers
        assert len(set().union(*shards)) == per_rank * workers, f"epoch {epoch}: shards overlap"
    assert sorted(records[0]["indices"]) == sorted(str(e) for e in epochs)
    digests = {r["weights_sha256"] for r in records}
    assert len(digests) == 1, f"ranks ended with different weights: {digests}"


def test_two_indexed_jobs_each_train_as_one_torchrun_group_and_a_new_attempt_resumes(
        cluster, api_client, namespace, tmp_path: Path):
    core = client.CoreV1Api(api_client)
    logs = cluster.state_dir
    # Two groups at once: both ask for port 29500, each gets its own here.
    jobs = {"ddp-a": {"lr": 0.05, "epochs": 2, "seed": 1},
            "ddp-b": {"lr": 0.1, "epochs": 2, "seed": 2}}
    for name, config in jobs.items():
        run_job(api_client, namespace, torchrun_job(
            name, 2, config, tmp_path / name / "ckpt", tmp_path / name / "audit-1"))
    for name in jobs:
        pods = wait_job_succeeded(api_client, namespace, name, state_dir=logs)
        assert sorted(p.spec.hostname for p in pods) == [f"{name}-0", f"{name}-1"]
        assert all(p.spec.node_name and p.status.phase == "Succeeded" for p in pods)
        # digits: 1617 training examples, 808 per rank once the odd one is dropped.
        assert_one_group(audits(tmp_path / name / "audit-1", 2), [1, 2], per_rank=808)
        rank0 = next(p for p in pods if p.spec.hostname == f"{name}-0")
        message = contract.decode_termination_message(
            rank0.status.container_statuses[0].state.terminated.message)
        assert message["step"] == 2 and message["finished"]
    a, b = (audits(tmp_path / n / "audit-1", 2)[0]["weights_sha256"] for n in jobs)
    assert a != b, "two trials with different configs trained the same weights"
    # Rank 0's termination message alone carries the result: the other rank never opened
    # the trial session.
    rank1 = core.read_namespaced_pod(next(
        p.metadata.name for p in wait_job_succeeded(api_client, namespace, "ddp-a", state_dir=logs)
        if p.spec.hostname == "ddp-a-1"), namespace)
    assert not rank1.status.container_statuses[0].state.terminated.message

    # A second attempt (a new Job, same checkpoints) with a larger budget: every rank
    # resumes after epoch 2 from rank 0's checkpoint and trains epochs 3 and 4 only.
    resumed = torchrun_job("ddp-a2", 2, {**jobs["ddp-a"], "epochs": 4},
                           tmp_path / "ddp-a" / "ckpt", tmp_path / "ddp-a" / "audit-2")
    run_job(api_client, namespace, resumed)
    wait_job_succeeded(api_client, namespace, "ddp-a2", state_dir=logs)
    assert_one_group(audits(tmp_path / "ddp-a" / "audit-2", 2), [3, 4], per_rank=808)
    steps = sorted(p.name for p in (tmp_path / "ddp-a" / "ckpt").glob("step-*"))
    assert steps[-1].endswith("4")


def test_the_runner_resolves_only_names_cluster_dns_would_answer_and_ports_per_job(
        api_client, namespace, tmp_path: Path):
    from kubetune.devcluster.clusterdns import PodNetwork

    core = client.CoreV1Api(api_client)
    core.create_namespaced_service(namespace, headless_service("grp"))
    core.create_namespaced_service(namespace, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "plain"},
        "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}})
    network = PodNetwork(core, tmp_path)

    def pod(job_uid: str) -> dict[str, Any]:
        return {"metadata": {"name": "p", "namespace": namespace, "uid": f"pod-{job_uid}",
                             "ownerReferences": [{"kind": "Job", "name": "j", "uid": job_uid,
                                                  "controller": True}]}, "spec": {}}

    env = {"PET_MASTER_ADDR": f"grp-a1-0.grp.{namespace}.svc", "PET_MASTER_PORT": "29500",
           "PET_RDZV_ENDPOINT": "grp-a1-0.grp:29500", "OTHER": "grp-a1-0.grp"}
    got = network.rewrite(pod("job-1"), env)
    port = got["PET_MASTER_PORT"]
    assert port != "29500" and got["PET_MASTER_ADDR"] == "127.0.0.1"
    assert got["PET_RDZV_ENDPOINT"] == f"127.0.0.1:{port}"
    assert got["OTHER"] == "grp-a1-0.grp"  # only the variables that name the master
    assert network.rewrite(pod("job-1"), env)["PET_MASTER_PORT"] == port
    assert network.rewrite(pod("job-2"), env)["PET_MASTER_PORT"] != port
    # Cluster DNS has no pod records behind a Service with a cluster IP, or no Service.
    for name in ("p-0.plain", "p-0.missing", f"grp-a1-0.grp.{namespace}-other"):
        assert network.rewrite(pod("job-1"), {"PET_MASTER_ADDR": name})["PET_MASTER_ADDR"] == name
