"""The CLI's view of multi-worker trials: ranks, nodes, latest attempt."""

from __future__ import annotations

import pytest
from kubernetes import client

from kubetune import contract
from kubetune.client.cli.views import trials_view
from kubetune.client.workers import latest_attempts, placement, worker_rows

pytestmark = pytest.mark.unit


def pod(trial: str, attempt: int, rank: int | None, node: str | None) -> client.V1Pod:
    labels = {contract.TRIAL_LABEL: trial, contract.ATTEMPT_LABEL: str(attempt)}
    annotations = {contract.JOB_COMPLETION_INDEX: str(rank)} if rank is not None else None
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=f"{trial}-a{attempt}-{rank}-x", labels=labels,
                                     annotations=annotations),
        spec=client.V1PodSpec(containers=[], node_name=node),
        status=client.V1PodStatus(phase="Running"))


def test_ranks_and_nodes_of_the_latest_attempt() -> None:
    rows = worker_rows([pod("t-0", 1, 0, "n1"), pod("t-0", 2, 1, None), pod("t-0", 2, 0, "n2"),
                        pod("t-1", 1, None, "n3")])
    latest = latest_attempts(rows)
    assert placement(latest["t-0"]) == "0@n2 1@-"
    assert placement(latest["t-1"]) == "0@n3"  # a one-pod trial is rank 0


def test_trials_table_has_a_workers_column_only_when_given() -> None:
    from rich.console import Console

    exp = {"metadata": {"name": "t"}, "spec": {"objective": {"metric": "acc", "mode": "max"}}}
    trial = {"metadata": {"name": "t-0"}, "spec": {"params": {"lr": 0.1}},
             "status": {"state": "Running"}}
    console = Console(width=200, record=True)
    console.print(trials_view(exp, [trial], workers={"t-0": "0@n2 1@n3"}))
    assert "0@n2 1@n3" in console.export_text()
    console = Console(width=200, record=True)
    console.print(trials_view(exp, [trial]))
    assert "workers" not in console.export_text()
