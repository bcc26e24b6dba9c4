"""A local Kubernetes control plane for development and tests (no Docker needed)."""

from kubetune.devcluster.controlplane import (
    ClusterConfig,
    ClusterError,
    LocalCluster,
    running_cluster,
)

__all__ = ["ClusterConfig", "ClusterError", "LocalCluster", "running_cluster"]
