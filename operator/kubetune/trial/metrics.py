"""What a trial has reported, and the two ways the operator reads it.

Private to `kubetune.trial`. The rung rule (a milestone's value is the one from
the first report at or past it), the Prometheus exposition and the 4 KiB
termination message live here, apart from signals and checkpoints, because
they are the metric contract with the operator and are tested on their own.

Only the standard library, prometheus-client and `kubetune.contract`: this runs
inside trial pods.
"""

from __future__ import annotations

import logging
import numbers
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import make_wsgi_app
from prometheus_client.registry import Collector, CollectorRegistry

from kubetune import contract
from kubetune.contract import TERMINATION_MESSAGE_LIMIT, Rung, encode_termination_message

logger = logging.getLogger("kubetune.trial")


@dataclass
class ReportedState:
    """What the trial has reported: latest step and metrics, rung records, finished or not.

    `version` grows with every change, so the endpoint can tell which state a scrape showed.

    Not thread-safe: the session serialises access with its lock.
    """

    milestones: tuple[int, ...]
    objective: str | None
    step: int | None = None
    latest: dict[str, float] = field(default_factory=dict)
    rungs: dict[int, Rung] = field(default_factory=dict)
    finished: bool = False
    last_report_time: float | None = None
    version: int = 0

    def record(self, step: int, metrics: Mapping[str, float], now: float) -> list[Rung]:
        """Apply one (already validated) report; return the rungs it recorded."""
        self.step = step
        self.latest.update(metrics)
        self.last_report_time = now
        self.version += 1
        new: list[Rung] = []
        for milestone in self.milestones:
            if step < milestone or milestone in self.rungs:
                continue
            if self.objective is None:
                values = dict(metrics)
            elif self.objective in metrics:
                values = {self.objective: metrics[self.objective]}
            else:
                continue  # wait for the first report at/past the milestone that has the objective
            rung = Rung(milestone, step, values)
            self.rungs[milestone] = rung
            new.append(rung)
        return new

    def mark_finished(self) -> None:
        self.finished = True
        self.version += 1


def validate_report(
    step: object, metrics: Mapping[str, object], last_step: int | None
) -> tuple[int, dict[str, float]]:
    """Check a report's arguments; return the step and the metrics as floats.

    Raises TypeError/ValueError with a message naming what was wrong, because a
    bad report would otherwise surface much later as a trial the operator never ranks.
    """
    if step is None:
        raise TypeError(
            "report() needs step=<int>, the time attribute ASHA's milestones count "
            "(e.g. the epoch): report(step=epoch, accuracy=acc)"
        )
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise TypeError(f"report(step=...) must be an int, got {type(step).__name__} {step!r}")
    step_int = int(step)
    if step_int < 0:
        raise ValueError(f"report(step={step_int}): step must be >= 0")
    if last_step is not None and step_int < last_step:
        raise ValueError(
            f"report(step={step_int}): steps must not decrease, the previous report had "
            f"step={last_step}"
        )
    values: dict[str, float] = {}
    for name, value in metrics.items():
        values[name] = _as_float(name, value)
    return step_int, values


def _as_float(name: str, value: object) -> float:
    if isinstance(value, bool | str | bytes) or value is None:
        raise TypeError(f"metric {name!r} must be a number, got {type(value).__name__} {value!r}")
    if isinstance(value, numbers.Real):
        return float(value)
    to_float = getattr(value, "__float__", None)  # one-element tensors and numpy scalars
    if to_float is not None:
        try:
            return float(to_float())
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"metric {name!r} is not a single number: {exc}") from exc
    raise TypeError(f"metric {name!r} must be a number, got {type(value).__name__}")


# --- Prometheus exposition -------------------------------------------------------------


