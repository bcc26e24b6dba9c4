"""Test tiers follow the directory: tests/unit is `unit`, tests/integration is
`integration`, tests/e2e is `e2e`, so `pytest -m unit` runs the fast tier alone."""

from __future__ import annotations

from pathlib import Path

import pytest

_TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        for tier in _TIERS:
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))


# -- the real local control plane, shared by the integration and e2e tiers -----------------
import os  # noqa: E402
import tempfile  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402

from kubetune.devcluster import ClusterConfig, LocalCluster  # noqa: E402


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    """One control plane for the whole session: 4 KWOK nodes x 4 GPUs, Prometheus, runner."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    state_dir = tempfile.mkdtemp(prefix="kubetune-test-", dir=base)
    local = LocalCluster(ClusterConfig(state_dir=Path(state_dir)))
    seconds = local.up()
    print(f"\nlocal control plane up in {seconds:.1f}s ({state_dir})")
    try:
        yield local
    finally:
        local.down()


@pytest.fixture(scope="session")
def api_client(cluster: LocalCluster):  # type: ignore[no-untyped-def]
    from kubernetes import config

    return config.new_client_from_config(config_file=str(cluster.kubeconfig))


@pytest.fixture
def namespace(api_client) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A fresh namespace per test, deleted afterwards."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    # The ServiceAccount admission plugin needs the namespace's default SA first.
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(sa.metadata.name == "default"
               for sa in core.list_namespaced_service_account(name).items):
            break
        time.sleep(0.1)
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="session")
def crds(api_client):  # type: ignore[no-untyped-def]
    from tests.support.operator import install_crds

    install_crds(api_client)


@pytest.fixture(scope="session")
def operator(cluster, crds, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The real operator process, shared by the session; tests that kill it restart it."""
    from tests.support.operator import OperatorProcess

    proc = OperatorProcess(cluster, tmp_path_factory.mktemp("operator"))
    proc.start()
    yield proc
    proc.kill()
    print(f"\noperator log: {proc.log}")
