"""Simulated trials as threads of one host process: the trial side of the dev cluster's farm.

`FarmedTrial(argv, env, log_file)` runs what `python -m kubetune_trainer --dataset
simulated ...` runs in a process of its own, with the same arguments and environment:
the same argument parsing, a `kubetune.trial` session made from that environment (its
/metrics on KUBETUNE_METRICS_PORT, its rungs, its termination message, its checkpoints
and linger), the same curve (`simulated`), and the exit code the process would have:
0 when it finished or was stopped, 1 with the traceback in its log when it raised, 2
for arguments the parser refuses. `stop()` is SIGTERM to it (the epoch's wait is cut
short and the trial ends as `TrialStopped` ends a process); `kill()` is SIGKILL (exit
code 137, its /metrics stop at once). Its log lines (at its --log-level) go to
`log_file`, as the process's output would.
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path

from kubetune.trial import Session, TrialSettings, TrialStopped
from kubetune_trainer.__main__ import _HYPERPARAMETER_FLAGS, _log_done, build_parser
from kubetune_trainer.hyperparameters import resolve
from kubetune_trainer.simulated import run_simulated

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_LOGGERS = ("kubetune_trainer", "kubetune.trial")


class _PodLogs(logging.Handler):
    """Sends each trial thread's log records to its pod's log file, at its level."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(_FORMAT))
        self.by_thread: dict[int, tuple[Path, int]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        target = self.by_thread.get(record.thread or 0)
        if target is None or record.levelno < target[1]:
            return
        with contextlib.suppress(OSError), open(target[0], "a", encoding="utf-8") as out:
            out.write(self.format(record) + "\n")


_pod_logs = _PodLogs()
_install_lock = threading.Lock()
_installed = False


def _install_pod_logs() -> None:
    global _installed
    with _install_lock:
        if _installed:
            return
        for name in _LOGGERS:
            logger = logging.getLogger(name)
            logger.addHandler(_pod_logs)
            logger.setLevel(logging.INFO)
            logger.propagate = False  # the host's own log gets none of its trials' lines
        _installed = True


class FarmedTrial:
    """One simulated trial run in a thread; see the module docstring."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], log_file: Path) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.log_file = log_file
        self.exit_code: int | None = None
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._session: Session | None = None
        self._thread = threading.Thread(target=self._main, name="farmed-trial", daemon=True)

    def start(self) -> FarmedTrial:
        _install_pod_logs()
        self._thread.start()
        return self

    def stop(self) -> None:
        """SIGTERM: the trial stops at its next report or wait, its message written now."""
        self._stopped.set()
        with self._lock:
            session = self._session
        if session is not None:
            session.request_stop()

    def kill(self) -> None:
        """SIGKILL: ends the trial now with exit code 137 (nothing more is written)."""
        with self._lock:
            if self.exit_code is not None:
                return
            self.exit_code = 137
            session, self._session = self._session, None
        self._stopped.set()
        if session is not None:
            session.close()

    def _end(self, code: int) -> None:
        with self._lock:
            if self.exit_code is None:
                self.exit_code = code
            self._session = None

    def _write(self, text: str) -> None:
        with contextlib.suppress(OSError), open(self.log_file, "a", encoding="utf-8") as out:
            out.write(text)

    def _sleep(self, seconds: float) -> None:
        if self._stopped.wait(seconds):
            raise TrialStopped()

    def _main(self) -> None:
        parser, usage = build_parser(), io.StringIO()
        # What the parser would print to the process's stderr (sys.stderr is the host's).
        setattr(parser, "_print_message",  # noqa: B010 (a method: mypy refuses assigning it)
                lambda message, file=None: usage.write(message or ""))
        try:
            args = parser.parse_args(self.argv)
        except SystemExit as exc:
            self._write(usage.getvalue())
            self._end(exc.code if isinstance(exc.code, int) else 2)
            return
        _pod_logs.by_thread[threading.get_ident()] = (self.log_file,
                                                      logging.getLevelName(args.log_level.upper()))
        try:
            if args.dataset != "simulated":
                raise ValueError(f"the trial farm runs only --dataset simulated, "
                                 f"not --dataset {args.dataset}")
            with Session(TrialSettings.from_env(self.env)) as session:
                with self._lock:
                    if self.exit_code is not None:  # killed before it started
                        return
                    self._session = session
                if self._stopped.is_set():
                    session.request_stop()
                config = session.config()
                hp = resolve(config, {name: getattr(args, name) for name in _HYPERPARAMETER_FLAGS})
                results = run_simulated(hp, session, seconds_per_step=args.seconds_per_step,
                                        config=config, sleep=self._sleep)
                _log_done(results)
                session.finish()
            self._end(0)
        except SystemExit as exc:  # TrialStopped: exit code 0, as in a process
            self._end(exc.code if isinstance(exc.code, int) else 1)
        except BaseException:
            if self.exit_code is None:  # not after a kill: a process would say nothing more
                self._write(traceback.format_exc())
            self._end(1)
        finally:
            _pod_logs.by_thread.pop(threading.get_ident(), None)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
