"""Batched reads of trial metrics from Prometheus.

One instant query per experiment per tick returns every kubetune series of that
experiment, whatever the number of trials: the selector matches the
`namespace` and `experiment` target labels, which come from the pod (scrape
relabelling or the local runner), never from what the trial exports.
A failed query raises MetricsUnavailable: the caller takes no decision from it.

A pod that has finished is no longer scraped, and Prometheus marks its series
stale at once, so a plain instant query loses a trial's last report right when
it is needed. For the finished pods whose trial's result is not recorded yet,
the same query adds `last_over_time` of their own series (by the `pod` target
label), which reads past the staleness marker: the results come from
Prometheus whatever the termination message says. The pods the operator still
sees running get the same over the last minute (`RUNNING_LOOKBACK`): their
process may have ended, and Prometheus marked its series stale, before the pod's
end reaches the operator, and a rung scraped once must not wait for that.

An experiment may name its own Prometheus (spec.prometheus.url) only where the
operator's configuration allows it (`experiment_url_refusal`): otherwise anyone
who may create an experiment could make the operator send requests, from inside
the cluster, to any address they name, and read what came back in the status.
The check looks at the URL's text alone, before any connection is made.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, urlsplit

import requests

from kubetune import contract
from kubetune.controller.planner import TrialMetrics

SERIES = ("step", "metric", "rung_value", "rung_step", "finished", "last_report_timestamp_seconds")


class MetricsUnavailable(RuntimeError):
    """Prometheus could not be read; no decision may be taken from missing data."""


@dataclass
class MetricsSnapshot:
    """One read of every trial of one experiment, with the time the query took."""

    trials: dict[str, TrialMetrics]
    """Per trial name; a trial Prometheus has no series of yet is absent."""
    seconds: float
    """The query's latency."""


FINISHED_LOOKBACK = "1h"
"""How far back a finished pod's last report is looked for: an operator down for less
than this still finds it."""

_POD_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")


def experiment_selector(namespace: str, experiment: str, pods: Sequence[str] = ()) -> str:
    """The PromQL selector of every kubetune series of one experiment (of these pods only)."""
    names = "|".join(SERIES)
    only = f',pod=~"{_alternatives(pods)}"' if pods else ""
    return (f'{{__name__=~"kubetune_trial_({names})",'
            f'namespace="{namespace}",experiment="{experiment}"{only}}}')


def _alternatives(pods: Sequence[str]) -> str:
    for pod in pods:
        if not _POD_NAME.match(pod):  # never: the apiserver checked it; nothing to escape
            raise ValueError(f"not a pod name: {pod!r}")
    # A literal dot is \. in the regex, and a backslash is doubled in a PromQL string.
    return "|".join(pod.replace(".", "\\\\.") for pod in sorted(set(pods)))


RUNNING_LOOKBACK = "1m"
"""How far back a pod the operator sees running is read past a staleness marker: longer
than its end takes to reach the operator, after which FINISHED_LOOKBACK reads it."""


def experiment_query(namespace: str, experiment: str, finished_pods: Sequence[str] = (),
                     running_pods: Sequence[str] = ()) -> str:
    """The one instant query of a tick: the live series, the latest sample of each pod in
    `running_pods` whose series went stale in the last minute, and the last report of each
    finished pod in `finished_pods` (whose series are stale)."""
    query = experiment_selector(namespace, experiment)
    for pods, lookback in ((running_pods, RUNNING_LOOKBACK), (finished_pods, FINISHED_LOOKBACK)):
        if pods:
            last = experiment_selector(namespace, experiment, pods)
            query += f" or last_over_time({last}[{lookback}])"
    return query


_DEFAULT_PORTS = {"http": 80, "https": 443}

URLS_OFF = ("this operator reads trial metrics only from its own Prometheus: per-experiment "
            "Prometheus URLs are turned off in its configuration (experimentPrometheus."
            "allowedUrlPrefixes). Remove spec.prometheus to use the operator's Prometheus")
URL_NOT_ALLOWED = ("the URL is not under any prefix this operator's configuration allows for "
                   "an experiment's own Prometheus (experimentPrometheus.allowedUrlPrefixes). "
                   "Remove spec.prometheus to use the operator's Prometheus, or ask the "
                   "operator's administrators to allow this server")


def _split(url: str) -> SplitResult | None:
    """The URL's parts when it is a plain http(s) base URL that cannot hide another target:
    no credentials, query, fragment, escapes, backslashes, spaces or dot segments."""
    if any(c in url for c in "%\\@") or any(not 0x21 <= ord(c) <= 0x7E for c in url):
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a port that is not a number)
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.query or parts.fragment:
        return None
    if any(segment in (".", "..") for segment in parts.path.split("/")):
        return None
    return parts


