"""Fixtures of the e2e tier: one finished scripted experiment that the CLI tests read."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from kubetune.client.experiments import ExperimentClient
from kubetune.client.tuner import wait_for_experiment
from tests.support.operator import scripted_experiment

QUALITIES = [0.5, 0.9, 0.3, 0.8, 0.2, 0.95]
FLAKY_INDEX = 1  # its first attempt exits 3 before reporting, the retry succeeds


@pytest.fixture(scope="module")
def module_namespace(api_client: client.ApiClient) -> Iterator[str]:
    """A namespace shared by one test module, deleted afterwards."""
    core = client.CoreV1Api(api_client)
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    deadline = time.monotonic() + 30
    while not any(sa.metadata.name == "default"
                  for sa in core.list_namespaced_service_account(name).items):
        assert time.monotonic() < deadline, "no default ServiceAccount"
        time.sleep(0.1)
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="module")
def finished(api_client: client.ApiClient, operator: Any, module_namespace: str) -> dict[str, Any]:
    """A scripted ASHA experiment of six trials, run to the end; one trial needed a retry."""
    cases = [{"quality": q, "fail_attempts": 1 if i == FLAKY_INDEX else 0}
             for i, q in enumerate(QUALITIES)]
    # 1 s per step: slow enough for Prometheus (1 s scrapes) to see most steps, after the
    # up to 5 s it takes to scrape a new target (its discovery updates are throttled).
    body = scripted_experiment("cli", [0.5], concurrency=3, sleep=1.0,
                               extra_space={"case": {"grid": cases}})
    ec = ExperimentClient(api_client=api_client, namespace=module_namespace)
    ec.create_experiment(body)
    experiment = wait_for_experiment(ec, "cli", timeout=180)
    assert experiment["status"]["phase"] == "Succeeded", experiment["status"]
    return experiment
