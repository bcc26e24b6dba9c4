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

The operator reads what `report()` exposes from Prometheus (see `_trial_metrics`)
and deletes the pods that ASHA prunes. Environment, set on the trial pod:

    KUBETUNE_CONFIG            JSON object of hyperparameters ({} if unset)
    KUBETUNE_EXPERIMENT        experiment name (informational)
    KUBETUNE_TRIAL             trial name (informational)
    KUBETUNE_METRICS_PORT      port of the /metrics endpoint; default 8000, 0 = do not serve
    KUBETUNE_MILESTONES        comma-separated ASHA milestones (steps), may be empty
    KUBETUNE_METRIC            objective metric; rung gauges are kept for it only
                               (unset: for every reported metric)
    KUBETUNE_CHECKPOINT_DIR    this trial's checkpoint directory, kept across retries
                               (unset: a fresh temporary directory, so nothing resumes)
    KUBETUNE_TERMINATION_LOG   default /dev/termination-log
    KUBETUNE_LINGER_SECONDS    default 30: how long finish() waits for a final scrape
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
and keeps serving /metrics until Prometheus has scraped it once after the last
change, or the linger time passes. A crash or a stop writes `"finished": false`
and does not linger.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import dataclasses
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from kubetune.contract import (
    ENV_CHECKPOINT_DIR,
    ENV_CONFIG,
    ENV_EXPERIMENT,
    ENV_LINGER_SECONDS,
    ENV_METRIC,
    ENV_METRICS_PORT,
    ENV_MILESTONES,
    ENV_STOP_GRACE_SECONDS,
    ENV_TERMINATION_LOG,
    ENV_TRIAL,
)
from kubetune.contract import decode_termination_message as parse_termination_message
from kubetune.trial.metrics import (
    MetricsEndpoint,
    MetricsPortError,
    TrialCollector,
    TrialMetrics,
    rungs_from_json,
    rungs_to_json,
    termination_message,
    validate_report,
)

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

logger = logging.getLogger("kubetune.trial")


#: Rung records of earlier attempts, kept in the checkpoint directory so that a
#: retried trial reports the rungs its first attempt reached, not later values.
RUNGS_FILE = ".kubetune-rungs.json"
_CHECKPOINT_NAME = re.compile(r"step-(\d+)")


