"""The `kubetune` command: a local cluster, the operator, and experiment views."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from kubetune.localcluster import ClusterConfig, ClusterError, LocalCluster
from kubetune.localcluster.binaries import BinariesMissing


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """kubetune: hyperparameter tuning on Kubernetes."""


@main.group()
def cluster() -> None:
    """A local control plane with fake GPU nodes (no Docker needed)."""


@cluster.command("up")
@click.option("--nodes", default=4, show_default=True, help="KWOK fake GPU nodes.")
@click.option("--gpus-per-node", default=4, show_default=True, help="nvidia.com/gpu per node.")
@click.option("--state-dir", type=click.Path(path_type=Path), default=None,
              help="Where the cluster keeps its data, PIDs and logs.")
@click.option("--scrape-interval", default="1s", show_default=True)
def cluster_up(nodes: int, gpus_per_node: int, state_dir: Path | None, scrape_interval: str) -> None:
    """Start etcd, the apiserver, controllers, KWOK nodes, Prometheus and the local runner."""
    config = ClusterConfig(nodes=nodes, gpus_per_node=gpus_per_node, scrape_interval=scrape_interval)
    if state_dir is not None:
        config.state_dir = state_dir
    local = LocalCluster(config)
    try:
        seconds = local.up()
    except (ClusterError, BinariesMissing) as e:
        _fail(str(e))
    click.echo(f"local cluster up in {seconds:.1f}s: {nodes} nodes x {gpus_per_node} GPUs")
    click.echo(f"export KUBECONFIG={local.kubeconfig}")
    click.echo(f"prometheus: {local.prometheus_url}")


@cluster.command("down")
@click.option("--state-dir", type=click.Path(path_type=Path), default=None)
def cluster_down(state_dir: Path | None) -> None:
    """Stop every process `cluster up` started and remove its data."""
    config = ClusterConfig()
    if state_dir is not None:
        config.state_dir = state_dir
    LocalCluster(config).down()
    click.echo("local cluster stopped")


@cluster.command("env")
@click.option("--state-dir", type=click.Path(path_type=Path), default=None)
def cluster_env(state_dir: Path | None) -> None:
    """Print shell exports for the running local cluster."""
    config = ClusterConfig()
    if state_dir is not None:
        config.state_dir = state_dir
    local = LocalCluster(config)
    if not local.is_up():
        _fail("no local cluster is running: start one with `kubetune cluster up`")
    click.echo(f"export KUBECONFIG={local.kubeconfig}")
    click.echo(f"export KUBETUNE_PROMETHEUS_URL={local.prometheus_url}")


if __name__ == "__main__":
    main()
