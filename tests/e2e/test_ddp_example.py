"""examples/ddp-asha.yaml on the local control plane, with the real DDP trainer: the worker
count is sampled per trial (num_workers: {choice: [2, 3]}), each trial runs that many pods
as one torchrun group, and ASHA's rung records are rank 0's reports.

Rank 0 writes the accuracy it reported after every epoch (`--audit-dir`), so even a
trial that ASHA stops can be compared with what the operator recorded for it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from kubetune import contract
from kubetune.client.experiments import ExperimentClient
from kubetune.client.tuner import wait_for_experiment
from tests.e2e.test_seed_train_tune import TRAIN_EXAMPLES, trials_of
from tests.integration.kube import wait_for
from tests.support.operator import CHECKPOINT_ROOT

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ddp-asha.yaml"


def example(audit_root: Path) -> dict[str, Any]:
    """The example as shipped, with fewer trials and an audit directory per trial."""
    body = yaml.safe_load(EXAMPLE.read_text())
    spec = body["spec"]
    spec["numSamples"] = 4  # seed 7 draws 3, 2, 2, 2 workers
    container = spec["trialTemplate"]["spec"]["containers"][0]
    container["args"] += ["--audit-dir", f"{audit_root}/$(KUBETUNE_TRIAL)"]
    container["env"] += [{"name": contract.ENV_LINGER_SECONDS, "value": "3"},
                         {"name": contract.ENV_CHECKPOINT_ROOT, "value": CHECKPOINT_ROOT}]
    return body


def test_the_ddp_example_samples_worker_counts_and_asha_judges_rank_0s_reports(
        api_client, operator, namespace, tmp_path: Path):
    audit_root = tmp_path / "audit"
    ec = ExperimentClient(api_client=api_client, namespace=namespace)
    ec.create_experiment(example(audit_root))
    experiment = wait_for_experiment(ec, "ddp-asha", timeout=600)
    assert experiment["status"]["phase"] == "Succeeded", experiment["status"]

    core = client.CoreV1Api(api_client)
    trials = trials_of(api_client, namespace, "ddp-asha")
    assert [t["spec"]["params"]["num_workers"] for t in trials] == [3, 2, 2, 2]
    judged = 0
    for trial in trials:
        name, workers = trial["metadata"]["name"], trial["spec"]["params"]["num_workers"]
        status = trial["status"]
        assert status["state"] in ("Succeeded", "Pruned"), status
        rank0 = json.loads((audit_root / name / "rank-0.json").read_text())
        assert rank0["world_size"] == workers
        # Every rung the operator recorded, and the value a prune was decided on, is
        # the accuracy rank 0 reported at that epoch.
        for rung in status.get("rungs") or []:
            assert rung["value"] == rank0["reported"][str(rung["milestone"])], (name, rung)
            judged += 1
        if status["state"] == "Pruned":
            pruned = status["prunedAt"]
            assert pruned["value"] == rank0["reported"][str(pruned["milestone"])]
            # Pruning deleted the whole group: no worker pod is left.
            selector = f"{contract.TRIAL_LABEL}={name}"
            wait_for(lambda s=selector: not core.list_namespaced_pod(
                namespace, label_selector=s).items,
                timeout=60, what=f"every worker pod of pruned {name} to go")
            continue
        records = [json.loads((audit_root / name / f"rank-{r}.json").read_text())
                   for r in range(workers)]
        per_rank = TRAIN_EXAMPLES // workers
        for epoch in records[0]["indices"]:
            shards = [set(r["indices"][epoch]) for r in records]
            assert [len(s) for s in shards] == [per_rank] * workers
            assert len(set().union(*shards)) == per_rank * workers, f"{name}: shards overlap"
        assert len({r["weights_sha256"] for r in records}) == 1, f"{name}: weights differ"
        assert status["objective"] == rank0["reported"]["9"]
    assert judged >= len(trials), "ASHA recorded no rung for some trial"
