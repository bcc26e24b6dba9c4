"""Population Based Training on the local control plane, with a claim shared by the trials.

8 trials, a check every 2 steps. Each trial's weights are one number w that grows
faster the closer lr is to 0.01; it saves {trial, step, w, digest} at every step.
A trial that starts from a donor's checkpoint checks, inside the trial, that the
checkpoint is the donor's at the step it names and that its weights are intact
(the digest), and writes what it resumed from into its own checkpoint directory.
The test then holds every exploit recorded on the TuneTrials against those
files: the donor, the donor's step, the donor's weights at that step and the new
config. The operator is SIGKILLed twice while the experiment runs; the exploits
recorded before each kill must be unchanged at the end and every trial must end
Succeeded, with one attempt per exploit.
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kubetune import contract
from kubetune.controller.manifests import pod_name
from tests.integration.kube import wait_for
from tests.integration.test_operator import create, experiment, trials
from tests.support.events import about_trials, operator_events
from tests.support.operator import OperatorProcess
from tests.support.storage import hostpath_claim

N_TRIALS = 8
STEPS = 14

PBT_TRIAL = textwrap.dedent('''
    import hashlib, json, math, os, time
    from pathlib import Path
    from kubetune import trial

    def digest(name, step, w):
        return hashlib.sha256(f"{name}:{step}:{w!r}".encode()).hexdigest()

    cfg = trial.config()
    me = os.environ["KUBETUNE_TRIAL"]
    start = os.environ.get("KUBETUNE_START_CHECKPOINT", "")
    w, step = 0.0, 0
    ckpt = trial.get_checkpoint()
    if ckpt is not None:
        state = json.loads((ckpt.path / "state.json").read_text())
        assert state["step"] == ckpt.step, (state, ckpt)
        assert state["digest"] == digest(state["trial"], state["step"], state["w"]), state
        w, step = state["w"], state["step"]
        if start and ckpt.path == Path(start):
            assert state["trial"] != me, "a clone must start from another trial's weights"
            resumed = {"donor": state["trial"], "step": step, "w": w, "config": cfg}
            own = Path(os.environ["KUBETUNE_CHECKPOINT_DIR"])
            own.mkdir(parents=True, exist_ok=True)
            (own / "resumed.json").write_text(json.dumps(resumed))
    rate = max(0.05, 1.0 - abs(math.log10(cfg["lr"]) + 2.0))
    for step in range(step + 1, %(steps)d + 1):
        time.sleep(%(sleep)s)
        w += rate
        with trial.save_checkpoint(step=step) as path:
            state = {"trial": me, "step": step, "w": w, "digest": digest(me, step, w),
                     "lr": cfg["lr"]}
            (path / "state.json").write_text(json.dumps(state))
        trial.report(step=step, accuracy=w)
''')


def _body(script: Path, claim: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubetune.io/v1alpha1", "kind": "TuneExperiment",
        "metadata": {"name": "pbt"},
        "spec": {
            "objective": {"metric": "accuracy", "mode": "max"},
            "searchSpace": {"lr": {"loguniform": [1.0e-4, 1.0]}},
            "searchAlgorithm": {"type": "random", "seed": 3},
            "numSamples": N_TRIALS,
            "maxConcurrentTrials": N_TRIALS,
            "scheduler": {"type": "pbt", "perturbationInterval": 2, "seed": 11,
                          "hyperparamMutations": {"lr": {"loguniform": [1.0e-4, 1.0]}}},
            "storage": {"persistentVolumeClaim": {"claimName": claim}},
            "pruneGracePeriodSeconds": 5,
            "trialTemplate": {"spec": {"containers": [{
                "name": "trial", "image": "kubetune/pbt:test",
                "command": ["python", str(script)],
                "env": [{"name": "KUBETUNE_LINGER_SECONDS", "value": "3"}],
            }]}},
        },
    }


def _exploits(api_client: client.ApiClient, namespace: str) -> dict[str, list[dict[str, Any]]]:
    return {name: list(((t.get("status") or {}).get("pbt") or {}).get("exploits") or [])
            for name, t in trials(api_client, namespace).items()}


def test_bottom_trials_resume_from_top_trials_checkpoints_through_operator_kills(
        cluster, api_client, namespace, operator: OperatorProcess, tmp_path: Path):
    core = client.CoreV1Api(api_client)
    volume = tmp_path / "volume"
    volume.mkdir()
    script = tmp_path / "pbt_trial.py"
    script.write_text(PBT_TRIAL % {"steps": STEPS, "sleep": 2.0})
    create(api_client, namespace, _body(script, hostpath_claim(core, namespace, volume, name="pbt-ckpt")))

    before_kills: list[dict[str, list[dict[str, Any]]]] = []
    wait_for(lambda: any(_exploits(api_client, namespace).values()), timeout=180, interval=0.5,
             what="a first exploit recorded")
    for pause in (3, 8):  # SIGKILL right after an exploit is recorded, then later in the run
        before_kills.append(_exploits(api_client, namespace))
        operator.kill()
        time.sleep(3)
        operator.start()
        time.sleep(pause)

    def done() -> dict[str, Any] | None:
        exp = experiment(api_client, namespace, "pbt")
        return exp if (exp.get("status") or {}).get("phase") in ("Succeeded", "Failed") else None

    exp = wait_for(done, timeout=300, interval=1.0, what="pbt to finish")
    assert exp["status"]["phase"] == "Succeeded", exp["status"]
    final = trials(api_client, namespace)
    assert sorted(final) == sorted(f"pbt-{i}" for i in range(N_TRIALS))
    exploits = _exploits(api_client, namespace)
    for snapshot in before_kills:  # a kill changes no recorded decision
        for name, records in snapshot.items():
            assert exploits[name][:len(records)] == records, name
    run_dir = volume / namespace / f"pbt-{exp['metadata']['uid'][:8]}"
    # Attempts other than exploits must each be explained by an Event (a retry or a
    # disruption, which a busy machine can cause); none may appear from nowhere.
    restarts: dict[str, list[str]] = {}
    for t in about_trials(operator_events(api_client, namespace)):
        if t.reason in ("TrialRetried", "TrialDisrupted"):
            restarts.setdefault(t.trial, []).append(t.words)
    total = 0
    for name, t in final.items():
        status = t["status"]
        records = exploits[name]
        total += len(records)
        assert status["state"] == "Succeeded", (name, status)
        extra = len(restarts.get(name, []))
        assert status["attempts"] == 1 + len(records) + extra, (name, status, restarts)
        config = t["spec"]["params"]
        attempts = [record["attempt"] for record in records]
        assert attempts == sorted(set(attempts)) and all(a >= 2 for a in attempts), attempts
        for n, record in enumerate(records, start=1):
            assert record["oldConfig"] == config
            written = run_dir / name / f"exploit-{n}" / "resumed.json"
            if not written.exists():  # say what the attempt did instead
                log = contract.pod_log_path(cluster.state_dir, namespace,
                                            pod_name(name, record["attempt"]))
                tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
                pytest.fail(f"{name}'s attempt {record['attempt']} (exploit {n}) did not start "
                            f"from {record['donorCheckpoint']}; its output:\n{tail}")
            resumed = json.loads(written.read_text())
            donor_state = json.loads(
                (run_dir / record["donorCheckpoint"] / "state.json").read_text())
            assert resumed["donor"] == record["donor"] and resumed["step"] == record["donorStep"]
            assert resumed["w"] == donor_state["w"] and donor_state["step"] == record["donorStep"]
            assert resumed["config"] == record["newConfig"]  # the config the attempt ran
            # The new config is the donor's, explored: resampled, or its lr times a factor.
            new_lr, operation = record["newConfig"]["lr"], record["operations"]["lr"]
            if operation == "resample":
                assert 1.0e-4 <= new_lr <= 1.0
            else:
                assert new_lr == pytest.approx(donor_state["lr"] * float(operation.split()[1]))
            config = record["newConfig"]
        assert status["pbt"]["config"] == config
    assert total >= 2
