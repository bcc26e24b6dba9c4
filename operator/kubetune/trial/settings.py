"""A trial's settings, read once from the environment the operator sets on the trial pod.

Imported inside trial pods (stdlib and `kubetune.contract` only). Parsed into a
frozen dataclass up front, so a malformed variable fails the trial at its first
call with a message naming the variable, not at some later report.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubetune.contract import (
    ENV_CHECKPOINT_DIR,
    ENV_CONFIG,
    ENV_EXPERIMENT,
    ENV_KEEP_CHECKPOINT_STEPS,
    ENV_LINGER_SECONDS,
    ENV_METRIC,
    ENV_METRICS_PORT,
    ENV_MILESTONES,
    ENV_START_CHECKPOINT,
    ENV_STOP_GRACE_SECONDS,
    ENV_TERMINATION_LOG,
    ENV_TRIAL,
)


@dataclass(frozen=True)
class TrialSettings:
    """Everything a session needs; `from_env()` reads the pod's environment."""

    config: Mapping[str, Any] = field(default_factory=dict)
    experiment: str = ""
    trial: str = ""
    metrics_port: int = 8000
    metrics_address: str = "0.0.0.0"
    milestones: tuple[int, ...] = ()
    metric: str | None = None
    checkpoint_dir: Path | None = None
    start_checkpoint: Path | None = None
    """Another trial's checkpoint to start from while checkpoint_dir has none (a PBT donor's)."""
    keep_checkpoint_steps: tuple[int, ...] = ()
    """Steps whose checkpoints are never pruned: other trials may clone them."""
    termination_log: Path = Path("/dev/termination-log")
    linger_seconds: float = 0.0
    """How long finish() keeps serving /metrics for a final scrape: 0 by default, since the
    final report is in the termination message, which the operator records on the TuneTrial."""
    stop_grace_seconds: float = 5.0

    def __post_init__(self) -> None:
        if not 0 <= self.metrics_port <= 65535:
            raise ValueError(f"metrics port {self.metrics_port} is not in 0..65535")
        if any(m < 0 for m in self.milestones):
            raise ValueError(f"milestones must be >= 0, got {list(self.milestones)}")
        if self.linger_seconds < 0 or self.stop_grace_seconds < 0:
            raise ValueError("linger and stop grace seconds must be >= 0")
        object.__setattr__(self, "milestones", tuple(sorted(set(self.milestones))))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TrialSettings:
        env = os.environ if environ is None else environ
        checkpoint_dir = env.get(ENV_CHECKPOINT_DIR, "")
        start_checkpoint = env.get(ENV_START_CHECKPOINT, "")
        return cls(
            config=_parse_config(env.get(ENV_CONFIG, "")),
            experiment=env.get(ENV_EXPERIMENT, ""),
            trial=env.get(ENV_TRIAL, ""),
            metrics_port=_parse_port(env),
            milestones=_parse_milestones(env.get(ENV_MILESTONES, "")),
            metric=env.get(ENV_METRIC) or None,
            checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir else None,
            start_checkpoint=Path(start_checkpoint) if start_checkpoint else None,
            keep_checkpoint_steps=_parse_steps(
                ENV_KEEP_CHECKPOINT_STEPS, env.get(ENV_KEEP_CHECKPOINT_STEPS, "")),
            termination_log=Path(env.get(ENV_TERMINATION_LOG) or "/dev/termination-log"),
            linger_seconds=_parse_number(env, ENV_LINGER_SECONDS, 0.0),
            stop_grace_seconds=_parse_number(env, ENV_STOP_GRACE_SECONDS, 5.0),
        )


def _parse_config(text: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{ENV_CONFIG} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError(f"{ENV_CONFIG} must be a JSON object, got {type(value).__name__}")
    return value


def _parse_milestones(text: str) -> tuple[int, ...]:
    return _parse_steps(ENV_MILESTONES, text)


def _parse_steps(name: str, text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ValueError(f"{name} must be comma-separated integers, got {text!r}") from exc


def _parse_number(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        return float(text)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number of seconds, got {text!r}") from exc


def _parse_port(env: Mapping[str, str]) -> int:
    text = env.get(ENV_METRICS_PORT, "").strip()
    if not text:
        return 8000
    try:
        return int(text)
    except ValueError as exc:
        raise ValueError(f"{ENV_METRICS_PORT} must be a port number, got {text!r}") from exc
