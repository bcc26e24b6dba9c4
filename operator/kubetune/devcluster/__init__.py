"""A local Kubernetes control plane for development and tests (no Docker needed).

Imported by `kubetune cluster up/down/env` and `kubetune dev` (the CLI's
`kubetune.client.cli.cluster`, the one place the client reaches in here), by the
test suite's fixtures and by the scale benchmark; `python -m
kubetune.devcluster.runner` is the process that plays the kubelet. What it
writes for others to read (state.json, pod logs) is defined in
`kubetune.contract`, so the client finds a running cluster without this package.
"""

from kubetune.devcluster.binaries import BinariesMissing
from kubetune.devcluster.controlplane import (
    ClusterConfig,
    ClusterError,
    LocalCluster,
    running_cluster,
)

__all__ = ["BinariesMissing", "ClusterConfig", "ClusterError", "LocalCluster", "running_cluster"]
