"""Seconds from a trial pod's end to the next trial's pod: how fast a freed slot is refilled.

    python -m benchmarks.react_to_change                      # 20 trials, one at a time, tick 2 s
    python -m benchmarks.react_to_change --tick 20 --trials 8

One TuneExperiment of `--trials` trivial trials of the reference trainer's simulated mode
with one running at a time (the per-trial benchmark's run, benchmarks/per_trial.py
`trivial_run`), on the local control plane, the operator started with `--tick`. A watch on the
namespace's pods notes when each pod is first seen and when it is first seen finished
(Succeeded or Failed, or gone); the reaction of trial i is the time from its pod's end to
the first sight of trial i+1's pod. With a tick alone the reaction is up to one tick; an
operator that reacts to change refills the slot after a settle and one tick's work.
Prints the reactions' p50, p90 and max with the load average.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.per_trial import _load, trivial_run


def _watch(core: Any, namespace: str, stop: threading.Event, added: dict[str, float],
           ended: dict[str, float]) -> None:
    from kubernetes import watch

    while not stop.is_set():
        for event in watch.Watch().stream(core.list_namespaced_pod, namespace,  # type: ignore[no-untyped-call]
                                          timeout_seconds=2):
            pod, now = event["object"], time.monotonic()
            added.setdefault(pod.metadata.name, now)
            if event["type"] == "DELETED" or pod.status.phase in ("Succeeded", "Failed"):
                ended.setdefault(pod.metadata.name, now)
            if stop.is_set():
                return


def run(trials: int, tick: float, timeout: float) -> dict[str, Any]:
    from kubernetes import client, config
    from tests.support.operator import install_crds

    from kubetune.devcluster import ClusterConfig, LocalCluster

    base = "/dev/shm" if Path("/dev/shm").is_dir() else None
    work = Path(tempfile.mkdtemp(prefix="kubetune-react-", dir=base))
    cluster = LocalCluster(ClusterConfig(state_dir=work / "cluster", nodes=1, gpus_per_node=8))
    namespace = f"react-{int(time.time())}"
    added: dict[str, float] = {}
    ended: dict[str, float] = {}
    stop = threading.Event()
    try:
        cluster.up()
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
        install_crds(api)
        # Watching a namespace that does not exist yet is allowed (and sees nothing).
        watcher = threading.Thread(target=_watch, args=(client.CoreV1Api(api), namespace, stop,
                                                        added, ended), daemon=True)
        watcher.start()
        try:
            with trivial_run(cluster, api, work, namespace, trials, 1, 0.01, timeout,
                             "operator", tick=tick) as done:
                phase, wall, load0 = done.phase, done.wall, done.load_before
        finally:
            stop.set()
            watcher.join(timeout=10)
    finally:
        cluster.down()
        shutil.rmtree(work, ignore_errors=True)
    pods = [f"trivial-{i}-1" for i in range(trials)]
    reactions = sorted(added[b] - ended[a] for a, b in itertools.pairwise(pods)
                       if a in ended and b in added)
    q = statistics.quantiles(reactions, n=10) if len(reactions) >= 2 else reactions * 9
    return {"tick_seconds": tick, "trials": trials, "phase": phase, "wall_seconds": round(wall, 2),
            "reactions": len(reactions), "p50": round(statistics.median(reactions), 3),
            "p90": round(q[8], 3), "max": round(reactions[-1], 3),
            "load_before": load0, "load_after": _load()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--tick", type=float, default=2.0, help="the operator's --tick")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    row = run(args.trials, args.tick, args.timeout)
    print(json.dumps(row), flush=True)
    print(f"tick {row['tick_seconds']:g} s, {row['reactions']} reactions: p50 {row['p50']:.2f} s, "
          f"p90 {row['p90']:.2f} s, max {row['max']:.2f} s (load {row['load_before']} / "
          f"{row['load_after']})")


if __name__ == "__main__":
    main()
