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
ENV_EXPERIMENT_PROMETHEUS_PREFIXES = "KUBETUNE_EXPERIMENT_PROMETHEUS_URL_PREFIXES"
ENV_LEADER_ELECTION = "KUBETUNE_LEADER_ELECTION"
ENV_LEASE_NAME = "KUBETUNE_LEASE_NAME"
ENV_LEASE_NAMESPACE = "KUBETUNE_LEASE_NAMESPACE"
ENV_LEASE_DURATION = "KUBETUNE_LEASE_DURATION_SECONDS"
ENV_RENEW_DEADLINE = "KUBETUNE_LEASE_RENEW_DEADLINE_SECONDS"
ENV_RETRY_PERIOD = "KUBETUNE_LEASE_RETRY_PERIOD_SECONDS"
ENV_IDENTITY = "KUBETUNE_POD_NAME"

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


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

    experiment_prometheus_prefixes: tuple[str, ...] = ()
    """URL prefixes an experiment's own Prometheus (spec.prometheus.url) may start with
    (scheme, host and port exactly, then whole path segments). Empty, the default: only the
    operator's own Prometheus is read, since otherwise whoever may create an experiment
    could make the operator request any address from inside the cluster.
    $KUBETUNE_EXPERIMENT_PROMETHEUS_URL_PREFIXES (comma-separated) or repeated
    --allow-experiment-prometheus."""

    leader_election: bool = False
    """Act only while holding the coordination.k8s.io Lease `lease_name`, so that one
    replica at a time reconciles, writes and posts Events. Default False for a process run
    by hand (`python -m kubetune`); the chart turns it on. $KUBETUNE_LEADER_ELECTION
    (true/false) or --leader-elect."""

    lease_name: str = "kubetune-operator"
    """The Lease the replicas compete for. $KUBETUNE_LEASE_NAME or --lease-name."""

    lease_namespace: str | None = None
    """Namespace of the Lease. Default None: the namespace the operator's pod runs in
    (its service account's), else `default`. $KUBETUNE_LEASE_NAMESPACE or --lease-namespace."""

    lease_duration_seconds: int = 15
    """How long a standby waits, after it last saw the Lease renewed, before it takes the
    Lease over: the longest failover after a leader dies. Default 15, as
    controller-runtime's. $KUBETUNE_LEASE_DURATION_SECONDS."""

    renew_deadline_seconds: int = 10
    """A leader that has not renewed the Lease for this long stops acting and exits
    (its Deployment restarts it as a standby). Must be below the lease duration, so the
    old leader has stopped before a standby may start. Default 10.
    $KUBETUNE_LEASE_RENEW_DEADLINE_SECONDS."""

    retry_period_seconds: int = 2
    """Seconds between two tries to renew (leader) or take (standby) the Lease. Default 2.
    $KUBETUNE_LEASE_RETRY_PERIOD_SECONDS."""

    identity: str | None = None
    """This replica's name in the Lease's holderIdentity. Default None: the pod's name
    (or host name) and a random suffix, unique per process. $KUBETUNE_POD_NAME."""

    def __post_init__(self) -> None:
        d, r, p = self.lease_duration_seconds, self.renew_deadline_seconds, self.retry_period_seconds
        if p < 1 or r <= 1.2 * p or d <= r:
            raise ValueError(
                "the lease timings need lease duration > renew deadline > 1.2 x retry period "
                f">= 1 s (as client-go's leader election does), got {d}, {r} and {p}")

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
            experiment_prometheus_prefixes=tuple(
                p.strip() for p in env.get(ENV_EXPERIMENT_PROMETHEUS_PREFIXES, "").split(",")
                if p.strip()),
            leader_election=_flag(env, ENV_LEADER_ELECTION, cls.leader_election),
            lease_name=env.get(ENV_LEASE_NAME) or cls.lease_name,
            lease_namespace=env.get(ENV_LEASE_NAMESPACE) or cls.lease_namespace,
            lease_duration_seconds=_number(env, ENV_LEASE_DURATION, int,
                                           cls.lease_duration_seconds),
            renew_deadline_seconds=_number(env, ENV_RENEW_DEADLINE, int,
                                           cls.renew_deadline_seconds),
            retry_period_seconds=_number(env, ENV_RETRY_PERIOD, int, cls.retry_period_seconds),
            identity=env.get(ENV_IDENTITY) or cls.identity,
        )


_Number = TypeVar("_Number", int, float)


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    text = env.get(name)
    if text is None:
        return default
    if text.strip().lower() in _TRUE:
        return True
    if text.strip().lower() in _FALSE:
        return False
    raise ValueError(f"${name} must be true or false, got {text!r}")


def _number(env: Mapping[str, str], name: str, kind: type[_Number], default: _Number) -> _Number:
    text = env.get(name)
    if text is None:
        return default
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"${name} must be {'an integer' if kind is int else 'a number'}, "
                         f"got {text!r}") from None
