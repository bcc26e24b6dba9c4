"""The hyperparameters a trial trains with, resolved from the trial config and the CLI.

The trial's config (KUBETUNE_CONFIG) wins over command-line flags: it is the
sample the search drew and the operator recorded, so a flag that silently
replaced it would make the recorded params lie. Flags are the defaults for
whatever the search space leaves out (and for local runs).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

logger = logging.getLogger("kubetune_trainer")

OPTIMIZERS = ("sgd", "adam")
#: Ray Train's key for the training loop's hyperparameters in a Train + Tune config.
TRAIN_LOOP_CONFIG = "train_loop_config"


@dataclass(frozen=True)
class Hyperparameters:
    """What one trial trains with. `epochs` is ASHA's time attribute (reported as step)."""

    lr: float = 0.05
    batch_size: int = 64
    hidden_size: int = 128
    layers: int = 1
    dropout: float = 0.0
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    epochs: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        _require(self.lr > 0 and math.isfinite(self.lr), "lr", self.lr, "must be > 0")
        _require(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        _require(self.hidden_size >= 1, "hidden_size", self.hidden_size, "must be >= 1")
        _require(self.layers >= 1, "layers", self.layers, "must be >= 1")
        _require(0 <= self.dropout < 1, "dropout", self.dropout, "must be in [0, 1)")
        _require(
            self.optimizer in OPTIMIZERS,
            "optimizer",
            self.optimizer,
            f"must be one of {OPTIMIZERS}",
        )
        _require(0 <= self.momentum < 1, "momentum", self.momentum, "must be in [0, 1)")
        _require(self.weight_decay >= 0, "weight_decay", self.weight_decay, "must be >= 0")
        _require(self.epochs >= 1, "epochs", self.epochs, "must be >= 1")


def _require(ok: bool, name: str, value: object, rule: str) -> None:
    if not ok:
        raise ValueError(f"hyperparameter {name}={value!r} {rule}")


def resolve(config: Mapping[str, Any], flags: Mapping[str, Any]) -> Hyperparameters:
    """Built-in defaults, overridden by the flags given, overridden by the trial config.

    A `train_loop_config` mapping in the config (Ray Train's name for the training
    hyperparameters, next to job-level ones such as `num_workers`) is read as if its
    keys were at the top level, and wins over a top-level key of the same name.
    """
    nested = config.get(TRAIN_LOOP_CONFIG)
    if isinstance(nested, Mapping):
        config = {**{k: v for k, v in config.items() if k != TRAIN_LOOP_CONFIG}, **nested}
    known = {f.name: f for f in fields(Hyperparameters)}
    values: dict[str, Any] = {}
    for name, value in flags.items():
        if name in known and value is not None:
            values[name] = _coerce(name, value, known[name].type)
    for name, value in config.items():
        if name not in known:
            continue
        coerced = _coerce(name, value, known[name].type)
        if name in values and values[name] != coerced:
            logger.warning(
                "hyperparameter %s: the trial config's %r replaces the flag's %r",
                name,
                coerced,
                values[name],
            )
        values[name] = coerced
    ignored = sorted(set(config) - set(known))
    if ignored:
        logger.info("config keys this trainer does not use: %s", ", ".join(ignored))
    return Hyperparameters(**values)


def _coerce(name: str, value: Any, kind: Any) -> Any:
    """JSON numbers arrive as int or float: accept 64.0 for an int, 1 for a float."""
    kind = kind if isinstance(kind, str) else kind.__name__
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ValueError(f"hyperparameter {name}={value!r} must be an integer")
    if kind == "float":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"hyperparameter {name}={value!r} must be a number")
    if not isinstance(value, str):
        raise ValueError(f"hyperparameter {name}={value!r} must be a string")
    return value.lower()