def _origin(parts: SplitResult) -> tuple[str, str, int]:
    return parts.scheme, parts.hostname or "", parts.port or _DEFAULT_PORTS[parts.scheme]


def url_prefix_problem(prefix: str) -> str | None:
    """Why `prefix` cannot be an allowed URL prefix (the operator's setting), or None."""
    if _split(prefix) is None:
        return (f"{prefix!r} is not an http:// or https:// URL of a host (no credentials, "
                "query, fragment or escapes)")
    return None


def url_allowed(url: str, prefixes: Sequence[str]) -> bool:
    """True when `url` has the scheme, host and port of one of `prefixes` and its path is that
    prefix's path or below it (whole path segments: /prom allows /prom/x, not /prometheus)."""
    parts = _split(url)
    if parts is None:
        return False
    path = parts.path.rstrip("/")
    for prefix in prefixes:
        allowed = _split(prefix)
        if allowed is None or _origin(allowed) != _origin(parts):
            continue
        base = allowed.path.rstrip("/")
        if path == base or path.startswith(base + "/"):
            return True
    return False


def experiment_url_refusal(url: str, prefixes: Sequence[str], operator_url: str) -> str | None:
    """Why this operator will not query an experiment's `url`, or None when it may.

    The operator's own Prometheus is always allowed; any other URL only under one of
    `prefixes` (none by default). The message depends on the URL's text alone: it says
    nothing about the server it names, and no request is made to find out.
    """
    if url.rstrip("/") == operator_url.rstrip("/"):
        return None
    if not prefixes:
        return URLS_OFF
    return None if url_allowed(url, prefixes) else URL_NOT_ALLOWED


def _number(text: str) -> float:
    return float(text)  # Prometheus renders NaN/+Inf/-Inf, which float() reads


def _attempt(labels: Mapping[str, str]) -> int:
    try:
        return int(labels.get("attempt", "0"))
    except ValueError:
        return 0


def _latest_attempts(result: list[Mapping[str, Any]]) -> dict[str, int]:
    """Each trial's highest attempt label among the samples."""
    latest: dict[str, int] = {}
    for sample in result:
        trial = sample["metric"].get("trial")
        if trial:
            latest[trial] = max(latest.get(trial, 0), _attempt(sample["metric"]))
    return latest


def parse_snapshot(result: list[Mapping[str, Any]], objective: str) -> dict[str, TrialMetrics]:
    """Turn an instant-query vector into per-trial metrics (pure)."""
    trials: dict[str, TrialMetrics] = {}
    rung_values: dict[str, dict[int, float]] = {}
    rung_steps: dict[str, dict[int, int]] = {}
    latest = _latest_attempts(result)
    for sample in result:
        labels = sample["metric"]
        trial = labels.get("trial")
        if not trial or _attempt(labels) < latest[trial]:
            continue  # an earlier attempt's series, still there for a moment: not this trial's now
        value = _number(sample["value"][1])
        t = trials.setdefault(trial, TrialMetrics(attempt=latest[trial] or None))
        name = labels.get("__name__", "")
        if name == contract.METRIC_STEP and math.isfinite(value):
            t.step = int(value)
        elif name == contract.METRIC_VALUE and "metric" in labels:
            t.metrics[labels["metric"]] = value
        elif name == contract.METRIC_FINISHED:
            t.finished = value >= 1
        elif name == contract.METRIC_LAST_REPORT and math.isfinite(value):
            t.last_report = max(value, t.last_report or value)
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
                 url: str | None = None, finished_pods: Sequence[str] = (),
                 running_pods: Sequence[str] = ()) -> MetricsSnapshot:
        """Read every trial of one experiment in one query; `url` overrides the default server.

        `finished_pods` are the finished pods whose trial's result is not recorded yet: their
        last report is read although Prometheus no longer scrapes them; `running_pods` the
        pods of those trials still seen running (`experiment_query`). The query goes in a
        POST's body, as it grows with the pods it names.
        Raises MetricsUnavailable when Prometheus cannot be reached or answers an error.
        """
        base = (url or self.url).rstrip("/")
        started = time.monotonic()
        ok = False
        query = experiment_query(namespace, experiment, finished_pods, running_pods)
        try:
            response = self.session.post(f"{base}/api/v1/query", data={"query": query},
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
