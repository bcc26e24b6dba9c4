"""The seed's Train + Tune example (ray-train-tune-hpo.rst) through kubetune.Tuner on the
local control plane, with the reference trainer's data-parallel mode and real torch.

As in the seed, `num_workers` is a job-level hyperparameter (`tune.choice([2, 4])`), the
training hyperparameters are nested in `train_loop_config` (`lr` from `grid_search`),
and `max_concurrent_trials=2`. Each trial is an Indexed Job of `num_workers` pods that
torchrun joins into one gloo group; every rank writes the digest of its final weights,
the sample indices it trained on and (rank 0) the accuracy it reported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubernetes import client

import kubetune
from kubetune import contract, tune
from tests.integration.kube import wait_for
from tests.support.operator import CHECKPOINT_ROOT

EPOCHS = 3
TRAIN_EXAMPLES = 1617  # digits' training split (kubetune_trainer.data)


def trials_of(api_client: Any, namespace: str, experiment: str) -> list[dict[str, Any]]:
    objects = client.CustomObjectsApi(api_client).list_namespaced_custom_object(
        "kubetune.io", "v1alpha1", namespace, "tunetrials",
        label_selector=f"{contract.EXPERIMENT_LABEL}={experiment}")
    return sorted(objects["items"], key=lambda t: t["spec"]["index"])


def ended_pods(api_client: Any, namespace: str, trial: str) -> list[Any]:
    """The trial's pods once none is still running (the other ranks end just after rank 0)."""
    core = client.CoreV1Api(api_client)

    def ended() -> list[Any] | None:
        pods = core.list_namespaced_pod(
            namespace, label_selector=f"{contract.TRIAL_LABEL}={trial}").items
        return pods if all(p.status.phase in ("Succeeded", "Failed") for p in pods) else None

    return wait_for(ended, timeout=60, interval=0.5, what=f"{trial}'s pods to end")


def test_the_seeds_train_and_tune_example_runs_each_trial_as_one_group_of_num_workers(
        api_client, operator, namespace, cluster, tmp_path: Path):
    audit_root = tmp_path / "audit"
    num_workers = tune.choice([2, 4])
    tuner = kubetune.Tuner(
        "kubetune-trainer",
        command=["python", "-m", "torch.distributed.run", "-m", "kubetune_trainer"],
        args=["--dataset", "digits", "--audit-dir", f"{audit_root}/$(KUBETUNE_TRIAL)"],
        env={"KUBETUNE_LINGER_SECONDS": "3", "KUBETUNE_CHECKPOINT_ROOT": CHECKPOINT_ROOT,
             "OMP_NUM_THREADS": "1"},
        param_space={"num_workers": num_workers,
                     "train_loop_config": {"lr": tune.grid_search([1e-3, 3e-4]),
                                           "epochs": EPOCHS}},
        scaling_config=kubetune.ScalingConfig(num_workers=num_workers, use_gpu=True),
        # seed 1 draws 2 workers for the first grid point and 4 for the second.
        tune_config=kubetune.TuneConfig(metric="accuracy", mode="max", max_concurrent_trials=2,
                                        seed=1),
        name="seed-train-tune", namespace=namespace, api_client=api_client,
        prometheus_url=cluster.prometheus_url,
    )
    spec = tuner.to_manifest()["spec"]
    assert spec["workers"] == {"parameter": "num_workers"}
    assert spec["trialTemplate"]["spec"]["containers"][0]["resources"] == {
        "limits": {"nvidia.com/gpu": "1"}}

    results = tuner.fit(progress=False, timeout=600)
    assert results.phase == "Succeeded", [str(e) for e in results.errors]
    assert len(results) == 2 and results.num_errors == 0

    trials = trials_of(api_client, namespace, "seed-train-tune")
    assert [t["spec"]["params"]["num_workers"] for t in trials] == [2, 4]
    assert sorted(t["spec"]["params"]["train_loop_config"]["lr"] for t in trials) == [3e-4, 1e-3]
    for trial in trials:
        name, workers = trial["metadata"]["name"], trial["spec"]["params"]["num_workers"]
        status = trial["status"]
        assert status["state"] == "Succeeded", status
        pods = ended_pods(api_client, namespace, name)
        ranks = {contract.worker_rank(p.metadata.labels, p.metadata.annotations): p for p in pods}
        assert set(ranks) <= set(range(workers)) and ranks[0].status.phase == "Succeeded"
        # Rank 0's exit ends the attempt: a rank still exiting then is stopped by the Job's
        # success policy; none may fail on its own.
        assert all(p.status.phase == "Succeeded" or p.metadata.deletion_timestamp
                   for p in pods), [(p.metadata.name, p.status.phase) for p in pods]
        records = [json.loads((audit_root / name / f"rank-{r}.json").read_text())
                   for r in range(workers)]
        assert [r["world_size"] for r in records] == [workers] * workers
        per_rank = TRAIN_EXAMPLES // workers
        for epoch in range(1, EPOCHS + 1):
            shards = [set(r["indices"][str(epoch)]) for r in records]
            assert [len(s) for s in shards] == [per_rank] * workers
            assert len(set().union(*shards)) == per_rank * workers, f"{name}: shards overlap"
        assert len({r["weights_sha256"] for r in records}) == 1, f"{name}: weights differ"
        # The trial's result is rank 0's report, and only rank 0 reported.
        reported = records[0]["reported"]
        assert all(not r["reported"] for r in records[1:])
        assert status["objective"] == reported[str(EPOCHS)] and status["step"] == EPOCHS
    best = results.get_best_result()
    assert best.metrics["accuracy"] == max(t["status"]["objective"] for t in trials)
