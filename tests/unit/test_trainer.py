"""The trainer image's package: real PyTorch on tiny data, and the torch-free simulation.

MNIST is read through torchvision's own loader from IDX files written here
(no download); SIGTERM and resume run the trainer as a real process.
"""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from kubetune.trial import Session, TrialSettings, parse_termination_message
from kubetune_trainer.__main__ import build_parser, run
from kubetune_trainer.hyperparameters import Hyperparameters, resolve
from kubetune_trainer.reporting import EpochResult
from kubetune_trainer.simulated import accuracy_at
from kubetune_trainer.synthetic_mnist import write_idx_mnist
from tests.support.trial_env import reported_step, trial_env


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_idx_mnist(tmp_path_factory.mktemp("mnist"), n_train=1200, n_test=100, seed=0)


@pytest.fixture
def train(tmp_path: Path) -> Iterator[Callable[..., list[EpochResult]]]:
    """Run the trainer in-process against its own session; `config` is KUBETUNE_CONFIG."""
    sessions: list[Session] = []

    def train(*argv: str, config: dict[str, Any] | None = None) -> list[EpochResult]:
        settings = TrialSettings(
            config=config or {},
            metrics_port=0,
            checkpoint_dir=tmp_path / "ckpt",
            termination_log=tmp_path / "termination-log",
            linger_seconds=0,
        )
        session = Session(settings).start()
        sessions.append(session)
        results = run(build_parser().parse_args(["--device", "cpu", *argv]), session)
        session.finish()
        return results

    yield train
    for session in sessions:
        session.close()


def test_synthetic_idx_files_load_through_torchvision_mnist(mnist_root: Path) -> None:
    from torchvision.datasets import MNIST

    train_split = MNIST(root=str(mnist_root), train=True, download=False)
    test_split = MNIST(root=str(mnist_root), train=False, download=False)

    assert tuple(train_split.data.shape) == (1200, 28, 28)
    assert len(test_split) == 100
    assert torch.bincount(train_split.targets).tolist() == [120] * 10


@pytest.mark.parametrize("seed", [0, 1])
def test_training_on_mnist_raises_validation_accuracy(
    train: Callable[..., list[EpochResult]], mnist_root: Path, seed: int
) -> None:
    results = train(
        "--dataset", "mnist", "--data-dir", str(mnist_root), "--val-fraction", "0.25",
        config={"lr": 0.02, "momentum": 0.0, "batch_size": 32, "hidden_size": 64,
                "epochs": 5, "seed": seed},
    )  # fmt: skip

    accuracies = [r.accuracy for r in results]
    assert [r.epoch for r in results] == [1, 2, 3, 4, 5]
    assert accuracies[-1] > accuracies[0] + 0.15, accuracies
    assert accuracies[-1] > 0.5, accuracies  # chance is 0.1
    assert results[-1].loss < results[0].loss


def test_digits_trains_to_high_accuracy_and_reports_each_epoch(
    train: Callable[..., list[EpochResult]], tmp_path: Path
) -> None:
    results = train("--dataset", "digits", "--epochs", "3")

    assert results[-1].accuracy > 0.85
    message = parse_termination_message((tmp_path / "termination-log").read_text())
    assert message["step"] == 3 and message["finished"] is True
    assert message["metrics"] == {"accuracy": results[-1].accuracy, "loss": results[-1].loss}


def test_resumed_training_continues_at_next_epoch_as_if_never_stopped(
    train: Callable[..., list[EpochResult]], tmp_path: Path
) -> None:
    uninterrupted = train("--dataset", "digits", "--epochs", "4", "--lr", "0.02")
    for checkpoint in (tmp_path / "ckpt").glob("step-*"):
        for file in checkpoint.iterdir():
            file.unlink()
        checkpoint.rmdir()

    train("--dataset", "digits", "--epochs", "2", "--lr", "0.02")
    resumed = train("--dataset", "digits", "--epochs", "4", "--lr", "0.02")

    assert [r.epoch for r in resumed] == [3, 4]
    assert resumed == uninterrupted[2:]  # model, optimizer and shuffle order were restored


def test_retry_of_a_finished_trial_reports_its_result_again(
    train: Callable[..., list[EpochResult]],
) -> None:
    first = train("--dataset", "digits", "--epochs", "2")
    again = train("--dataset", "digits", "--epochs", "2")

    assert again == [first[-1]]