class TrialStopped(SystemExit):
    """Raised in the main thread after SIGTERM: the trial stops cleanly, exit code 0."""

    def __init__(self) -> None:
        super().__init__(0)


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint: the directory `save_checkpoint(step)` filled, and that step."""

    path: Path
    step: int


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
    termination_log: Path = Path("/dev/termination-log")
    linger_seconds: float = 30.0
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
        return cls(
            config=_parse_config(env.get(ENV_CONFIG, "")),
            experiment=env.get(ENV_EXPERIMENT, ""),
            trial=env.get(ENV_TRIAL, ""),
            metrics_port=_parse_port(env),
            milestones=_parse_milestones(env.get(ENV_MILESTONES, "")),
            metric=env.get(ENV_METRIC) or None,
            checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir else None,
            termination_log=Path(env.get(ENV_TERMINATION_LOG) or "/dev/termination-log"),
            linger_seconds=_parse_number(env, ENV_LINGER_SECONDS, 30.0),
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
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ValueError(
            f"{ENV_MILESTONES} must be comma-separated integers, got {text!r}"
        ) from exc


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


class Session:
    """One trial's reporting state: metrics, /metrics endpoint, checkpoints, stop flag.

    The module functions use one default session made from the environment
    (with signal handling and finish-at-exit). Tests and embedders make their own:
    `with Session(TrialSettings(metrics_port=0, ...)) as session: ...`.
    """

    def __init__(
        self,
        settings: TrialSettings | None = None,
        *,
        handle_signals: bool = False,
        finish_at_exit: bool = False,
    ) -> None:
        self.settings = settings if settings is not None else TrialSettings.from_env()
        self._handle_signals = handle_signals
        self._finish_at_exit = finish_at_exit
        self._lock = threading.RLock()  # reentrant: the SIGTERM handler runs on the main thread
        self._metrics = TrialMetrics(self.settings.milestones, self.settings.metric)
        self._endpoint: MetricsEndpoint | None = None
        self._started = False
        self._closed = False
        self._stop = threading.Event()
        self._stop_pending = False
        self._critical = 0
        self._writing_message = False
        self._warned_log = False
        self._previous_sigterm: Any = None
        self._checkpoint_dir: Path | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> Session:
        """Serve /metrics and install handlers; idempotent, and done by the first report."""
        with self._lock:
            if self._started:
                return self
            if self._closed:
                raise RuntimeError("this trial session is closed")
            self._restore_rungs()
            port = self.settings.metrics_port
            if port:
                self._endpoint = MetricsEndpoint(
                    TrialCollector(self._snapshot),
                    self._version,
                    port,
                    self.settings.metrics_address,
                    ENV_METRICS_PORT,
                )
            self._started = True
        if self._handle_signals:
            self._install_sigterm_handler()
        if self._finish_at_exit:
            atexit.register(self._at_exit)
        logger.info(
            "trial %s: metrics %s, milestones %s",
            self.settings.trial or "(local)",
            f"on port {self.metrics_port}" if self.metrics_port else "not served",
            list(self.settings.milestones) or "none",
        )
        return self

    @property
    def metrics_port(self) -> int | None:
        """The port /metrics is served on (useful when 0 was asked of the OS in tests)."""
        return self._endpoint.port if self._endpoint is not None else None

    def finish(self) -> None:
        """Mark the trial finished, write the termination message, linger for a final scrape."""
        if self._closed:
            return
        if self._stop.is_set():  # the pod is being deleted: the run did not complete
            self._abandon()
            return
        self.start()
        with self._lock:
            if self._metrics.finished:
                return
            self._metrics.mark_finished()
            version = self._metrics.version
        self._write_termination_message()
        endpoint, linger = self._endpoint, self.settings.linger_seconds
        if endpoint is not None and linger > 0 and not self._stop.is_set():
            logger.info("waiting up to %.0fs for Prometheus to scrape the final metrics", linger)
            if not endpoint.wait_for_scrape(version, linger, self._stop.is_set):
                logger.info("no scrape of the final metrics; the termination message has them")
        self.close()

    def close(self) -> None:
        """Stop serving and restore the previous SIGTERM handler; no message is written."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            endpoint, self._endpoint = self._endpoint, None
        if endpoint is not None:
            endpoint.close()
        if (
            self._previous_sigterm is not None
            and threading.current_thread() is threading.main_thread()
        ):
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None
        if self._finish_at_exit:
            atexit.unregister(self._at_exit)

    def _abandon(self) -> None:
        """End without finishing (stopped or crashed): message with finished=false, no linger."""
        if self._closed:
            return
        if self._started:
            self._write_termination_message()
        self.close()

    def _at_exit(self) -> None:
        crashed = getattr(sys, "last_value", None) is not None  # set for an uncaught exception
        if self._stop.is_set() or crashed:
            self._abandon()
        else:
            self.finish()

    def __enter__(self) -> Session:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self.finish()
        else:
            self._abandon()

    # --- the API -----------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """This trial's hyperparameters (a copy: changing it changes nothing)."""
        return copy.deepcopy(dict(self.settings.config))

    def report(self, *args: object, step: int | None = None, **metrics: float) -> None:
        """Report metrics at `step` (the time attribute ASHA counts, e.g. the epoch)."""
        if args:
            raise TypeError(
                "report() takes metrics as keyword arguments with a step: "
                "report(step=epoch, accuracy=0.9, loss=0.3)"
            )
        self.start()
        if self._stop.is_set():
            raise TrialStopped()
        # A SIGTERM during the update stops the trial right after it, never half-way.
        with self._stop_deferred(), self._lock:
            if self._metrics.finished or self._closed:
                raise RuntimeError("report() after finish(): the trial is already finished")
            step_int, values = validate_report(step, metrics, self._metrics.step)
            new_rungs = self._metrics.record(step_int, values, time.time())
            if new_rungs:
                self._persist_rungs()
            self._write_termination_message()
        logger.debug("report step=%d %s", step_int, values)

    def should_stop(self) -> bool:
        """True once SIGTERM arrived: the pod is being deleted (e.g. ASHA pruned the trial)."""
        return self._stop.is_set()

    def checkpoint_dir(self) -> Path:
        """This trial's checkpoint directory, created on demand."""
        with self._lock:
            if self._checkpoint_dir is None:
                configured = self.settings.checkpoint_dir
                if configured is None:
                    path = Path(tempfile.mkdtemp(prefix="kubetune-checkpoints-"))
                else:
                    path = configured
                    path.mkdir(parents=True, exist_ok=True)
                self._checkpoint_dir = path
            return self._checkpoint_dir

    def get_checkpoint(self) -> Checkpoint | None:
        """The complete checkpoint with the highest step, or None for a fresh trial."""
        latest: Checkpoint | None = None
        for child in self.checkpoint_dir().iterdir():
            match = _CHECKPOINT_NAME.fullmatch(child.name)
            if match and child.is_dir():
                step = int(match.group(1))
                if latest is None or step > latest.step:
                    latest = Checkpoint(child, step)
        return latest

    @contextlib.contextmanager
    def save_checkpoint(self, step: int, *, keep: int = 2) -> Iterator[Path]:
        """Yield an empty directory to write a checkpoint into; publish it atomically on exit.

        It becomes `step-<step>` in `checkpoint_dir()` only when the block ends
        without error, so `get_checkpoint()` never returns a half-written one. The
        `keep` highest steps are kept. A SIGTERM inside the block stops the trial
        right after it.
        """
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"save_checkpoint(step={step!r}): step must be an int >= 0")
        if keep < 1:
            raise ValueError(f"save_checkpoint(keep={keep}): keep at least 1 checkpoint")
        root = self.checkpoint_dir()
        with self._stop_deferred():
            staging = Path(tempfile.mkdtemp(prefix=f".staging-{step}-", dir=root))
            try:
                yield staging
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            _publish(staging, root / f"step-{step:08d}")
            _prune(root, keep)

    # --- internals ---------------------------------------------------------------------

    def _snapshot(self) -> TrialMetrics:
        with self._lock:
            m = self._metrics
            return dataclasses.replace(m, latest=dict(m.latest), rungs=dict(m.rungs))

    def _version(self) -> int:
        with self._lock:
            return self._metrics.version

    def _write_termination_message(self) -> None:
        with self._lock:
            if self._writing_message:  # SIGTERM landed inside a write of the same content
                return
            self._writing_message = True
            try:
                text = termination_message(self._metrics)
                # In place, not rename: kubelet bind-mounts this file into the container.
                with open(self.settings.termination_log, "w", encoding="utf-8") as log:
                    log.write(text)
            except OSError as exc:
                if not self._warned_log:
                    self._warned_log = True
                    logger.warning(
                        "cannot write the termination message to %s (%s); set %s",
                        self.settings.termination_log,
                        exc,
                        ENV_TERMINATION_LOG,
                    )
            finally:
                self._writing_message = False

    def _persist_rungs(self) -> None:
        if self.settings.checkpoint_dir is None:
            return
        path = self.checkpoint_dir() / RUNGS_FILE
        tmp = path.with_name(f"{RUNGS_FILE}.{os.getpid()}.tmp")
        try:
            tmp.write_text(rungs_to_json(self._metrics.rungs), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            logger.warning("cannot save rung records to %s: %s", path, exc)

    def _restore_rungs(self) -> None:
        if self.settings.checkpoint_dir is None:
            return
        path = self.settings.checkpoint_dir / RUNGS_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except OSError as exc:
            logger.warning("cannot read rung records from %s: %s", path, exc)
            return
        try:
            restored = rungs_from_json(text, self.settings.milestones)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            logger.warning("ignoring unreadable rung records in %s: %s", path, exc)
            return
        if restored:
            logger.info("rungs reached by an earlier attempt: %s", sorted(restored))
        self._metrics.rungs.update(restored)

    @contextlib.contextmanager
    def _stop_deferred(self) -> Iterator[None]:
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1
            if self._critical == 0 and self._stop_pending:
                self._stop_pending = False
                raise TrialStopped()

    def _install_sigterm_handler(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            logger.warning("kubetune.trial first used off the main thread: SIGTERM not handled")
            return
        self._previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        first = not self._stop.is_set()
        self._stop.set()
        endpoint = self._endpoint
        if endpoint is not None:
            endpoint.wake()
        if first:
            logger.info("SIGTERM: stopping the trial at step %s", self._metrics.step)
            if not self._critical:  # inside report() the message is written when it returns
                self._write_termination_message()
            _arm_backstop(self.settings.stop_grace_seconds)
        if self._closed or self._metrics.finished:
            return  # finishing or done: let the linger end, no exception
        if self._critical:
            self._stop_pending = True
            return
        raise TrialStopped()


def _arm_backstop(grace: float) -> None:
    """End the process `grace` seconds from now unless it exited by itself."""

    def end() -> None:
        # os.write, not logging: a lock held by a stuck main thread must not block the exit.
        os.write(2, b"kubetune.trial: still running after SIGTERM grace; exiting\n")
        os._exit(0)

    timer = threading.Timer(grace, end)
    timer.daemon = True
    timer.start()


def _publish(staging: Path, target: Path) -> None:
    """Rename `staging` to `target` atomically, replacing an older checkpoint of that step."""
    if target.exists():
        old = target.with_name(f".replaced-{target.name}-{os.getpid()}")
        os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)


def _prune(root: Path, keep: int) -> None:
    """Keep the `keep` highest-step checkpoints; remove leftovers of interrupted saves."""
    complete: list[tuple[int, Path]] = []
    for child in root.iterdir():
        match = _CHECKPOINT_NAME.fullmatch(child.name)
        if match and child.is_dir():
            complete.append((int(match.group(1)), child))
        elif child.name.startswith((".staging-", ".replaced-")):
            shutil.rmtree(child, ignore_errors=True)
    for _, path in sorted(complete, reverse=True)[keep:]:
        shutil.rmtree(path, ignore_errors=True)


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
    """Finish now (otherwise done at interpreter exit): final message, linger for a scrape."""
    get_session().finish()
