"""A trial with kubetune.trial's defaults ends its pod as soon as its training returns (no
linger for a last scrape), and nothing is lost: the operator records the final report from
the termination message on the TuneTrial, and the curves the client draws and exports end
at that final point even where Prometheus never scraped it."""

from __future__ import annotations

import re
import threading
import time
from datetime import datetime
from typing import Any

from kubernetes import client, watch

from kubetune import contract
from kubetune.client.experiments import ExperimentClient
from kubetune.client.export import ray_results, trial_records
from kubetune.client.plot import trial_curves
from kubetune.devcluster import LocalCluster
from kubetune.devcluster.processes import free_port
from tests.integration.test_operator import create, trials, wait_phase
from tests.support.operator import CHECKPOINT_ROOT, OperatorProcess

EPOCHS = 5


def default_experiment(name: str) -> dict[str, Any]:
    """Simulated-trainer trials that set nothing of the trial SDK's timing."""
    return {
        "apiVersion": "kubetune.io/v1alpha1", "kind": "TuneExperiment",
        "metadata": {"name": name},
        "spec": {
            "objective": {"metric": "accuracy", "mode": "max"},
            "searchSpace": {"lr": {"loguniform": [1e-3, 1e-1]}, "epochs": {"value": EPOCHS}},
            "searchAlgorithm": {"type": "random", "seed": 3},
            "numSamples": 2, "maxConcurrentTrials": 2,
            "scheduler": {"type": "fifo"},
            "trialTemplate": {"spec": {"containers": [{
                "name": "trainer", "image": "kubetune-trainer:0.1.0",
                "command": ["python", "-m", "kubetune_trainer", "--dataset", "simulated",
                            "--seconds-per-step", "0.05"],
                "env": [{"name": contract.ENV_CHECKPOINT_ROOT, "value": CHECKPOINT_ROOT}],
                "resources": {"limits": {"nvidia.com/gpu": "1"}},
            }]}},
        },
    }


def last_report_time(cluster: LocalCluster, namespace: str, pod: str) -> float:
    """When the trainer logged its last epoch (right after reporting it), as Unix time."""
    log = contract.pod_log_path(cluster.state_dir, namespace, pod).read_text(errors="replace")
    stamps = [line[:23] for line in log.splitlines() if re.search(rf": epoch {EPOCHS}/", line)]
    assert stamps, log
    return datetime.strptime(stamps[-1], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def test_a_default_trial_ends_its_pod_at_once_and_its_final_point_reaches_the_curves(
        cluster: LocalCluster, api_client, namespace: str, operator: OperatorProcess) -> None:
    core = client.CoreV1Api(api_client)
    succeeded: dict[str, float] = {}
    stop = threading.Event()

    def watch_pods() -> None:
        w = watch.Watch()
        while not stop.is_set():
            for event in w.stream(core.list_namespaced_pod, namespace, timeout_seconds=5):
                pod = event["object"]
                if pod.status.phase == "Succeeded":
                    succeeded.setdefault(pod.metadata.name, time.time())
                if stop.is_set():
                    w.stop()

    watcher = threading.Thread(target=watch_pods, daemon=True)
    watcher.start()
    try:
        create(api_client, namespace, default_experiment("prompt"))
        exp = wait_phase(api_client, namespace, "prompt", ("Succeeded", "Failed"))
    finally:
        stop.set()
        watcher.join(10)
    assert exp["status"]["phase"] == "Succeeded", exp["status"]
    records = trials(api_client, namespace)
    assert len(records) == 2 and all(t["status"]["state"] == "Succeeded" for t in records.values())

    # The pod ended as soon as the program returned, without waiting for a scrape: well
    # under a real cluster's 15 s scrape interval (0.2-0.3 s on a quiet machine; the bound
    # leaves room for a loaded one, where the runner and the apiserver answer late).
    delays = {}
    for trial in records.values():
        pod = trial["status"]["podName"]
        delays[pod] = succeeded[pod] - last_report_time(cluster, namespace, pod)
        log = contract.pod_log_path(cluster.state_dir, namespace, pod).read_text()
        assert "for Prometheus to scrape the final metrics" not in log, log  # no linger
    print(f"\nlast report to pod Succeeded: {({p: round(d, 2) for p, d in delays.items()})}")
    assert all(0 <= d < 2.0 for d in delays.values()), delays

    # The final report is on the TuneTrial, and the client's curves end there: with the
    # Prometheus that scraped the trials, and with none at all (the record alone).
    rows = list(records.values())
    for url, origin in ((cluster.prometheus_url, "Prometheus"),
                        (f"http://127.0.0.1:{free_port()}", "rung values and final metrics")):
        ec = ExperimentClient(api_client=api_client, namespace=namespace, prometheus_url=url)
        histories, source = ec.histories(exp, rows)
        assert origin in source, source
        curves = {c.name: c for c in trial_curves(rows, histories, "accuracy")}
        exported = {r.name: ray_results(r) for r in trial_records(rows, histories)}
        for name, trial in records.items():
            final = trial["status"]["metrics"]["accuracy"]
            assert trial["status"]["step"] == EPOCHS
            assert curves[name].points[-1] == (EPOCHS, final), curves[name]
            assert exported[name][-1]["accuracy"] == final
