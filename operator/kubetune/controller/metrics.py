"""The operator's own Prometheus metrics (not the trials')."""

from __future__ import annotations

import importlib.metadata
from collections import Counter
from dataclasses import dataclass, field

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client import Counter as PCounter


def package_version() -> str:
    """The installed kubetune's version, or "unknown" when run from an uninstalled tree."""
    try:
        return importlib.metadata.version("kubetune")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@dataclass
class OperatorMetrics:
    """The operator's own series (experiments, trials, ticks, API writes, query latency),
    with the process's own (process_*, python_info) and kubetune_build_info{version}."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        # process_* (CPU, memory, open fds, start time) and python_info, as the default registry has.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.build_info = Gauge("kubetune_build_info", "The running operator's version; always 1",
                                ["version"], registry=r)
        self.build_info.labels(package_version()).set(1)
        self.experiments = Gauge("kubetune_experiments", "TuneExperiments by phase", ["phase"], registry=r)
        self.trials = Gauge("kubetune_trials", "TuneTrials by state", ["state"], registry=r)
        self.reconcile = Histogram("kubetune_reconcile_duration_seconds",
                                   "Time of one reconcile tick of one experiment", registry=r,
                                   buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.query = Histogram("kubetune_prometheus_query_duration_seconds",
                               "Latency of the PromQL snapshot query", registry=r,
                               buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.queries = PCounter("kubetune_prometheus_queries", "PromQL queries sent", registry=r)
        self.query_errors = PCounter("kubetune_prometheus_query_errors",
                                     "PromQL queries that failed", registry=r)
        self.api_writes = PCounter("kubetune_api_writes", "Kubernetes API writes",
                                   ["verb", "resource"], registry=r)
        self.ticks = PCounter("kubetune_reconcile_ticks", "Reconcile ticks", registry=r)
        self.reconcile_errors = PCounter(
            "kubetune_reconcile_errors", "Reconcile ticks that failed, by the reason the "
            "experiment shows (InvalidSpec, Forbidden, TooLarge, APIUnavailable, ...)",
            ["reason"], registry=r)
        self._phases: dict[str, str] = {}
        self._states: dict[str, Counter[str]] = {}

    def observe_query(self, seconds: float, ok: bool) -> None:
        """Count one PromQL snapshot query, its latency and whether it failed."""
        self.queries.inc()
        self.query.observe(seconds)
        if not ok:
            self.query_errors.inc()

    def count_write(self, verb: str, resource: str) -> None:
        """Count one Kubernetes API write (create, patch or delete) of a resource."""
        self.api_writes.labels(verb, resource).inc()

    def set_experiment(self, uid: str, phase: str | None, states: Counter[str] | None) -> None:
        """Record one experiment's phase and trial counts (None forgets it)."""
        if phase is None:
            self._phases.pop(uid, None)
            self._states.pop(uid, None)
        else:
            self._phases[uid] = phase
            self._states[uid] = states or Counter()
        for p in ("Pending", "Running", "Succeeded", "Failed"):
            self.experiments.labels(p).set(sum(1 for v in self._phases.values() if v == p))
        total: Counter[str] = Counter()
        for c in self._states.values():
            total.update(c)
        for s in ("Pending", "Running", "Succeeded", "Pruned", "Failed"):
            self.trials.labels(s).set(total.get(s.lower(), 0))
