"""Events and API writes per trial: one experiment of trivial trials, counted on the apiserver.

    python -m benchmarks.events_per_trial                      # 40 trials at 4 running
    python -m benchmarks.events_per_trial --trials 40 --concurrency 4

Runs the per-trial benchmark's experiment (benchmarks/per_trial.py: the reference
trainer's simulated mode, ASHA maxT 27) with the operator's defaults on the local
control plane, then counts what the operator wrote: the Events it posted (listed from
the apiserver, reportingComponent kubetune-operator, by the kind they are about and their
reason) and its other writes (its own kubetune_api_writes counter, by verb and resource).
Prints Events per trial and writes per trial, Events included.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.per_trial import trivial_run

RESULTS = Path(__file__).resolve().parent / "results"
WRITES = re.compile(r'^kubetune_api_writes_total\{resource="([^"]+)",verb="([^"]+)"\} (\S+)$')


def operator_writes(metrics: str) -> dict[str, float]:
    """The operator's kubetune_api_writes counter, as {"verb resource": count}."""
    found: dict[str, float] = {}
    for line in metrics.splitlines():
        m = WRITES.match(line)
        if m:
            found[f"{m.group(2)} {m.group(1)}"] = float(m.group(3))
    return found


def run(cluster: Any, api: Any, work: Path, trials: int, concurrency: int,
        seconds_per_step: float, timeout: float) -> dict[str, Any]:
    from kubernetes import client

    core = client.CoreV1Api(api)
    namespace = f"events-{concurrency}-{int(time.time())}"
    with trivial_run(cluster, api, work, namespace, trials, concurrency, seconds_per_step,
                     timeout, "operator-events") as done:
        started, phase = time.time() - done.wall, done.phase
        time.sleep(3.0)  # kopf posts Events from a queue, a moment after the writes
        writes = operator_writes(done.operator.metrics())
    posted = [e for e in core.list_namespaced_event(namespace).items
              if e.reporting_component == "kubetune-operator"]
    by_kind = Counter(f"{e.involved_object.kind} {e.reason}" for e in posted)
    total_writes = sum(writes.values()) + len(posted)
    return {"trials": trials, "concurrency": concurrency, "phase": phase,
            "wall_seconds": round(time.time() - started, 1), "events": len(posted),
            "events_per_trial": round(len(posted) / trials, 2),
            "writes_per_trial_with_events": round(total_writes / trials, 2),
            "events_by_kind_and_reason": dict(sorted(by_kind.items())),
            "writes_by_verb_and_resource": dict(sorted(writes.items()))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seconds-per-step", type=float, default=0.01)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--label", default="", help="recorded with the row (e.g. the commit)")
    parser.add_argument("--out", type=Path, default=RESULTS / "issue18" / "events_per_trial.json")
    args = parser.parse_args(argv)

    from kubernetes import config
    from tests.support.operator import install_crds

    from kubetune.devcluster import ClusterConfig, LocalCluster

    base = "/dev/shm" if Path("/dev/shm").is_dir() else None
    work = Path(tempfile.mkdtemp(prefix="kubetune-events-", dir=base))
    cluster = LocalCluster(ClusterConfig(state_dir=work / "cluster",
                                         nodes=max(1, (args.concurrency + 7) // 8), gpus_per_node=8))
    try:
        cluster.up()
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
        install_crds(api)
        row = {"label": args.label, **run(cluster, api, work, args.trials, args.concurrency,
                                          args.seconds_per_step, args.timeout)}
    finally:
        cluster.down()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(row, indent=1), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.out.read_text()) if args.out.exists() else []
    args.out.write_text(json.dumps([*previous, row], indent=1))
    sys.stdout.write(f"events per trial: {row['events_per_trial']}; API writes per trial, "
                     f"Events included: {row['writes_per_trial_with_events']}\n")


if __name__ == "__main__":
    main()
