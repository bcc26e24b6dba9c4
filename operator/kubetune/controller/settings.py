"""The operator's own settings, parsed once at start-up, before any handler is registered.

One frozen dataclass, one attribute docstring per field (its unit, its default
and why), as kopf documents its own settings. The chart sets the environment
variables; `python -m kubetune`'s flags override them (controller/main.py).
Nothing here reads the environment by itself: `from_env` is given a mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from kubetune.contract import ENV_PROMETHEUS_URL

# The operator's own variables, as the chart's Deployment sets them.
ENV_TICK_SECONDS = "KUBETUNE_TICK_SECONDS"
ENV_METRICS_PORT = "KUBETUNE_METRICS_PORT"
ENV_HEALTH_PORT = "KUBETUNE_HEALTH_PORT"
ENV_NAMESPACES = "KUBETUNE_NAMESPACES"


@dataclass(frozen=True)
class OperatorSettings:
    """How this operator process runs: where it reads metrics, how often, what it serves."""

    prometheus_url: str = "http://prometheus:9090"
    """Base URL of the Prometheus that holds the trials' metrics, unless an experiment names
    its own (spec.prometheus.url). Default: the in-cluster service the chart installs.
    $KUBETUNE_PROMETHEUS_URL or --prometheus-url."""

    tick_seconds: float = 2.0
    """Seconds between two reconcile ticks of one experiment. Default 2: a pruned trial's
    GPU is given to the next trial within a few seconds, and a 2,000-trial tick (about
    0.1 s of planning) leaves the operator mostly idle. $KUBETUNE_TICK_SECONDS or --tick."""

    metrics_port: int = 8080
    """Port of the operator's own /metrics (ticks, API writes, query latency). Default 8080,
    the port the chart's ServiceMonitor scrapes. $KUBETUNE_METRICS_PORT or --metrics-port."""

    health_port: int = 8081
    """Port of kopf's /healthz liveness endpoint. Default 8081, next to the metrics port and
    what the chart's livenessProbe calls. $KUBETUNE_HEALTH_PORT or --health-port."""

    namespaces: tuple[str, ...] = ()
    """Namespaces to watch; empty (the default) watches the whole cluster. A namespaced
    install needs only a Role in each. $KUBETUNE_NAMESPACES (comma-separated) or
    repeated --namespace."""

    kubeconfig: str | None = None
    """A kubeconfig file to use instead of the in-cluster service account (then
    $KUBECONFIG, then ~/.kube/config). Default None: inside the cluster no file is
    needed. --kubeconfig."""

    verbose: bool = False
    """Log at DEBUG rather than INFO. Default False: kopf's debug log names every watch
    event, too much for a long experiment. --verbose."""

    @property
    def retry_seconds(self) -> float:
        """Seconds before a tick that failed is first retried: twice a tick, at least 5 s, so
        an apiserver outage is not hammered."""
        return max(5.0, 2 * self.tick_seconds)

    @property
    def max_retry_seconds(self) -> float:
        """The longest wait before retrying a tick that keeps failing (the wait doubles from
        retry_seconds): a minute, so an outage that ends is noticed within one."""
        return max(60.0, self.retry_seconds)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OperatorSettings:
        """The settings the environment gives (the chart's); unset variables keep defaults.

        Raises ValueError naming the variable whose value is not a number.
        """
        namespaces = tuple(n for n in env.get(ENV_NAMESPACES, "").split(",") if n)
        return cls(
            prometheus_url=env.get(ENV_PROMETHEUS_URL, cls.prometheus_url),
            tick_seconds=_number(env, ENV_TICK_SECONDS, float, cls.tick_seconds),
            metrics_port=_number(env, ENV_METRICS_PORT, int, cls.metrics_port),
            health_port=_number(env, ENV_HEALTH_PORT, int, cls.health_port),
            namespaces=namespaces,
        )


_Number = TypeVar("_Number", int, float)


def _number(env: Mapping[str, str], name: str, kind: type[_Number], default: _Number) -> _Number:
    text = env.get(name)
    if text is None:
        return default
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"${name} must be {'an integer' if kind is int else 'a number'}, "
                         f"got {text!r}") from None