def test_checkpoint_of_other_hyperparameters_is_refused(
    train: Callable[..., list[EpochResult]],
) -> None:
    train("--dataset", "digits", "--epochs", "1", "--hidden-size", "32")
    with pytest.raises(RuntimeError, match="fresh KUBETUNE_CHECKPOINT_DIR"):
        train("--dataset", "digits", "--epochs", "2", "--hidden-size", "64")


def test_missing_mnist_files_say_how_to_get_them(
    train: Callable[..., list[EpochResult]], tmp_path: Path
) -> None:
    with pytest.raises(RuntimeError, match="--download"):
        train("--dataset", "mnist", "--data-dir", str(tmp_path / "empty"))


# --- hyperparameters -----------------------------------------------------------------------


def test_trial_config_overrides_flags_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="kubetune_trainer"):
        hp = resolve({"lr": 0.3, "hidden_size": 256.0}, {"lr": 0.1, "epochs": 7, "layers": None})

    assert hp == Hyperparameters(lr=0.3, hidden_size=256, epochs=7)
    assert "lr" in caplog.text


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"lr": -1}, "lr=-1"),
        ({"hidden_size": 12.5}, "hidden_size=12.5 must be an integer"),
        ({"optimizer": "rmsprop"}, "optimizer='rmsprop'"),
        ({"batch_size": True}, "batch_size=True"),
    ],
)
def test_bad_hyperparameters_are_errors_naming_them(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        resolve(config, {})


# --- simulated trials ----------------------------------------------------------------------


def test_simulated_better_config_converges_higher() -> None:
    good = Hyperparameters(lr=0.05, hidden_size=256, layers=2, dropout=0.1, momentum=0.9)
    poor = Hyperparameters(lr=0.0005, hidden_size=32, layers=1, dropout=0.5, momentum=0.5)

    good_curve = [accuracy_at(good, epoch) for epoch in range(1, 31)]
    poor_curve = [accuracy_at(poor, epoch) for epoch in range(1, 31)]

    assert good_curve[-1] > poor_curve[-1] + 0.1
    assert good_curve[-1] > good_curve[0]
    assert accuracy_at(good, 5) == accuracy_at(good, 5)  # deterministic


def test_simulated_run_reports_every_epoch_without_importing_torch(tmp_path: Path) -> None:
    code = (
        "import sys; from kubetune_trainer.__main__ import main; "
        "main(['--dataset', 'simulated', '--seconds-per-step', '0', '--epochs', '5']); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=trial_env(tmp_path, KUBETUNE_CONFIG='{"lr": 0.03, "hidden_size": 128}'),
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 0, result.stderr
    assert _reported_epochs(result.stderr) == [1, 2, 3, 4, 5]
    message = parse_termination_message((tmp_path / "termination-log").read_text())
    hp = Hyperparameters(lr=0.03, hidden_size=128, epochs=5)
    config = {"lr": 0.03, "hidden_size": 128}
    assert message["metrics"]["accuracy"] == accuracy_at(hp, 5, config)
    assert message["finished"] is True


def test_sigterm_stops_the_trainer_and_a_retry_resumes_at_the_next_epoch(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "kubetune_trainer", "--dataset", "simulated", "--epochs", "50"]
    env = trial_env(tmp_path, KUBETUNE_MILESTONES="1,2,4", KUBETUNE_METRIC="accuracy")
    process = subprocess.Popen(
        [*command, "--seconds-per-step", "0.1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = tmp_path / "termination-log"
    deadline = time.monotonic() + 20
    while (reported_step(log) or 0) < 3:
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.02)

    process.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    _, stderr = process.communicate(timeout=10)

    assert process.returncode == 0, stderr
    assert time.monotonic() - sent < 2
    stopped = parse_termination_message(log.read_text())
    assert stopped["finished"] is False
    last_reported = _reported_epochs(stderr)[-1]
    assert stopped["step"] == last_reported
    checkpointed = max(int(p.name.split("-")[1]) for p in (tmp_path / "ckpt").glob("step-*"))
    assert checkpointed in (last_reported - 1, last_reported)  # SIGTERM may precede the save

    retry = subprocess.run(
        [*command, "--seconds-per-step", "0", "--epochs", str(last_reported + 2)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert retry.returncode == 0, retry.stderr
    assert _reported_epochs(retry.stderr)[0] == checkpointed + 1
    assert _reported_epochs(retry.stderr)[-1] == last_reported + 2
    finished = parse_termination_message(log.read_text())
    assert finished["finished"] is True
    assert finished["rungs"]["1"]["step"] == 1  # rungs of the first attempt are kept




def _reported_epochs(log_text: str) -> list[int]:
    return [int(m) for m in re.findall(r"epoch (\d+)/\d+ accuracy=", log_text)]
