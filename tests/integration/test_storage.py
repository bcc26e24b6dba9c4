"""spec.storage on the local control plane: a claim bound to a hostPath volume holds the
trials' checkpoints, and a trial whose pod is deleted resumes from it in its next attempt.
The local runner maps the claim to the volume's directory (kubetune.devcluster.podenv)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.integration.kube import wait_for
from tests.integration.test_operator import create, trials, wait_phase
from tests.support.operator import OperatorProcess, scripted_experiment
from tests.support.storage import hostpath_claim

RESUMING_TRIAL = textwrap.dedent('''
    import os, time
    from kubetune import trial

    ckpt = trial.get_checkpoint()
    resumed = ckpt.step if ckpt else 0
    if ckpt:
        assert (ckpt.path / "attempt").read_text() == str(int(os.environ["KUBETUNE_ATTEMPT"]) - 1)
    for step in range(resumed + 1, 25):
        time.sleep(0.7)
        trial.report(step=step, accuracy=step / 24, resumed_from=resumed)
        with trial.save_checkpoint(step=step) as path:
            (path / "attempt").write_text(os.environ["KUBETUNE_ATTEMPT"])
''')


def test_checkpoints_go_to_the_claim_and_a_deleted_pods_trial_resumes_from_them(
        api_client, namespace, operator: OperatorProcess, tmp_path: Path):
    core = client.CoreV1Api(api_client)
    volume_dir = tmp_path / "volume"
    volume_dir.mkdir()
    script = tmp_path / "resuming_trial.py"
    script.write_text(RESUMING_TRIAL)
    claim = hostpath_claim(core, namespace, volume_dir, name="tune-ckpt")
    body = scripted_experiment("stored", [0.5], concurrency=1, scheduler={"type": "fifo"},
                               trialRetries=0, storage={"persistentVolumeClaim": {"claimName": claim}})
    container: dict[str, Any] = body["spec"]["trialTemplate"]["spec"]["containers"][0]
    container["command"] = ["python", str(script)]
    container["env"] = [{"name": "KUBETUNE_LINGER_SECONDS", "value": "3"}]
    create(api_client, namespace, body)

    def saved_steps() -> list[str]:
        runs = list(volume_dir.glob(f"{namespace}/stored-*/stored-0/step-*"))
        return sorted(p.name for p in runs)

    # The checkpoints appear in the volume's directory while the first attempt runs.
    wait_for(lambda: len(saved_steps()) >= 2 and saved_steps()[-1] >= "step-00000004",
             timeout=90, what="stored-0's checkpoint at step 4 in the volume")
    pod = core.read_namespaced_pod("stored-0-1", namespace)
    assert [v.persistent_volume_claim.claim_name for v in pod.spec.volumes
            if v.persistent_volume_claim] == [claim]
    core.delete_namespaced_pod("stored-0-1", namespace, grace_period_seconds=1)

    exp = wait_phase(api_client, namespace, "stored", ("Succeeded", "Failed"), timeout=180)
    assert exp["status"]["phase"] == "Succeeded", exp["status"]
    status = trials(api_client, namespace)["stored-0"]["status"]
    assert status["attempts"] == 2 and status["disruptions"] == 1, status
    assert status["metrics"]["resumed_from"] >= 4  # attempt 2 started past step 4, not at 1
    uid = exp["metadata"]["uid"]
    trial_dir = volume_dir / namespace / f"stored-{uid[:8]}" / "stored-0"
    saved = sorted(p.name for p in trial_dir.iterdir() if p.name.startswith("step-"))
    assert saved[-1] == "step-00000024", saved
    assert (trial_dir / saved[-1] / "attempt").read_text() == "2"


PBT = {"type": "pbt", "perturbationInterval": 2, "hyperparamMutations": {"quality": [0.5, 0.6]}}


def test_pbt_without_shared_storage_is_refused_at_apply_time_with_the_reason(
        api_client, namespace, crds):
    from tests.integration.test_apply_time import create as create_raw
    from tests.integration.test_apply_time import refused

    body = scripted_experiment("pbt-nostore", [0.5, 0.6], scheduler=PBT)
    message = refused(lambda: create_raw(api_client, namespace, body))
    assert "scheduler.type pbt needs spec.storage" in message and "spec.storage" in message
    body = scripted_experiment("pbt-tpe", [0.5, 0.6], scheduler=PBT,
                               searchAlgorithm={"type": "tpe"},
                               storage={"persistentVolumeClaim": {"claimName": "c"}})
    assert "explores by itself" in refused(lambda: create_raw(api_client, namespace, body))
    body = scripted_experiment("pbt-ok", [0.5, 0.6], scheduler=PBT,
                               storage={"persistentVolumeClaim": {"claimName": "c"}})
    create_raw(api_client, namespace, body)  # with storage it is accepted
