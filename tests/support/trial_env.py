"""The environment a trial process gets from the operator, for tests that run one locally."""

from __future__ import annotations

import os
from pathlib import Path

from kubetune import contract


def trial_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This process's env plus a free metrics port, a termination log and a checkpoint dir."""
    env = dict(os.environ)
    env.update({
        contract.ENV_METRICS_PORT: "0",
        contract.ENV_TERMINATION_LOG: str(tmp_path / "termination-log"),
        contract.ENV_CHECKPOINT_DIR: str(tmp_path / "ckpt"),
        contract.ENV_LINGER_SECONDS: "0",
    })
    env.update(extra)
    return env


def reported_step(log: Path) -> int | None:
    """The step in the termination message a running trial last wrote; None before its first.

    The trial rewrites the file in place (the kubelet bind-mounts it), so a read can land
    between its truncation and its write: such a read counts as no message yet.
    """
    try:
        return int(contract.decode_termination_message(log.read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
