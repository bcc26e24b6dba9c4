"""How late the dev cluster's runner starts trial pods: farmed (`kubetune.io/dev-farm`) and as
processes, from the moment the scheduler binds each pod to the moment it is Running.

    .venv/bin/python -m benchmarks.farm_start --farmed 200 --processes 20

Creates the pods directly (no operator): simulated-trainer trials of 8 epochs at 0.5 s with
a metrics port, as the scale benchmark's trials; one watch sees each pod bound (spec.nodeName
set) and Running, and times both in this process. Prints p50/p99/max of the delay per kind,
and how long the farmed trials took to all finish.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

from kubetune import contract
from kubetune.devcluster import ClusterConfig, LocalCluster


def pod(name: str, farmed: bool, epochs: int) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {
        contract.EXPERIMENT_LABEL: "farm-start", contract.TRIAL_LABEL: name,
        contract.ATTEMPT_LABEL: "1"}}
    if farmed:
        meta["annotations"] = {contract.ANNOTATION_FARM: "true"}
    env = {contract.ENV_CONFIG: json.dumps({"lr": 0.01, "epochs": epochs}),
           contract.ENV_MILESTONES: "1,3,9", contract.ENV_METRIC: "accuracy"}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {
        "restartPolicy": "Never", "containers": [{
            "name": "trainer", "image": "kubetune-trainer:0.1.0",
            "command": ["python", "-m", "kubetune_trainer", "--dataset", "simulated",
                        "--seconds-per-step", "0.5", "--log-level", "WARNING"],
            "env": [{"name": k, "value": v} for k, v in env.items()],
            "ports": [{"name": "metrics", "containerPort": contract.DEFAULT_METRICS_PORT}]}]}}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def measure(core: client.CoreV1Api, namespace: str, names: dict[str, bool], epochs: int,
            timeout: float) -> dict[str, dict[str, float]]:
    bound: dict[str, float] = {}
    running: dict[str, float] = {}
    done: dict[str, float] = {}
    ready = threading.Event()

    def observe() -> None:
        w = watch.Watch()
        ready.set()
        for event in w.stream(core.list_namespaced_pod, namespace, timeout_seconds=int(timeout)):
            p, now = event["object"], time.monotonic()
            if p.spec.node_name:
                bound.setdefault(p.metadata.name, now)
            if p.status.phase in ("Running", "Succeeded", "Failed"):
                running.setdefault(p.metadata.name, now)
            if p.status.phase in ("Succeeded", "Failed"):
                done.setdefault(p.metadata.name, now)
            if len(done) == len(names):
                w.stop()

    watcher = threading.Thread(target=observe, daemon=True)
    watcher.start()
    ready.wait()
    time.sleep(0.5)
    began = time.monotonic()
    for name, farmed in names.items():
        core.create_namespaced_pod(namespace, pod(name, farmed, epochs))
    watcher.join(timeout)
    out: dict[str, dict[str, float]] = {}
    for kind, farmed in (("farmed", True), ("processes", False)):
        delays = [running[n] - bound[n] for n, f in names.items()
                  if f == farmed and n in running and n in bound]
        if not delays:
            continue
        ends = [done[n] - began for n, f in names.items() if f == farmed and n in done]
        out[kind] = {"pods": len(delays), "p50_s": statistics.median(delays),
                     "p99_s": percentile(delays, 0.99), "max_s": max(delays),
                     "all_done_s": max(ends) if ends else float("nan")}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--farmed", type=int, default=200)
    parser.add_argument("--processes", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="kubetune-farm-", dir="/dev/shm"))
    cluster = LocalCluster(ClusterConfig(state_dir=state))
    try:
        print(f"local control plane up in {cluster.up():.1f}s", flush=True)
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
        core = client.CoreV1Api(api)
        for kind, count, farmed in (("farmed", args.farmed, True),
                                    ("processes", args.processes, False)):
            if not count:
                continue
            namespace = f"farm-start-{kind}"
            core.create_namespace({"metadata": {"name": namespace}})
            while not core.list_namespaced_service_account(namespace).items:
                time.sleep(0.2)
            names = {f"t-{i}": farmed for i in range(count)}
            for k, row in measure(core, namespace, names, args.epochs, args.timeout).items():
                print(f"{k}: {row['pods']:.0f} pods, bound -> Running p50 {row['p50_s']:.2f} s, "
                      f"p99 {row['p99_s']:.2f} s, max {row['max_s']:.2f} s; all finished "
                      f"{row['all_done_s']:.1f} s after the first was created", flush=True)
    finally:
        cluster.down()


if __name__ == "__main__":
    main()
