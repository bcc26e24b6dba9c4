"""One trial's reporting session: what it reported, its /metrics endpoint, SIGTERM, checkpoints.

Imported inside trial pods (stdlib, prometheus-client and `kubetune.contract`
only). `kubetune.trial`'s module functions drive one default `Session`; tests and
embedders make their own. How SIGTERM stops a trial is told in `kubetune.trial`.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import dataclasses
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from kubetune.contract import ENV_METRICS_PORT, ENV_TERMINATION_LOG
from kubetune.trial.checkpoints import (
    Checkpoint,
    load_rungs,
    resume_checkpoint,
    save_rungs,
    staged_checkpoint,
)
from kubetune.trial.metrics import (
    MetricsEndpoint,
    ReportedState,
    TrialCollector,
    termination_message,
    validate_report,
)
from kubetune.trial.settings import TrialSettings

logger = logging.getLogger("kubetune.trial")


class TrialStopped(SystemExit):
    """Raised in the main thread after SIGTERM: the trial stops cleanly, exit code 0."""

    def __init__(self) -> None:
        super().__init__(0)


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
        self._state = ReportedState(self.settings.milestones, self.settings.metric)
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
        """Mark the trial finished and write the termination message; then, when
        `linger_seconds` is set (default 0), serve /metrics until a scrape after the change."""
        if self._closed:
            return
        if self._stop.is_set():  # the pod is being deleted: the run did not complete
            self._abandon()
            return
        self.start()
        with self._lock:
            if self._state.finished:
                return
            self._state.mark_finished()
            version = self._state.version
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
            if self._state.finished or self._closed:
                raise RuntimeError("report() after finish(): the trial is already finished")
            step_int, values = validate_report(step, metrics, self._state.step)
            new_rungs = self._state.record(step_int, values, time.time())
            if new_rungs:
                self._persist_rungs()
            self._write_termination_message()
        logger.debug("report step=%d %s", step_int, values)

    @property
    def last_step(self) -> int | None:
        """The step of the latest report in this process, None before the first."""
        with self._lock:
            return self._state.step

    def should_stop(self) -> bool:
        """True once SIGTERM arrived: the pod is being deleted (e.g. ASHA pruned the trial)."""
        return self._stop.is_set()

    def request_stop(self) -> None:
        """What SIGTERM does to a trial, from any thread: `should_stop()` turns True, the
        termination message is written at once, a lingering `finish()` ends, and the next
        `report()` raises `TrialStopped`. For hosts that run trials as threads."""
        first = not self._stop.is_set()
        self._stop.set()
        endpoint = self._endpoint
        if endpoint is not None:
            endpoint.wake()
        if first:
            with self._lock:
                if self._started and not self._closed:
                    self._write_termination_message()

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
        return resume_checkpoint(self.checkpoint_dir(), self.settings.start_checkpoint)

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
        with self._stop_deferred(), staged_checkpoint(
            root, step, keep, self.settings.keep_checkpoint_steps
        ) as staging:
            yield staging

    # --- internals ---------------------------------------------------------------------

    def _snapshot(self) -> ReportedState:
        with self._lock:
            m = self._state
            return dataclasses.replace(m, latest=dict(m.latest), rungs=dict(m.rungs))

    def _version(self) -> int:
        with self._lock:
            return self._state.version

    def _write_termination_message(self) -> None:
        with self._lock:
            if self._writing_message:  # SIGTERM landed inside a write of the same content
                return
            self._writing_message = True
            try:
                text = termination_message(self._state)
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
        if self.settings.checkpoint_dir is not None:
            save_rungs(self.checkpoint_dir(), self._state.rungs)

    def _restore_rungs(self) -> None:
        if self.settings.checkpoint_dir is None:
            return
        restored = load_rungs(self.settings.checkpoint_dir, self.settings.milestones)
        if restored:
            logger.info("rungs reached by an earlier attempt: %s", sorted(restored))
        self._state.rungs.update(restored)

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
            logger.info("SIGTERM: stopping the trial at step %s", self._state.step)
            if not self._critical:  # inside report() the message is written when it returns
                self._write_termination_message()
            _arm_backstop(self.settings.stop_grace_seconds)
        if self._closed or self._state.finished:
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
