"""Batched reads of trial metrics from Prometheus.

One instant query per experiment per tick returns every kubetune series of that
experiment, whatever the number of trials: the selector matches the
`namespace` and `experiment` target labels, which come from the pod (scrape
relabelling or the local runner), never from what the trial exports.
A failed query raises MetricsUnavailable: the caller takes no decision from it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

from kubetune import contract
from kubetune.controller.planner import TrialMetrics

SERIES = ("step", "metric", "rung_value", "rung_step", "finished")


class MetricsUnavailable(RuntimeError):
    """Prometheus could not be read; no decision may be taken from missing data."""


@dataclass
class MetricsSnapshot:
    """One read of every trial of one experiment, with the time the query took."""

    trials: dict[str, TrialMetrics]
    """Per trial name; a trial Prometheus has no series of yet is absent."""
    seconds: float
    """The query's latency."""


def experiment_selector(namespace: str, experiment: str) -> str:
    """The PromQL selector of every kubetune series of one experiment."""
    names = "|".join(SERIES)
    return (f'{{__name__=~"kubetune_trial_({names})",'
            f'namespace="{namespace}",experiment="{experiment}"}}')


def _number(text: str) -> float:
    return float(text)  # Prometheus renders NaN/+Inf/-Inf, which float() reads


def parse_snapshot(result: list[Mapping[str, Any]], objective: str) -> dict[str, TrialMetrics]:
    """Turn an instant-query vector into per-trial metrics (pure)."""
    trials: dict[str, TrialMetrics] = {}
    rung_values: dict[str, dict[int, float]] = {}
    rung_steps: dict[str, dict[int, int]] = {}
    for sample in result:
        labels = sample["metric"]
        trial = labels.get("trial")
        if not trial:
            continue
        value = _number(sample["value"][1])
        t = trials.setdefault(trial, TrialMetrics())
        name = labels.get("__name__", "")
        if name == contract.METRIC_STEP and math.isfinite(value):
            t.step = int(value)
        elif name == contract.METRIC_VALUE and "metric" in labels:
            t.metrics[labels["metric"]] = value
        elif name == contract.METRIC_FINISHED:
            t.finished = value >= 1
        elif name == contract.METRIC_RUNG_VALUE and labels.get("metric") == objective:
            rung_values.setdefault(trial, {})[int(labels["milestone"])] = value
        elif name == contract.METRIC_RUNG_STEP and math.isfinite(value):
            rung_steps.setdefault(trial, {})[int(labels["milestone"])] = int(value)
    for trial, values in rung_values.items():
        steps = rung_steps.get(trial, {})
        for milestone, value in values.items():
            if milestone in steps:  # both halves scraped together, or wait for the next tick
                trials[trial].rungs[milestone] = (steps[milestone], value)
    return trials


@dataclass
class PrometheusSource:
    """Reads snapshots from one Prometheus over its HTTP API."""

    url: str
    timeout: float = 5.0
    observe: Callable[[float, bool], None] | None = None  # (latency seconds, ok) for our own metrics
    session: requests.Session = field(default_factory=requests.Session)

    def snapshot(self, namespace: str, experiment: str, objective: str,
                 url: str | None = None) -> MetricsSnapshot:
        """Read every trial of one experiment in one query; `url` overrides the default server.

        Raises MetricsUnavailable when Prometheus cannot be reached or answers an error.
        """
        base = (url or self.url).rstrip("/")
        started = time.monotonic()
        ok = False
        try:
            response = self.session.get(
                f"{base}/api/v1/query", params={"query": experiment_selector(namespace, experiment)},
                timeout=self.timeout)
            body = response.json()
            if response.status_code != 200 or body.get("status") != "success":
                raise MetricsUnavailable(
                    f"Prometheus at {base} answered {response.status_code}: {body.get('error', '')}")
            ok = True
        except (requests.RequestException, ValueError) as e:
            raise MetricsUnavailable(f"Prometheus at {base} is unreachable: {e.__class__.__name__}") from e
        finally:
            if self.observe is not None:
                self.observe(time.monotonic() - started, ok)
        return MetricsSnapshot(trials=parse_snapshot(body["data"]["result"], objective),
                               seconds=time.monotonic() - started)
