"""An experiment's own Prometheus URL on the real control plane: refused unless the operator's
configuration allows it, with a SpecValid=False message that says nothing of the target,
and without a single connection to it (a local listener records every one)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kubetune.controller.prometheus import URL_NOT_ALLOWED, URLS_OFF
from tests.integration.kube import wait_for
from tests.integration.test_operator import create, experiment, trials, wait_phase
from tests.support.operator import OperatorProcess, scripted_experiment, session_operator_stopped


class Listener:
    """A TCP listener on 127.0.0.1 that records each connection and answers HTTP 503."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.connections: list[tuple[str, int]] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            self.connections.append(peer)
            with conn:
                conn.settimeout(1)
                try:
                    conn.recv(4096)
                    conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    got = Listener()
    yield got
    got.close()


def spec_valid(exp: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in exp["status"]["conditions"] if c["type"] == "SpecValid")


def assert_refused(api_client, namespace: str, name: str, reason_text: str,
                   listener: Listener) -> None:
    exp = wait_phase(api_client, namespace, name, ("Failed", "Succeeded"), timeout=60)
    assert exp["status"]["phase"] == "Failed"
    cond = spec_valid(exp)
    assert (cond["status"], cond["reason"]) == ("False", "InvalidSpec")
    assert cond["message"] == f"invalid spec: spec.prometheus.url: {reason_text}"
    assert str(listener.port) not in cond["message"], "the message must not describe the target"
    assert trials(api_client, namespace) == {}, "no trial runs for a refused experiment"


def test_an_experiment_prometheus_is_refused_by_default_and_never_contacted(
        api_client, namespace, operator: OperatorProcess, listener: Listener) -> None:
    url = f"http://127.0.0.1:{listener.port}"
    create(api_client, namespace, scripted_experiment(
        "probe", [0.5], prometheus={"url": url}))
    assert_refused(api_client, namespace, "probe", URLS_OFF, listener)
    time.sleep(3 * operator.tick + 1)  # ticks after the refusal make no request either
    assert experiment(api_client, namespace, "probe")["status"]["phase"] == "Failed"
    assert listener.connections == []


def test_only_urls_under_an_allowed_prefix_are_queried(
        cluster, api_client, namespace, operator: OperatorProcess, listener: Listener,
        tmp_path) -> None:
    base = f"http://127.0.0.1:{listener.port}"
    allowing = OperatorProcess(cluster, tmp_path, name="allowing",
                               args=["--allow-experiment-prometheus", f"{base}/prometheus"])
    with session_operator_stopped(operator):
        allowing.start()
        try:
            # A sibling path and another port of the same host are outside the prefix.
            create(api_client, namespace, scripted_experiment(
                "sibling", [0.5], prometheus={"url": f"{base}/prometheus-other"}))
            create(api_client, namespace, scripted_experiment(
                "userinfo", [0.5], prometheus={"url": f"http://127.0.0.1:{listener.port}@"
                                                      f"127.0.0.1:{listener.port}/prometheus"}))
            assert_refused(api_client, namespace, "sibling", URL_NOT_ALLOWED, listener)
            assert_refused(api_client, namespace, "userinfo", URL_NOT_ALLOWED, listener)
            assert listener.connections == []
            # Under the prefix: the operator does query it (so the listener would have seen
            # a request above), and reports the metrics as unavailable.
            create(api_client, namespace, scripted_experiment(
                "allowed", [0.5], steps=30, prometheus={"url": f"{base}/prometheus/"}))

            def unavailable() -> Any:
                status = experiment(api_client, namespace, "allowed").get("status") or {}
                return [c for c in status.get("conditions") or []
                        if c["type"] == "MetricsAvailable" and c["status"] == "False"]

            wait_for(unavailable, timeout=60, what="the allowed URL to be queried")
            assert listener.connections, "an allowed URL is queried"
        finally:
            allowing.kill()
