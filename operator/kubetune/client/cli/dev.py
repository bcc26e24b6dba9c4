"""`kubetune dev`: the example experiment end to end on the local cluster, as one command.

The journey's steps are in `kubetune.client.devjourney`; this command starts or
reuses the cluster (`cluster.ensure_cluster`), shows the progress and prints
the outcome.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from kubetune.client.cli.cluster import ensure_cluster
from kubetune.client.cli.options import console, fail, handles_errors
from kubetune.client.cli.views import fmt, status_view, watch_experiment
from kubetune.client.devjourney import load_example, run_dev
from kubetune.client.experiments import ExperimentClient


@click.command()
@click.argument("example", type=click.Path(path_type=Path), default="examples/mnist-asha.yaml")
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("--down", is_flag=True, help="Stop the local cluster at the end.")
@click.option("--no-operator", is_flag=True,
              help="Use an operator that is already running instead of starting one.")
@click.option("--cluster-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The local cluster's state directory (default: $KUBETUNE_CLUSTER_DIR or "
                   "/dev/shm/kubetune-$UID/cluster).")
@click.option("-o", "--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Where to write the learning-curve plot.")
@click.option("--timeout", type=float, default=1800, show_default=True)
@handles_errors
def dev(example: Path, namespace: str, down: bool, no_operator: bool, cluster_dir: Path | None,
        plot_path: Path | None, timeout: float) -> None:
    """Run EXAMPLE end to end on a local control plane (no Docker needed).

    Starts or reuses the local cluster, installs the CRDs, starts the operator,
    applies EXAMPLE, shows its progress, then prints the best configuration and
    the learning-curve plot.
    """
    out = console()
    started = time.monotonic()

    def say(line: str) -> None:
        out.print(f"[dim]{datetime.now().strftime('%H:%M:%S')}[/] {line}")

    def show(client: ExperimentClient, name: str) -> dict[str, Any]:
        return watch_experiment(client, name, out, timeout=timeout)

    experiment = load_example(example)
    local, _ = ensure_cluster(cluster_dir, say)
    try:
        result = run_dev(experiment, local.state, source=str(example), namespace=namespace,
                         start_operator=not no_operator, timeout=timeout, plot_path=plot_path,
                         watch=show, say=say)
    finally:
        if down:
            local.down()
            say("local cluster stopped")
    status = result.experiment.get("status") or {}
    metric = result.experiment["spec"]["objective"]["metric"]
    out.print()
    out.print(status_view(result.experiment))
    out.print()
    best = result.best
    if best:
        out.print(f"[bold]best configuration[/] ({best['name']}, {metric}="
                  f"{fmt(best.get('metric'))} at step {fmt(best.get('step'))}):")
        out.print(json.dumps(best.get("config") or {}, indent=2, sort_keys=True))
    out.print(f"[bold]learning curves:[/] {result.plot}")
    if result.operator_log is not None:
        out.print(f"operator log: {result.operator_log}")
    out.print(f"done in {time.monotonic() - started:.0f}s")
    if not down:
        kc = result.cluster.kubeconfig
        out.print(f"the local cluster is still running (KUBECONFIG={kc}); look around with "
                  f"`kubetune trials {result.experiment['metadata']['name']}` or "
                  f"`kubectl --kubeconfig {kc} get kubetune -n {namespace}`, and stop it with "
                  "`kubetune cluster down`")
    if status.get("phase") != "Succeeded":
        fail(f"the experiment ended {status.get('phase')}: {status.get('message', '')}")
