"""The scale and per-trial benchmarks' arithmetic: the steady-state window, counter deltas,
LISTs per tick, and orchestration per trial. These are the figures issue 18's goals are
judged on, so a wrong window or a delta taken across the start-up listing would misreport."""

from __future__ import annotations

import pytest
from benchmarks.per_trial import orchestration
from benchmarks.scale.measures import (
    CounterSample,
    lists_in_window,
    quantile,
    steady_window,
    window_deltas,
)
from benchmarks.scale.observe import apiserver_requests

APISERVER_PAGE = """\
# HELP apiserver_request_duration_seconds [STABLE] Response latency distribution.
# TYPE apiserver_request_duration_seconds histogram
apiserver_request_duration_seconds_bucket{resource="pods",verb="LIST",le="0.1"} 7
apiserver_request_duration_seconds_count{resource="pods",verb="LIST"} 7
# HELP apiserver_request_total [STABLE] Counter of apiserver requests.
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",group="",resource="pods",subresource="",verb="LIST"} 3
apiserver_request_total{code="500",group="",resource="pods",subresource="",verb="LIST"} 1
apiserver_request_total{code="200",group="kubetune.io",resource="tunetrials",\
subresource="status",verb="PATCH"} 9
# HELP apiserver_request_terminations_total [STABLE] Requests terminated.
# TYPE apiserver_request_terminations_total counter
apiserver_request_terminations_total{code="504",resource="pods",verb="LIST"} 5
"""

LIST_TRIALS = ("LIST", "kubetune.io/tunetrials", "")
LIST_PODS = ("LIST", "pods", "")
WATCH_PODS = ("WATCH", "pods", "")


def test_steady_window_spans_the_middle_half_of_pod_creations() -> None:
    created = [float(t) for t in range(101)]  # out of order on purpose below
    assert steady_window(list(reversed(created))) == (25.0, 75.0)
    assert steady_window([1.0, 2.0]) is None


def test_window_deltas_bracket_the_window_with_the_outer_samples() -> None:
    samples = [CounterSample(0.0, {LIST_TRIALS: 10.0}, 0.0),
               CounterSample(10.0, {LIST_TRIALS: 12.0}, 5.0),
               CounterSample(20.0, {LIST_TRIALS: 12.0, LIST_PODS: 3.0}, 10.0),
               CounterSample(30.0, {LIST_TRIALS: 40.0, LIST_PODS: 9.0}, 15.0)]
    found = window_deltas(samples, 12.0, 18.0)
    assert found is not None
    a, b, deltas = found
    assert (a.t, b.t) == (10.0, 20.0)
    assert deltas == {LIST_PODS: 3.0}  # unchanged counters are left out
    assert window_deltas(samples, -1.0, 5.0) is None  # no sample before the window


def test_start_up_listing_outside_the_window_is_not_counted_per_tick() -> None:
    # 1,000 LISTs at start-up, then none: a watch-fed operator reads zero per tick.
    samples = [CounterSample(t, {LIST_TRIALS: 1000.0, WATCH_PODS: t}, t) for t in
               (0.0, 10.0, 20.0, 30.0, 40.0)]
    samples[0] = CounterSample(0.0, {LIST_TRIALS: 0.0}, 0.0)
    created = [float(t) for t in range(8, 41)]
    figures = lists_in_window(samples, created, experiments=2)
    assert figures["lists_of_trials_pods_experiments"] == 0
    assert figures["lists_per_experiment_tick"] == 0
    assert figures["watches"] == {"pods": 30.0}  # window 16-32 s, bracketed by 10 and 40


def test_lists_per_tick_counts_the_operators_kinds_per_experiment_tick() -> None:
    samples = [CounterSample(0.0, {LIST_TRIALS: 0.0, LIST_PODS: 0.0}, 0.0),
               CounterSample(100.0, {LIST_TRIALS: 50.0, LIST_PODS: 50.0,
                                     ("LIST", "limitranges", ""): 7.0}, 50.0)]
    figures = lists_in_window(samples, [0.0, 10.0, 50.0, 100.0], experiments=5)
    assert figures["lists_of_trials_pods_experiments"] == 100.0
    assert figures["lists_per_experiment_tick"] == 2.0
    assert figures["lists_per_tick_round"] == 10.0  # 5 experiments tick once per round
    assert figures["lists"]["limitranges"] == 7.0


def test_apiserver_requests_sums_codes_of_the_request_counter_only() -> None:
    # The other families on the page (a histogram, a counter with a longer name) are not
    # requests: LISTs per tick would count them otherwise.
    assert apiserver_requests(APISERVER_PAGE) == {
        LIST_PODS: 4.0, ("PATCH", "kubetune.io/tunetrials", "status"): 9.0}


def test_quantile_interpolates_like_numpy() -> None:
    assert quantile([3.0, 1.0, 2.0, 4.0], 0.5) == pytest.approx(2.5)
    assert quantile([1.0, 2.0, 3.0, 4.0, 5.0], 0.99) == pytest.approx(4.96)
    assert quantile([], 0.5) is None


def test_orchestration_per_trial_removes_the_compute_spread_over_the_slots() -> None:
    # 100 trials, 4 at once, 80 s of training in all: 20 s of the 70 s wall is compute.
    assert orchestration(70.0, 80.0, 4, 100) == pytest.approx(0.5)
