"""Each trial's reported metrics by step: from Prometheus, completed by the TuneTrials.

The full curve comes from Prometheus, which scraped every trial's gauges while it
ran: one range query per experiment returns the step and metric series of all
its trials, joined here on their shared scrape timestamps. Prometheus may be
unreachable from where the command runs, or have dropped old data, so the
values the operator persisted on each TuneTrial (the value at every rung it
reached, and its final metrics) are merged in as well; they alone still draw a
curve through the rungs, with every pruned trial ending at the rung that
stopped it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import requests

from kubetune import contract
from kubetune.client.errors import HistoryUnavailable

History = dict[int, dict[str, float]]
"""step -> {metric: value} for one trial."""

StepTimes = dict[str, dict[int, float]]
"""trial -> {step: when Prometheus first scraped it}: within a scrape interval of the report."""

MAX_POINTS_PER_SERIES = 10_000  # Prometheus refuses range queries above 11,000 points per series


def history_selector(namespace: str, experiment: str) -> str:
    """Every trial's step and metric gauges of one experiment (labels set from the pod)."""
    return (f'{{__name__=~"kubetune_trial_(step|metric)",namespace="{namespace}",'
            f'experiment="{experiment}"}}')


def fetch_history(url: str, namespace: str, experiment: str, start: float, end: float,
                  timeout: float = 10.0, times: StepTimes | None = None) -> dict[str, History]:
    """Each trial's reported metrics by step, from one Prometheus range query (and, into
    `times` when given, when each step was first scraped)."""
    span = max(end - start, 1.0)
    resolution = max(1, math.ceil(span / MAX_POINTS_PER_SERIES))
    try:
        response = requests.get(
            f"{url.rstrip('/')}/api/v1/query_range",
            params={"query": history_selector(namespace, experiment), "start": f"{start:.3f}",
                    "end": f"{end:.3f}", "step": f"{resolution}s"},
            timeout=timeout,
        )
        response.raise_for_status()
        body = response.json()
    except (requests.RequestException, ValueError) as e:
        raise HistoryUnavailable(f"Prometheus at {url} could not be queried: {_reason(e)}") from None
    if body.get("status") != "success":
        raise HistoryUnavailable(f"Prometheus at {url} answered: {body.get('error', body)}")
    return parse_history(body["data"]["result"], times)


def _reason(error: Exception) -> str:
    """The last, most specific part of a requests error ("[Errno 111] Connection refused")."""
    text = str(error)
    for marker in ("[Errno", "Read timed out", "Name or service not known"):
        at = text.rfind(marker)
        if at >= 0:
            return text[at:].split("'")[0].split('"')[0].rstrip(")")
    return text if len(text) < 160 else f"{type(error).__name__}"


def parse_history(result: Sequence[Mapping[str, Any]],
                  times: StepTimes | None = None) -> dict[str, History]:
    """Join step and metric series on their timestamps (one scrape holds both, consistently);
    `times`, when given, receives each trial's first scrape time of every step."""
    steps: dict[tuple[str, str], dict[float, int]] = {}
    values: list[tuple[str, str, str, list[Any]]] = []
    for series in result:
        labels = series["metric"]
        trial, pod = labels.get("trial"), labels.get("pod", "")
        if not trial:
            continue
        if labels.get("__name__") == contract.METRIC_STEP:
            steps[(trial, pod)] = {float(t): int(float(v)) for t, v in series["values"]
                                   if math.isfinite(float(v))}
        elif "metric" in labels:
            values.append((trial, pod, labels["metric"], series["values"]))
    history: dict[str, History] = {}
    for trial, pod, metric, samples in values:
        at = steps.get((trial, pod), {})
        for t, v in samples:
            step, value = at.get(float(t)), float(v)
            if step is not None and math.isfinite(value):
                history.setdefault(trial, {}).setdefault(step, {})[metric] = value
                if times is not None:
                    seen = times.setdefault(trial, {})
                    seen[step] = min(seen.get(step, float(t)), float(t))
    return history


def finite(value: Any) -> float | None:
    """The value as a float when it is a finite number (not a bool), else None."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def trial_history(trial: Mapping[str, Any], objective: str,
                  scraped: History | None = None) -> History:
    """Scraped points, completed with the rung values and final metrics kept on the TuneTrial."""
    merged: History = {step: dict(m) for step, m in (scraped or {}).items()}
    status = trial.get("status") or {}
    for rung in status.get("rungs") or []:
        value, step = finite(rung.get("value")), rung.get("step") or rung.get("milestone")
        if value is not None and isinstance(step, int):
            merged.setdefault(step, {}).setdefault(objective, value)
    step = status.get("step")
    if isinstance(step, int):
        for name, value in (status.get("metrics") or {}).items():
            if finite(value) is not None:
                merged.setdefault(step, {}).setdefault(name, float(value))
    return dict(sorted(merged.items()))


def parse_timestamp(text: Any) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp from the API; None if absent or bad."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


__all__ = ["History", "HistoryUnavailable", "StepTimes", "fetch_history", "finite", "history_selector",
           "parse_history", "parse_timestamp", "trial_history"]
