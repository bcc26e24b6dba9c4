"""What a training script calls inside a trial pod, shaped like Ray Tune's session API.

    from kubetune import trial

    cfg = trial.config()                        # the hyperparameters of this trial
    ckpt = trial.get_checkpoint()               # a retried trial resumes here
    start = ckpt.step + 1 if ckpt else 1
    for epoch in range(start, cfg["epochs"] + 1):
        ...
        trial.report(step=epoch, accuracy=acc, loss=loss)
        with trial.save_checkpoint(step=epoch) as path:
            torch.save(state, path / "state.pt")

The operator reads what `report()` exposes from Prometheus (see `kubetune.trial.metrics`)
and deletes the pods that ASHA prunes. Environment, set on the trial pod
(read by `TrialSettings.from_env()`):

    KUBETUNE_CONFIG            JSON object of hyperparameters ({} if unset)
    KUBETUNE_EXPERIMENT        experiment name (informational)
    KUBETUNE_TRIAL             trial name (informational)
    KUBETUNE_METRICS_PORT      port of the /metrics endpoint; default 8000, 0 = do not serve
    KUBETUNE_MILESTONES        comma-separated ASHA milestones (steps), may be empty
    KUBETUNE_METRIC            objective metric; rung gauges are kept for it only
                               (unset: for every reported metric)
    KUBETUNE_CHECKPOINT_DIR    this trial's checkpoint directory, kept across retries
                               (unset: a fresh temporary directory, so nothing resumes)
    KUBETUNE_START_CHECKPOINT  a step-<n> checkpoint of another trial (a PBT donor's):
                               get_checkpoint() returns it until this trial saves its own
    KUBETUNE_KEEP_CHECKPOINT_STEPS comma-separated steps whose checkpoints save_checkpoint
                               never prunes (other trials may clone them)
    KUBETUNE_TERMINATION_LOG   default /dev/termination-log
    KUBETUNE_LINGER_SECONDS    default 0: how long finish() keeps serving /metrics for a
                               final scrape (the termination message has the result)
    KUBETUNE_STOP_GRACE_SECONDS default 5: after SIGTERM, the process is ended this
                               much later if it has not exited by itself

SIGTERM (a pruned trial's pod is being deleted, or its node drained): the
handler writes the termination message with the latest metrics at once, then
raises `TrialStopped` (a `SystemExit` with code 0, so `except Exception` does not
swallow it) in the main thread, so a loop busy inside a long epoch stops at its
next Python bytecode. Inside `save_checkpoint()` the raise waits until the
checkpoint is complete. If the process is still alive `KUBETUNE_STOP_GRACE_SECONDS`
after the signal (the exception was swallowed, or a C call is stuck), it ends with
`os._exit(0)`; nothing is lost, as the termination message was already written.
Python is often PID 1 in a container, where SIGTERM without a handler is ignored:
the handler is installed by the first call to this module's functions.

At the end, `finish()` (called for you at normal interpreter exit, or by
`with Session(...)`) writes the final termination message with `"finished": true`
and returns, so the pod ends (and frees its GPU) as soon as training does: the
operator records the final step and metrics from that message on the TuneTrial,
and the client's curves (`kubetune plot`, `export`, `ResultGrid`) take their last
point from there when Prometheus never scraped it. With `KUBETUNE_LINGER_SECONDS`
set, it keeps serving /metrics until Prometheus has scraped it once after the last
change, or that many seconds pass. A crash or a stop writes `"finished": false`
and does not linger.

Imported inside the trial pod, where `pip install kubetune` brings only
prometheus-client: this package imports nothing but the standard library,
prometheus-client and `kubetune.contract` (an import-linter contract checks it).
Modules: `settings` (the environment), `session` (one trial's state, endpoint and
signals), `metrics` (what was reported and how the operator reads it),
`checkpoints` (the checkpoint directory and rungs across retries), `tune_api`
(Ray's in-trial calls, `kubetune.tune.report` and friends, with the step counted as
`training_iteration`), `launch` (`python -m kubetune.trial.launch`, which runs a
function shipped by `kubetune.Tuner(train_fn)`).
"""


from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

from kubetune.contract import decode_termination_message as parse_termination_message
from kubetune.trial.checkpoints import Checkpoint
from kubetune.trial.metrics import MetricsPortError
from kubetune.trial.session import Session, TrialStopped
from kubetune.trial.settings import TrialSettings

__all__ = [
    "Checkpoint",
    "MetricsPortError",
    "Session",
    "TrialSettings",
    "TrialStopped",
    "checkpoint_dir",
    "config",
    "finish",
    "get_checkpoint",
    "get_session",
    "parse_termination_message",
    "report",
    "save_checkpoint",
    "should_stop",
]


# --- the default session, as in ray.train ------------------------------------------------

_default_session: Session | None = None
_default_lock = threading.Lock()


def get_session() -> Session:
    """The process's session, made from the environment on first use and started."""
    global _default_session
    with _default_lock:
        if _default_session is None:
            _default_session = Session(
                TrialSettings.from_env(), handle_signals=True, finish_at_exit=True
            )
        session = _default_session
    return session.start()


def config() -> dict[str, Any]:
    """This trial's hyperparameters, from KUBETUNE_CONFIG."""
    return get_session().config()


def report(*args: object, step: int | None = None, **metrics: float) -> None:
    """Report metrics at `step`: `report(step=epoch, accuracy=acc, loss=loss)`."""
    get_session().report(*args, step=step, **metrics)


def should_stop() -> bool:
    """True once the pod has been asked to terminate (SIGTERM)."""
    return get_session().should_stop()


def checkpoint_dir() -> Path:
    """This trial's checkpoint directory (KUBETUNE_CHECKPOINT_DIR), created on demand."""
    return get_session().checkpoint_dir()


def get_checkpoint() -> Checkpoint | None:
    """The latest complete checkpoint, or None: resume from `.step + 1`."""
    return get_session().get_checkpoint()


def save_checkpoint(step: int, *, keep: int = 2) -> contextlib.AbstractContextManager[Path]:
    """`with save_checkpoint(step=epoch) as path:` write files into `path`."""
    return get_session().save_checkpoint(step, keep=keep)


def finish() -> None:
    """Finish now (otherwise done at interpreter exit): the final termination message (and a
    linger for a last scrape when KUBETUNE_LINGER_SECONDS is set)."""
    get_session().finish()
