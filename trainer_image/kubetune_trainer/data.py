"""Loading a dataset into tensors, split into training and validation sets.

The validation set is a fixed held-out part of the training split (the same
for every trial, whatever its seed), so tuning never looks at the test split.
Datasets here are small enough to keep whole on the device, which avoids a
DataLoader and its worker processes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

logger = logging.getLogger("kubetune_trainer")

DATASETS = ("mnist", "digits")
_SPLIT_SEED = 0
_MNIST_MEAN, _MNIST_STD = 0.1307, 0.3081


@dataclass(frozen=True)
class Splits:
    """Flattened float features and int64 labels."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    num_classes: int

    @property
    def num_features(self) -> int:
        return int(self.train_x.shape[1])

    def to(self, device: torch.device) -> Splits:
        return Splits(
            self.train_x.to(device),
            self.train_y.to(device),
            self.val_x.to(device),
            self.val_y.to(device),
            self.num_classes,
        )


def load(name: str, *, data_dir: Path, download: bool, val_fraction: float) -> Splits:
    if not 0 < val_fraction < 1:
        raise ValueError(f"--val-fraction {val_fraction} must be in (0, 1)")
    if name == "mnist":
        features, labels = _mnist(data_dir, download)
    elif name == "digits":
        features, labels = _digits()
    else:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")
    return _holdout(features, labels, val_fraction, num_classes=10)  # both are digits


def _mnist(data_dir: Path, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision.datasets import MNIST

    try:
        dataset = MNIST(root=str(data_dir), train=True, download=download)
    except RuntimeError as exc:
        raise RuntimeError(
            f"MNIST not found under {data_dir}/MNIST/raw: pass --download (needs the "
            f"internet), or point --data-dir at a copy ({exc})"
        ) from exc
    features = dataset.data.reshape(len(dataset.data), -1).float().div(255.0)
    features = (features - _MNIST_MEAN) / _MNIST_STD
    return features, dataset.targets.long()


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    features = torch.tensor(bunch.data, dtype=torch.float32) / 16.0
    features = (features - features.mean()) / features.std()
    return features, torch.tensor(bunch.target, dtype=torch.int64)


def _holdout(
    features: torch.Tensor, labels: torch.Tensor, val_fraction: float, num_classes: int
) -> Splits:
    generator = torch.Generator().manual_seed(_SPLIT_SEED)
    order = torch.randperm(len(labels), generator=generator)
    n_val = max(1, round(len(labels) * val_fraction))
    val, train = order[:n_val], order[n_val:]
    logger.info("%d training and %d validation examples", len(train), len(val))
    return Splits(features[train], labels[train], features[val], labels[val], num_classes)
