"""The figures issue 18 asks of a scale run that the first benchmark did not take.

- the apiserver's request counters sampled through the run, so LISTs can be
  counted over a steady-state window (not only before/after the whole run,
  which includes the operator's start-up listing);
- the size of the largest API object left at the end (TuneExperiment,
  TuneTrial, Event), as the apiserver serves it;
- pod gone after the decision (deletionTimestamp -> DELETED), against the
  prune grace period.

The pure helpers (`steady_window`, `window_deltas`, `quantile`) are unit-tested
in tests/unit/test_scale_measures.py.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes import client

Counters = dict[tuple[str, str, str], float]


@dataclass(frozen=True)
class CounterSample:
    t: float
    requests: Counters
    ticks: float
    """The operator's reconcile tick counter at the same moment (-1 if unreadable)."""


class ApiserverSampler:
    """Every `period` seconds: the apiserver's request counters and the operator's tick count."""

    def __init__(self, read_requests: Callable[[], Counters], read_ticks: Callable[[], float],
                 period: float = 10.0) -> None:
        self.read_requests = read_requests
        self.read_ticks = read_ticks
        self.period = period
        self.samples: list[CounterSample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> ApiserverSampler:
        self._take()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _take(self) -> None:
        with contextlib.suppress(Exception):
            ticks = -1.0
            with contextlib.suppress(Exception):
                ticks = self.read_ticks()
            self.samples.append(CounterSample(time.time(), self.read_requests(), ticks))

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self._take()


def quantile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated quantile (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    lo = int(position)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (position - lo)


def steady_window(created: Sequence[float], lo: float = 0.25, hi: float = 0.75
                  ) -> tuple[float, float] | None:
    """The times at which the lo and hi fractions of all pods had been created.

    Between them the experiments are past their start-up (the first listing,
    the first wave of creates) and not yet draining: the steady state.
    """
    if len(created) < 4:
        return None
    ordered = sorted(created)
    return ordered[int(lo * (len(ordered) - 1))], ordered[int(hi * (len(ordered) - 1))]


def window_deltas(samples: Sequence[CounterSample], start: float, end: float
                  ) -> tuple[CounterSample, CounterSample, Counters] | None:
    """The last sample at or before `start`, the first at or after `end`, and the counter
    deltas between them (only the ones that grew)."""
    before = [s for s in samples if s.t <= start]
    after = [s for s in samples if s.t >= end]
    if not before or not after:
        return None
    a, b = before[-1], after[0]
    deltas = {k: v - a.requests.get(k, 0.0) for k, v in b.requests.items()
              if v - a.requests.get(k, 0.0) > 0}
    return a, b, deltas


def lists_in_window(samples: Sequence[CounterSample], created: Sequence[float],
                    experiments: int) -> dict[str, Any]:
    """LIST requests by resource over the steady-state window, per experiment tick."""
    window = steady_window(created)
    if window is None:
        return {"window": None}
    found = window_deltas(samples, *window)
    if found is None:
        return {"window": [round(window[0], 1), round(window[1], 1)], "samples": len(samples)}
    a, b, deltas = found
    lists = {f"{res}{('/' + sub) if sub else ''}": v
             for (verb, res, sub), v in deltas.items() if verb == "LIST"}
    watches = {f"{res}": v for (verb, res, _sub), v in deltas.items()
               if verb == "WATCH" and res in ("pods", "kubetune.io/tunetrials",
                                              "kubetune.io/tuneexperiments")}
    ticks = b.ticks - a.ticks if a.ticks >= 0 and b.ticks >= 0 else None
    ours = sum(v for k, v in lists.items()
               if k in ("pods", "kubetune.io/tunetrials", "kubetune.io/tuneexperiments"))
    return {
        "window": [round(a.t, 1), round(b.t, 1)], "seconds": round(b.t - a.t, 1),
        "experiment_ticks": ticks, "lists": lists, "watches": watches,
        "lists_of_trials_pods_experiments": ours,
        "lists_per_experiment_tick": round(ours / ticks, 3) if ticks else None,
        "lists_per_tick_round": round(ours / (ticks / experiments), 3) if ticks else None,
    }


def _all_items(fetch: Callable[..., Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    token = None
    while True:
        page = fetch(limit=500, **({"_continue": token} if token else {}))
        items.extend(page["items"])
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return items


def largest_objects(api: client.ApiClient, namespace: str) -> dict[str, Any]:
    """Per kind: count, the largest object's name and its size in bytes (its JSON as
    served, managedFields included: what etcd stores and a watch sends)."""
    custom = client.CustomObjectsApi(api)
    out: dict[str, Any] = {}
    fetchers: dict[str, Callable[..., Any]] = {
        "TuneExperiment": lambda **kw: custom.list_namespaced_custom_object(
            "kubetune.io", "v1alpha1", namespace, "tuneexperiments", **kw),
        "TuneTrial": lambda **kw: custom.list_namespaced_custom_object(
            "kubetune.io", "v1alpha1", namespace, "tunetrials", **kw),
        "Event": lambda **kw: api.sanitize_for_serialization(  # type: ignore[no-untyped-call]
            client.CoreV1Api(api).list_namespaced_event(namespace, **kw)),
    }
    for kind, fetch in fetchers.items():
        try:
            items = _all_items(fetch)
        except Exception as e:  # a kind we cannot read is reported, not fatal
            out[kind] = {"error": str(e)[:200]}
            continue
        sizes = [(len(json.dumps(i, separators=(",", ":"))), i["metadata"]["name"]) for i in items]
        biggest = max(sizes, default=(0, ""))
        out[kind] = {"count": len(items), "largest_bytes": biggest[0], "largest": biggest[1],
                     "total_bytes": sum(s for s, _ in sizes)}
    return out
