"""Operator failover: how long after its leader goes does a standby take the Lease and act?

Starts a local control plane and two leader-elected operators (`python -m kubetune
--leader-elect`), then, round after round, stops the current leader, measures the
seconds until the other one holds the Lease and until its kopf has started (its
start-up handler's log line), and starts the stopped one again as the new standby.
A SIGKILL leaves the Lease to expire (lease duration); a SIGTERM releases it.

    .venv/bin/python -m benchmarks.failover                     # the chart's timings, 15/10/2 s
    .venv/bin/python -m benchmarks.failover --lease 4 3 1       # the integration test's
"""

from __future__ import annotations

import argparse
import signal
import statistics
import tempfile
import time
from pathlib import Path

from kubernetes import client, config
from tests.support.operator import OperatorProcess, install_crds, leader_elected_operators

from kubetune.devcluster import ClusterConfig, LocalCluster

STARTED = "kubetune operator: Prometheus at"
"""The line the operator logs once kopf runs its start-up handler (it leads)."""


def holder(api: client.CoordinationV1Api, lease: str) -> str | None:
    try:
        got = api.read_namespaced_lease(lease, "default")
    except client.exceptions.ApiException:
        return None
    return got.spec.holder_identity if got.spec else None


def wait(predicate, timeout: float = 120.0) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise TimeoutError("no takeover")
        time.sleep(0.05)
    return time.monotonic()


def acting(proc: OperatorProcess) -> bool:
    return proc.log.exists() and STARTED in proc.log.read_text(errors="replace")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lease", nargs=3, type=int, default=[15, 10, 2],
                        metavar=("DURATION", "RENEW", "RETRY"))
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each signal")
    args = parser.parse_args()
    duration, renew, retry = args.lease
    work = Path(tempfile.mkdtemp(prefix="kubetune-failover-", dir="/dev/shm"))
    cluster = LocalCluster(ClusterConfig(state_dir=work / "cluster", nodes=1))
    cluster.up()
    try:
        api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        install_crds(api_client)
        leases = client.CoordinationV1Api(api_client)
        procs = leader_elected_operators(cluster, work, 2, lease="kubetune-failover",
                                         duration=duration, renew=renew, retry=retry)
        procs[0].start()
        wait(lambda: (holder(leases, "kubetune-failover") or "").startswith("op-0_"))
        procs[1].start()
        results: dict[str, list[tuple[float, float]]] = {"SIGKILL": [], "SIGTERM": []}
        leader, standby = procs
        for sig in [signal.SIGKILL, signal.SIGTERM] * args.rounds:
            before = holder(leases, "kubetune-failover")
            standby.log.write_text("")  # so its STARTED line is this round's
            stopped = time.monotonic()
            leader.kill(sig)
            took = wait(lambda: holder(leases, "kubetune-failover") not in (None, before))  # noqa: B023
            acts = wait(lambda: acting(standby))  # noqa: B023
            results[sig.name].append((took - stopped, acts - stopped))
            print(f"{sig.name}: Lease taken after {took - stopped:.1f}s, "
                  f"acting after {acts - stopped:.1f}s", flush=True)
            leader.start()
            leader, standby = standby, leader
        print(f"\nlease duration {duration}s, renew deadline {renew}s, retry period {retry}s")
        for name, rows in results.items():
            taken, act = [r[0] for r in rows], [r[1] for r in rows]
            print(f"{name}: Lease taken after median {statistics.median(taken):.1f}s "
                  f"(max {max(taken):.1f}s), acting after median {statistics.median(act):.1f}s "
                  f"(max {max(act):.1f}s), {len(rows)} rounds")
        for p in procs:
            p.kill()
    finally:
        cluster.down()


if __name__ == "__main__":
    main()
