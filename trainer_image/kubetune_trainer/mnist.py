"""The model and the training loop: an MLP trained epoch by epoch, checkpointed each epoch.

One epoch is one ASHA step. After each epoch the trainer reports validation
accuracy and loss, then saves model, optimizer and epoch, so a retried trial
(same KUBETUNE_CHECKPOINT_DIR) continues at the next epoch with the same state.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from kubetune.trial import Checkpoint, Session
from kubetune_trainer.data import Splits
from kubetune_trainer.hyperparameters import Hyperparameters
from kubetune_trainer.reporting import EpochResult, first_epoch, report_epoch

logger = logging.getLogger("kubetune_trainer")

_STATE_FILE = "state.pt"


def build_model(num_features: int, num_classes: int, hp: Hyperparameters) -> nn.Sequential:
    """`layers` hidden layers of `hidden_size` units with ReLU and dropout."""
    modules: list[nn.Module] = []
    width = num_features
    for _ in range(hp.layers):
        modules += [nn.Linear(width, hp.hidden_size), nn.ReLU()]
        if hp.dropout > 0:
            modules.append(nn.Dropout(hp.dropout))
        width = hp.hidden_size
    modules.append(nn.Linear(width, num_classes))
    return nn.Sequential(*modules)


def build_optimizer(model: nn.Module, hp: Hyperparameters) -> torch.optim.Optimizer:
    if hp.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
    return torch.optim.SGD(
        model.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay
    )


def pick_device(requested: str) -> torch.device:
    """`auto` is CUDA when the pod got a GPU, else CPU."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda, but no CUDA device is visible to this container")
    return torch.device(requested)


def set_up(hp: Hyperparameters, splits: Splits, device: torch.device, amp: bool,
           ) -> tuple[Splits, nn.Sequential, torch.optim.Optimizer, torch.amp.GradScaler, bool]:
    """The data on `device`, the seeded model, its optimizer and grad scaler, and whether AMP is on."""
    if amp and device.type != "cuda":
        logger.warning("--amp needs CUDA; training in float32 on %s", device)
        amp = False
    torch.manual_seed(hp.seed)
    data = splits.to(device)
    model = build_model(data.num_features, data.num_classes, hp).to(device)
    optimizer = build_optimizer(model, hp)
    return data, model, optimizer, torch.amp.GradScaler("cuda", enabled=amp), amp


def restore(state: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer,
            scaler: torch.amp.GradScaler) -> None:
    """Load a checkpoint's training state into the model, optimizer and scaler."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])


def train(
    hp: Hyperparameters,
    splits: Splits,
    session: Session,
    *,
    device: torch.device,
    amp: bool = False,
) -> list[EpochResult]:
    """Train from the latest checkpoint (or from scratch) to `hp.epochs`; one report per epoch."""
    data, model, optimizer, scaler, amp = set_up(hp, splits, device, amp)

    checkpoint = session.get_checkpoint()
    start = first_epoch(checkpoint)
    if checkpoint is not None:
        state = load_state(checkpoint, hp, device)
        restore(state, model, optimizer, scaler)
        if start > hp.epochs:  # a retry of a finished trial: report its result again
            result = EpochResult(checkpoint.step, state["accuracy"], state["loss"])
            report_epoch(session, result, hp.epochs)
            return [result]

    logger.info("training on %s%s: %s", device, " with AMP" if amp else "", hp)
    results: list[EpochResult] = []
    for epoch in range(start, hp.epochs + 1):
        _train_epoch(model, optimizer, scaler, data, hp, epoch, amp)
        accuracy, loss = evaluate(model, data, hp.batch_size, amp)
        result = EpochResult(epoch, accuracy, loss)
        report_epoch(session, result, hp.epochs)
        with session.save_checkpoint(step=epoch) as path:
            torch.save(
                {
                    "epoch": epoch,
                    "hyperparameters": state_identity(hp),
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(),
                    "accuracy": accuracy,
                    "loss": loss,
                },
                path / _STATE_FILE,
            )
        results.append(result)
    return results


def _train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    data: Splits,
    hp: Hyperparameters,
    epoch: int,
    amp: bool,
) -> None:
    model.train()
    # The shuffle depends on (seed, epoch) only, so a resumed trial sees the same batches.
    generator = torch.Generator().manual_seed(hp.seed * 100_003 + epoch)
    order = torch.randperm(len(data.train_y), generator=generator).to(data.train_y.device)
    loss_fn = nn.CrossEntropyLoss()
    for begin in range(0, len(order), hp.batch_size):
        batch = order[begin : begin + hp.batch_size]
        with torch.autocast(device_type=data.train_x.device.type, enabled=amp):
            loss = loss_fn(model(data.train_x[batch]), data.train_y[batch])
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()


@torch.no_grad()
def evaluate(model: nn.Module, data: Splits, batch_size: int, amp: bool) -> tuple[float, float]:
    """Validation accuracy and mean cross-entropy."""
    model.eval()
    correct, total_loss = 0, 0.0
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    chunk = max(batch_size, 1024)  # evaluation needs no small batches
    for begin in range(0, len(data.val_y), chunk):
        x, y = data.val_x[begin : begin + chunk], data.val_y[begin : begin + chunk]
        with torch.autocast(device_type=x.device.type, enabled=amp):
            logits = model(x)
        total_loss += float(loss_fn(logits.float(), y))
        correct += int((logits.argmax(dim=1) == y).sum())
    n = len(data.val_y)
    return correct / n, total_loss / n


def load_state(
    checkpoint: Checkpoint, hp: Hyperparameters, device: torch.device
) -> dict[str, Any]:
    state: dict[str, Any] = torch.load(
        checkpoint.path / _STATE_FILE, map_location=device, weights_only=True
    )
    if state.get("hyperparameters") != state_identity(hp):
        raise RuntimeError(
            f"the checkpoint in {checkpoint.path} was written with hyperparameters "
            f"{state.get('hyperparameters')}, not {state_identity(hp)}; give this trial a fresh "
            "KUBETUNE_CHECKPOINT_DIR"
        )
    return state


def state_identity(hp: Hyperparameters) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: everything but the epoch budget."""
    identity = asdict(hp)
    del identity["epochs"]
    return identity
