"""Record learning curves of the trainer's MLP on scikit-learn's digits, for the replay benchmark.

Each configuration is drawn from the search space below and trained in-process
with the trainer's own code (`kubetune_trainer.mnist.train`, the loop a trial
pod runs) for EPOCHS epochs on one CPU thread. After every epoch the trainer
reports validation accuracy and loss; we keep them with the wall-clock seconds
the epoch took. The table goes to benchmarks/data/digits_curves.csv.gz, one
row per (config, epoch), hyperparameters included, so the replay benchmark
needs no torch and no download.

Run: .venv/bin/python -m benchmarks.record_digits_curves [--configs 400 --epochs 27]
(about 6 minutes of one CPU core for the defaults).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gzip
import math
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data" / "digits_curves.csv.gz"
VAL_FRACTION = 0.25
COLUMNS = (
    "config", "epoch", "accuracy", "loss", "seconds",
    "lr", "optimizer", "momentum", "batch_size", "hidden_size", "layers", "dropout",
)


def sample_config(rng: random.Random, index: int) -> dict[str, Any]:
    """The search space: wide enough that some configurations barely learn."""
    return {
        "lr": math.exp(rng.uniform(math.log(1e-4), math.log(1.0))),
        "optimizer": rng.choice(["sgd", "adam"]),
        "momentum": rng.uniform(0.5, 0.99),
        "batch_size": rng.choice([32, 64, 128, 256]),
        "hidden_size": rng.choice([16, 32, 64, 128, 256]),
        "layers": rng.randint(1, 3),
        "dropout": rng.uniform(0.0, 0.5),
        "seed": index,
    }


class RecordingSession:
    """Stands in for kubetune.trial.Session: keeps each report with the time it arrived."""

    def __init__(self, config: dict[str, Any], scratch: Path) -> None:
        self._config = config
        self._scratch = scratch
        self.reports: list[tuple[int, float, float, float]] = []
        self._last = time.perf_counter()

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def report(self, *, step: int, accuracy: float, loss: float) -> None:
        now = time.perf_counter()
        self.reports.append((step, accuracy, loss, now - self._last))
        self._last = now

    def get_checkpoint(self) -> None:
        return None

    @contextlib.contextmanager
    def save_checkpoint(self, step: int) -> Iterator[Path]:
        yield self._scratch


def record(configs: int, epochs: int, seed: int, out: Path) -> float:
    import torch

    from kubetune_trainer.data import load
    from kubetune_trainer.hyperparameters import resolve
    from kubetune_trainer.mnist import train

    torch.set_num_threads(1)
    splits = load("digits", data_dir=Path("."), download=False, val_fraction=VAL_FRACTION)
    rng = random.Random(seed)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    scratch_base = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(dir=scratch_base) as scratch:
        # One untimed warm-up so the first configuration's times are not inflated.
        warm = resolve({"epochs": 1}, {})
        train(warm, splits, RecordingSession({}, Path(scratch)), device=torch.device("cpu"))
        for index in range(configs):
            config = sample_config(rng, index)
            hp = resolve({**config, "epochs": epochs}, {})
            session = RecordingSession(config, Path(scratch))
            session._last = time.perf_counter()
            train(hp, splits, session, device=torch.device("cpu"))
            for step, accuracy, loss, seconds in session.reports:
                rows.append({
                    "config": index, "epoch": step, "accuracy": f"{accuracy:.6f}",
                    "loss": f"{loss:.6f}", "seconds": f"{seconds:.5f}",
                    **{k: config[k] for k in COLUMNS[5:]},
                })
            if index % 50 == 49:
                print(f"{index + 1}/{configs} configs, {time.perf_counter() - started:.0f}s")
    out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(out, "wt", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=27)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--out", type=Path, default=DATA)
    args = parser.parse_args(argv)
    seconds = record(args.configs, args.epochs, args.seed, args.out)
    print(f"recorded {args.configs} configs x {args.epochs} epochs in {seconds:.0f}s -> {args.out}")


if __name__ == "__main__":
    main()