class TrialCollector(Collector):
    """Exposes one consistent snapshot of `ReportedState` per scrape.

    A custom collector rather than Gauge objects, so that a scrape never sees
    half of a report (the step of one report with the metrics of another).
    """

    def __init__(self, snapshot: Callable[[], ReportedState]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterable[Metric]:
        state = self._snapshot()
        if state.step is not None:
            yield GaugeMetricFamily(
                contract.METRIC_STEP, "Step (time attribute) of the latest report.", state.step
            )
        latest = GaugeMetricFamily(
            contract.METRIC_VALUE, "Latest reported value of each metric.", labels=["metric"]
        )
        for name, value in sorted(state.latest.items()):
            latest.add_metric([name], value)
        yield latest
        rung_value = GaugeMetricFamily(
            contract.METRIC_RUNG_VALUE,
            "Value of the metric at the first report at or past each ASHA milestone.",
            labels=["metric", "milestone"],
        )
        rung_step = GaugeMetricFamily(
            contract.METRIC_RUNG_STEP,
            "Step of the first report at or past each ASHA milestone.",
            labels=["milestone"],
        )
        for milestone, rung in sorted(state.rungs.items()):
            rung_step.add_metric([str(milestone)], rung.step)
            for name, value in sorted(rung.values.items()):
                rung_value.add_metric([name, str(milestone)], value)
        yield rung_value
        yield rung_step
        yield GaugeMetricFamily(
            contract.METRIC_FINISHED,
            "1 once the training function has finished normally, else 0.",
            1.0 if state.finished else 0.0,
        )
        if state.last_report_time is not None:
            yield GaugeMetricFamily(
                contract.METRIC_LAST_REPORT,
                "Unix time of the latest report.",
                state.last_report_time,
            )


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("metrics endpoint: " + format, *args)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """One thread per request, so a slow scraper cannot hold up another."""

    daemon_threads = True


class MetricsEndpoint:
    """The trial's /metrics over HTTP, remembering which version a scrape has delivered.

    A scrape counts once its whole body has been handed to the socket, so
    `wait_for_scrape` returning True means Prometheus has the data of that version.
    """

    def __init__(
        self,
        collector: TrialCollector,
        current_version: Callable[[], int],
        port: int,
        address: str,
        port_env_var: str,
    ) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        self._app = make_wsgi_app(registry)
        self._current_version = current_version
        self._delivered = -1
        self._scrapes = 0
        self._changed = threading.Condition()
        try:
            self._server = make_server(
                address,
                port,
                self._serve,
                server_class=_ThreadingWSGIServer,
                handler_class=_QuietHandler,
            )
        except OSError as exc:
            raise MetricsPortError(
                f"cannot serve trial metrics on {address}:{port}: {exc.strerror or exc}. "
                f"Set {port_env_var} to a free port, or to 0 to not serve metrics."
            ) from exc
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="kubetune-metrics",
            daemon=True,
        )
        self._thread.start()

    @property
    def scrapes(self) -> int:
        """Completed scrapes so far."""
        with self._changed:
            return self._scrapes

    def _serve(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterator[bytes]:
        version = self._current_version()  # the scrape shows this version or newer
        status: list[str] = []

        def record_status(code: str, headers: Any, exc_info: Any = None) -> Any:
            status.append(code)
            return start_response(code, headers, exc_info)

        body = self._app(environ, record_status)
        yield from body
        # Reached only after the server wrote the body: the scrape was delivered.
        is_scrape = (
            environ.get("PATH_INFO") != "/favicon.ico" and environ.get("REQUEST_METHOD") == "GET"
        )
        if is_scrape and status and status[0].startswith("200"):
            with self._changed:
                self._scrapes += 1
                self._delivered = max(self._delivered, version)
                self._changed.notify_all()

    def wait_for_scrape(self, version: int, timeout: float, give_up: Callable[[], bool]) -> bool:
        """Block until a scrape delivered `version` (True), `timeout` passes or `give_up()`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._delivered < version:
                left = deadline - time.monotonic()
                if left <= 0 or give_up():
                    return False
                self._changed.wait(min(left, 0.2))
        return True

    def wake(self) -> None:
        """Make a waiter re-check `give_up` now (called from the SIGTERM handler)."""
        with self._changed:
            self._changed.notify_all()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class MetricsPortError(RuntimeError):
    """The metrics port could not be bound (usually: already in use)."""


# --- termination message ---------------------------------------------------------------


def termination_message(state: ReportedState, limit: int = TERMINATION_MESSAGE_LIMIT) -> str:
    """The termination message for `state`: `contract.encode_termination_message`."""
    return encode_termination_message(step=state.step, metrics=state.latest, rungs=state.rungs,
                                      finished=state.finished, objective=state.objective,
                                      limit=limit)
