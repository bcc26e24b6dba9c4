"""A trial whose process has ended is read past Prometheus' staleness marker while the
operator still sees its pod running: a rung scraped once does not wait for the pod's end.

The pod is created directly, as in test_trial_farm, and read with the operator's own
Prometheus reader (controller.prometheus.PrometheusSource) against the real Prometheus.
"""

from __future__ import annotations

from kubernetes import client

from kubetune.controller.prometheus import PrometheusSource
from kubetune.devcluster import LocalCluster
from tests.integration.kube import wait_for
from tests.integration.test_trial_farm import finished, trial_pod


def test_a_pod_seen_running_is_read_after_its_series_went_stale(
        cluster: LocalCluster, api_client, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, trial_pod("stale", "farm-0", farm=True,
                                                    seconds_per_step=1.0, linger="3"))
    source = PrometheusSource(cluster.prometheus_url)

    def live() -> bool:
        return "farm-0" in source.snapshot(namespace, "farm", "accuracy").trials

    wait_for(live, timeout=60, interval=0.5, what="the trial to be scraped")
    wait_for(lambda: finished(core, namespace, "stale"), timeout=90, what="the pod to finish")
    # Its target is dropped: Prometheus marks the series stale and a plain read loses them.
    wait_for(lambda: not live(), timeout=60, interval=0.5, what="the trial's series to go stale")
    read = source.snapshot(namespace, "farm", "accuracy", running_pods=["stale"]).trials
    assert set(read) == {"farm-0"}
    trial = read["farm-0"]
    assert sorted(trial.rungs) == [1, 3] and trial.step == 6 and trial.attempt == 1
    assert "accuracy" in trial.metrics
    # Only the pods named are read past the marker.
    assert source.snapshot(namespace, "farm", "accuracy", running_pods=["other"]).trials == {}
