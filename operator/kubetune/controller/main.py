"""The operator process: parse the settings once, register the handlers, run kopf.

`python -m kubetune` (the operator image and the chart) comes here. The
settings are read from the flags and the environment before anything is
registered, so every handler sees the same, final values. With leader election
on, kopf starts only once this process holds the Lease (controller/leader.py).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence

from kubetune.controller.prometheus import url_prefix_problem
from kubetune.controller.settings import OperatorSettings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kubetune",
        description="The operator process: parse flags, then run kopf against a kubeconfig "
                    "or in-cluster.")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then $KUBECONFIG)")
    parser.add_argument("--namespace", "-n", action="append", default=[],
                        help="watch only this namespace (repeatable; default: all namespaces)")
    parser.add_argument("--prometheus-url", help="Prometheus base URL for trial metrics")
    parser.add_argument("--tick", type=float, help="seconds between reconcile ticks (default 2)")
    parser.add_argument("--metrics-port", type=int, help="port of the operator's own /metrics (8080)")
    parser.add_argument("--health-port", type=int, help="port of the /healthz probe (8081)")
    parser.add_argument("--allow-experiment-prometheus", action="append", default=[],
                        metavar="URL_PREFIX",
                        help="let experiments name their own Prometheus (spec.prometheus.url) "
                             "under this URL prefix (repeatable; default: none may)")
    parser.add_argument("--leader-elect", action="store_true", default=None,
                        help="act only while holding the Lease (one replica at a time)")
    parser.add_argument("--lease-name", help="the Lease's name (default kubetune-operator)")
    parser.add_argument("--lease-namespace", help="the Lease's namespace (default: the pod's)")
    parser.add_argument("--verbose", "-v", action="store_true")
    return parser


def parse_settings(argv: Sequence[str] | None, env: Mapping[str, str]) -> OperatorSettings:
    """The settings from the environment, each overridden by its flag where one is given."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = OperatorSettings.from_env(env)
    except ValueError as e:
        parser.error(str(e))
    flags = {"kubeconfig": args.kubeconfig, "prometheus_url": args.prometheus_url,
             "tick_seconds": args.tick, "metrics_port": args.metrics_port,
             "health_port": args.health_port,
             "namespaces": tuple(args.namespace) or None, "verbose": args.verbose or None,
             "experiment_prometheus_prefixes": tuple(args.allow_experiment_prometheus) or None,
             "leader_election": args.leader_elect, "lease_name": args.lease_name,
             "lease_namespace": args.lease_namespace}
    settings = dataclasses.replace(settings, **{k: v for k, v in flags.items() if v is not None})
    for prefix in settings.experiment_prometheus_prefixes:
        problem = url_prefix_problem(prefix)
        if problem is not None:
            parser.error(f"allowed experiment Prometheus prefix {problem}")
    return settings


def main(argv: Sequence[str] | None = None) -> None:
    """Run the operator until it is stopped (SIGTERM or SIGINT)."""
    settings = parse_settings(argv, os.environ)
    if settings.kubeconfig:
        # kopf logs in through the kubernetes client, whose default kubeconfig is $KUBECONFIG
        # as it was when kubernetes.config was imported: set it before anything imports that.
        os.environ["KUBECONFIG"] = settings.kubeconfig
    logging.basicConfig(level=logging.DEBUG if settings.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s [%(name)s] %(message)s")

    if not settings.verbose:  # the elector logs every retry of a standby at INFO
        logging.getLogger("leaderelection").setLevel(logging.WARNING)
        from kubetune.controller.wake import QuietWakes

        logging.getLogger("kopf.objects").addFilter(QuietWakes())

    import kopf

    from kubetune.controller import handlers, leader

    settings = dataclasses.replace(settings, identity=leader.replica_identity(settings))
    memo = kopf.Memo()
    if settings.leader_election:
        # Nothing else talks to the apiserver before the Lease is ours: a standby neither
        # reconciles nor writes nor posts Events.
        leadership = leader.Leadership(handlers.api_client(settings), settings,
                                       settings.identity or "")
        # What the first tick needs is loaded while standing by (the client's API modules
        # take seconds to import), so a new leader acts as soon as it holds the Lease.
        from kubernetes.client import CoreV1Api, CustomObjectsApi  # noqa: F401
        leadership.run_until_leading(settings.health_port)
        memo.leadership = leadership
    registry = kopf.OperatorRegistry()
    handlers.register(registry, settings)
    try:
        asyncio.run(kopf.operator(
            registry=registry,
            clusterwide=not settings.namespaces,
            namespaces=list(settings.namespaces),
            memo=memo,
            liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz",
            standalone=True,  # kopf's peering is no lock (controller/leader.py says why)
        ))
    finally:
        if settings.leader_election:
            memo.leadership.release()


if __name__ == "__main__":
    main()
