"""The trial farm's trial side: a simulated trial run as a thread does what its process does.

Each test runs the reference trainer's simulated mode both ways where it compares: as
`python -m kubetune_trainer` in a process of its own, and as a `FarmedTrial` in this one,
with the same arguments and environment.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from kubetune import contract
from kubetune.devcluster.farm import farmed, start_farmed, trainer_args
from kubetune.devcluster.processes import free_port
from kubetune_trainer.farm import FarmedTrial

CONFIG = {"lr": 0.01, "optimizer": "sgd", "hidden_size": 64, "layers": 2, "epochs": 6}


def trial_env(tmp: Path, tag: str, **extra: str) -> dict[str, str]:
    return {contract.ENV_CONFIG: json.dumps(CONFIG), contract.ENV_METRICS_PORT: str(free_port()),
            contract.ENV_MILESTONES: "1,3", contract.ENV_METRIC: "accuracy",
            contract.ENV_TERMINATION_LOG: str(tmp / f"{tag}.msg"),
            contract.ENV_CHECKPOINT_DIR: str(tmp / f"ck-{tag}"),
            contract.ENV_LINGER_SECONDS: "0", **extra}


def epoch_lines(log: str) -> list[str]:
    """The trainer's per-epoch lines without their timestamps."""
    return [re.sub(r"^\S+ \S+ ", "", line) for line in log.splitlines()
            if re.search(r": epoch \d+/", line)]


def test_a_farmed_trial_reports_the_curve_message_and_checkpoints_of_its_process(
        tmp_path: Path) -> None:
    args = ["--dataset", "simulated", "--seconds-per-step", "0.02"]
    real = subprocess.run([sys.executable, "-m", "kubetune_trainer", *args],
                          env={**trial_env(tmp_path, "real"), "PATH": os.environ["PATH"]},
                          capture_output=True, text=True, timeout=60)
    assert real.returncode == 0, real.stderr
    farm = FarmedTrial(args, trial_env(tmp_path, "farm"), tmp_path / "farm.log").start()
    farm.join(30)
    assert farm.exit_code == 0
    message = (tmp_path / "farm.msg").read_text()
    assert message == (tmp_path / "real.msg").read_text()
    decoded = contract.decode_termination_message(message)
    assert decoded["finished"] and decoded["step"] == 6 and set(decoded["rungs"]) == {"1", "3"}
    farm_log = (tmp_path / "farm.log").read_text()
    assert epoch_lines(farm_log) == epoch_lines(real.stderr) and len(epoch_lines(farm_log)) == 6
    assert sorted(p.name for p in (tmp_path / "ck-farm").glob("step-*")) == \
        sorted(p.name for p in (tmp_path / "ck-real").glob("step-*")) == ["step-00000005", "step-00000006"]


def test_a_farmed_trial_serves_its_metrics_on_its_port_and_resumes_from_its_checkpoint(
        tmp_path: Path) -> None:
    env = trial_env(tmp_path, "served", **{contract.ENV_LINGER_SECONDS: "30"})
    farm = FarmedTrial(["--dataset", "simulated", "--seconds-per-step", "0.01"], env,
                       tmp_path / "served.log").start()

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{env[contract.ENV_METRICS_PORT]}/metrics",
                                    timeout=5) as answer:
            return str(answer.read().decode())

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            body = scrape()
        except OSError:
            time.sleep(0.05)
            continue
        if f"{contract.METRIC_FINISHED} 1.0" in body:
            break
        time.sleep(0.05)
    assert f"{contract.METRIC_FINISHED} 1.0" in body
    assert f'{contract.METRIC_RUNG_VALUE}{{metric="accuracy",milestone="3"}}' in body
    farm.join(10)  # the scrape ended its linger
    assert farm.exit_code == 0
    # A second attempt with the same checkpoint directory reports the last epoch again.
    again = FarmedTrial(["--dataset", "simulated", "--seconds-per-step", "0"],
                        {**env, contract.ENV_LINGER_SECONDS: "0"}, tmp_path / "again.log").start()
    again.join(10)
    assert again.exit_code == 0
    assert epoch_lines((tmp_path / "again.log").read_text()) == \
        epoch_lines((tmp_path / "served.log").read_text())[-1:]


def test_stop_is_sigterm_and_kill_is_sigkill(tmp_path: Path) -> None:
    stopped = FarmedTrial(["--dataset", "simulated", "--seconds-per-step", "0.5"],
                          trial_env(tmp_path, "stopped"), tmp_path / "stopped.log").start()
    log = tmp_path / "stopped.log"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "epoch 2/6" not in (
            log.read_text(errors="replace") if log.exists() else ""):
        time.sleep(0.05)
    began = time.monotonic()
    stopped.stop()
    stopped.join(5)
    assert stopped.exit_code == 0 and time.monotonic() - began < 0.4  # the epoch's wait is cut
    message = contract.decode_termination_message((tmp_path / "stopped.msg").read_text())
    assert not message["finished"] and message["step"] == 2

    env = trial_env(tmp_path, "killed")
    killed = FarmedTrial(["--dataset", "simulated", "--seconds-per-step", "0.5"], env,
                         tmp_path / "killed.log").start()
    time.sleep(0.8)
    killed.kill()
    assert killed.exit_code == 137
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{env[contract.ENV_METRICS_PORT]}/metrics",
                               timeout=2)


def test_bad_arguments_end_as_the_process_would(tmp_path: Path) -> None:
    farm = FarmedTrial(["--dataset", "imagenet"], trial_env(tmp_path, "bad"),
                       tmp_path / "bad.log").start()
    farm.join(10)
    assert farm.exit_code == 2
    assert "invalid choice: 'imagenet'" in (tmp_path / "bad.log").read_text()


def test_only_annotated_pods_running_the_simulated_trainer_are_farmed(tmp_path: Path) -> None:
    pod = {"metadata": {"annotations": {contract.ANNOTATION_FARM: "true"}}}
    assert farmed(pod) and not farmed({"metadata": {}})
    assert not farmed({"metadata": {"annotations": {contract.ANNOTATION_FARM: "no"}}})
    assert trainer_args(["python", "-m", "kubetune_trainer", "--dataset", "simulated"]) == [
        "--dataset", "simulated"]
    assert trainer_args(["python", "train.py"]) is None
    refused = start_farmed({"name": "main", "command": ["python", "train.py"]}, {},
                           tmp_path / "main", tmp_path / "log", "pod")
    assert isinstance(refused, str) and contract.ANNOTATION_FARM in refused
    assert "remove the annotation" in refused
