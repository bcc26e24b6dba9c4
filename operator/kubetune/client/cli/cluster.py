"""`kubetune cluster up|down|env`, and starting or reusing the local cluster for `kubetune dev`.

The one module of the client that imports the dev cluster (`kubetune.devcluster`):
these commands exist to start and stop it. Everything else on the user's side
finds a running local cluster through the record it keeps (`contract.ClusterState`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from kubetune.client.cli.options import fail
from kubetune.client.errors import KubetuneError
from kubetune.devcluster import BinariesMissing, ClusterConfig, ClusterError, LocalCluster


def _quiet(_: str) -> None:
    pass


def local_cluster(state_dir: Path | None = None) -> LocalCluster:
    """The local cluster in state_dir (default: $KUBETUNE_CLUSTER_DIR or /dev/shm/...)."""
    return LocalCluster(ClusterConfig(state_dir=state_dir) if state_dir else None)


def ensure_cluster(state_dir: Path | None = None,
                   say: Callable[[str], None] = _quiet) -> tuple[LocalCluster, bool]:
    """The running local cluster, or a new one; True when it was started here."""
    local = local_cluster(state_dir)
    if local.is_up():
        say(f"using the local cluster in {local.state_dir}")
        return local, False
    say("starting a local control plane (etcd, apiserver, scheduler, KWOK GPU nodes, "
        "Prometheus)...")
    try:
        seconds = local.up()
    except (ClusterError, BinariesMissing) as e:
        raise KubetuneError(str(e)) from None
    say(f"local cluster up in {seconds:.1f}s ({local.state_dir})")
    return local, True


@click.group()
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
        fail(str(e))
    click.echo(f"local cluster up in {seconds:.1f}s: {nodes} nodes x {gpus_per_node} GPUs")
    click.echo(f"export KUBECONFIG={local.kubeconfig}")
    click.echo(f"prometheus: {local.prometheus_url}")


@cluster.command("down")
@click.option("--state-dir", type=click.Path(path_type=Path), default=None)
def cluster_down(state_dir: Path | None) -> None:
    """Stop every process `cluster up` started and remove its data."""
    local_cluster(state_dir).down()
    click.echo("local cluster stopped")


@cluster.command("env")
@click.option("--state-dir", type=click.Path(path_type=Path), default=None)
def cluster_env(state_dir: Path | None) -> None:
    """Print shell exports for the running local cluster."""
    local = local_cluster(state_dir)
    if not local.is_up():
        fail("no local cluster is running: start one with `kubetune cluster up`")
    click.echo(f"export KUBECONFIG={local.kubeconfig}")
    click.echo(f"export KUBETUNE_PROMETHEUS_URL={local.prometheus_url}")
