"""The operator process: parse flags, then run kopf against a kubeconfig or in-cluster."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os

from prometheus_client import start_http_server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kubetune", description=__doc__)
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then $KUBECONFIG)")
    parser.add_argument("--namespace", "-n", action="append", default=[],
                        help="watch only this namespace (repeatable; default: all namespaces)")
    parser.add_argument("--prometheus-url", help="Prometheus base URL for trial metrics")
    parser.add_argument("--tick", type=float, help="seconds between reconcile ticks (default 2)")
    parser.add_argument("--metrics-port", type=int, help="port of the operator's own /metrics (8080)")
    parser.add_argument("--health-port", type=int, help="port of the /healthz probe (8081)")
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig
    for flag, var in ((args.prometheus_url, "KUBETUNE_PROMETHEUS_URL"), (args.tick, "KUBETUNE_TICK_SECONDS"),
                      (args.metrics_port, "KUBETUNE_METRICS_PORT"),
                      (args.health_port, "KUBETUNE_HEALTH_PORT")):
        if flag is not None:
            os.environ[var] = str(flag)
    if args.namespace:
        os.environ["KUBETUNE_NAMESPACES"] = ",".join(args.namespace)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s [%(name)s] %(message)s")

    import kopf

    from kubetune.controller import handlers  # noqa: F401  (registers the handlers)
    from kubetune.controller.settings import OperatorSettings

    settings = OperatorSettings.from_env()
    memo = kopf.Memo()

    @kopf.on.startup()
    def serve_metrics(memo: kopf.Memo, **_: object) -> None:
        start_http_server(settings.metrics_port, registry=memo.kubetune.metrics.registry)

    asyncio.run(kopf.operator(
        clusterwide=not settings.namespaces,
        namespaces=list(settings.namespaces),
        memo=memo,
        liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz",
        standalone=True,
    ))


if __name__ == "__main__":
    main()
