"""`kubetune cluster up/down` ends only what it started and leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from kubetune.contract import pid_alive
from kubetune.devcluster import ClusterConfig, LocalCluster


def test_teardown_ends_only_its_own_processes_and_removes_its_directory(tmp_path: Path):
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    local = LocalCluster(ClusterConfig(state_dir=tmp_path / "c", nodes=1, gpus_per_node=8))
    try:
        local.up()
        pids = dict(local.state.pids)
        assert set(pids) == {"etcd", "prometheus", "kube-apiserver", "kube-controller-manager",
                             "kube-scheduler", "kwok", "runner"}
        assert all(pid_alive(pid) for pid in pids.values())
        node = local.api().read_node("kwok-gpu-0")
        assert node.status.allocatable["nvidia.com/gpu"] == "8"
    finally:
        local.down()
    assert not any(pid_alive(pid) for pid in pids.values())
    assert not (tmp_path / "c").exists()
    assert bystander.poll() is None, "teardown must not touch processes it did not start"
    bystander.kill()
    bystander.wait()
    assert os.listdir(tmp_path) == []
