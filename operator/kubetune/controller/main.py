"""The operator process: parse the settings once, register the handlers, run kopf.

`python -m kubetune` (the operator image and the chart) comes here. The
settings are read from the flags and the environment before anything is
registered, so every handler sees the same, final values.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence

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
             "namespaces": tuple(args.namespace) or None, "verbose": args.verbose or None}
    return dataclasses.replace(settings, **{k: v for k, v in flags.items() if v is not None})


def main(argv: Sequence[str] | None = None) -> None:
    """Run the operator until it is stopped (SIGTERM or SIGINT)."""
    settings = parse_settings(argv, os.environ)
    if settings.kubeconfig:
        # kopf logs in through the kubernetes client, whose default kubeconfig is $KUBECONFIG
        # as it was when kubernetes.config was imported: set it before anything imports that.
        os.environ["KUBECONFIG"] = settings.kubeconfig
    logging.basicConfig(level=logging.DEBUG if settings.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s [%(name)s] %(message)s")

    import kopf

    from kubetune.controller import handlers

    registry = kopf.OperatorRegistry()
    handlers.register(registry, settings)
    asyncio.run(kopf.operator(
        registry=registry,
        clusterwide=not settings.namespaces,
        namespaces=list(settings.namespaces),
        memo=kopf.Memo(),
        liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz",
        standalone=True,
    ))


if __name__ == "__main__":
    main()
