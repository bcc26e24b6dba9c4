"""The operator's apiserver client pools a connection for each worker and concurrent write."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubetune.controller import handlers
from kubetune.controller.settings import OperatorSettings

pytestmark = pytest.mark.unit

KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


def test_the_client_pools_more_connections_than_kopf_has_workers(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    api = handlers.api_client(OperatorSettings(kubeconfig=str(path)))
    pool = api.rest_client.pool_manager.connection_pool_kw["maxsize"]
    assert pool == handlers.CONNECTIONS
    assert pool >= handlers.WORKERS + 16
