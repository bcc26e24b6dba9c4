"""The pure pieces of multi-worker trials on the data side: the local runner's cluster DNS
names and per-Job rendezvous ports, its scrape registration (rank 0 only), the trainer's
reading of torchrun's placement, and examples/ddp-asha.yaml."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetune import contract
from kubetune.api import validate_experiment_spec
from kubetune.controller.planner import ExperimentView, plan_tick
from kubetune.devcluster import clusterdns
from kubetune.devcluster.clusterdns import PodNetwork, pod_dns_name
from kubetune.devcluster.processes import ephemeral_ports
from kubetune.devcluster.scrape import Targets
from kubetune_trainer.hyperparameters import resolve
from kubetune_trainer.placement import Placement

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ddp-asha.yaml"


@pytest.mark.parametrize("name,expected", [
    ("t-a1-0.t", ("t-a1-0", "t", "ns")),
    ("t-a1-0.t.other", ("t-a1-0", "t", "other")),
    ("t-a1-0.t.other.svc", ("t-a1-0", "t", "other")),
    ("t-a1-0.t.other.svc.cluster.local", ("t-a1-0", "t", "other")),
    ("t-a1-0.t.other.svc.cluster.local.", ("t-a1-0", "t", "other")),
    ("localhost", None),
    ("10.0.0.7", None),  # an IP is not a DNS name a Service answers for
    ("a.b.c.d.e", None),
    ("Under_score.t", None),
])
def test_pod_dns_names_are_read_as_cluster_dns_answers_them(
        name: str, expected: tuple[str, str, str] | None) -> None:
    assert pod_dns_name(name, "ns") == expected


def pod(name: str, uid: str, job_uid: str | None, index: int | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "uid": uid,
                            "labels": {contract.TRIAL_LABEL: "t", contract.EXPERIMENT_LABEL: "x",
                                       contract.ATTEMPT_LABEL: "1"}}
    if job_uid is not None:
        meta["ownerReferences"] = [{"kind": "Job", "name": "t-a1", "uid": job_uid,
                                    "controller": True}]
    if index is not None:
        meta["annotations"] = {contract.JOB_COMPLETION_INDEX: str(index)}
    return {"metadata": meta, "spec": {}}


def test_pods_of_one_job_share_a_rendezvous_port_kept_across_runner_restarts(
        tmp_path: Path) -> None:
    network = PodNetwork(None, tmp_path)  # type: ignore[arg-type]  # ports need no API
    a0, a1 = pod("a-0", "u1", "job-a"), pod("a-1", "u2", "job-a")
    b0 = pod("b-0", "u3", "job-b")
    port = network.rendezvous_port(a0)
    assert network.rendezvous_port(a1) == port
    assert network.rendezvous_port(b0) != port
    assert PodNetwork(None, tmp_path).rendezvous_port(a1) == port  # type: ignore[arg-type]


def test_rendezvous_ports_are_outside_the_kernels_range_and_skip_taken_ones(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A port from bind(0) could be handed out again (to a metrics port, to an outgoing
    # connection) before rank 0 listens on it; one below the ephemeral range cannot.
    monkeypatch.setattr(clusterdns, "RENDEZVOUS_PORTS", 3)
    low = ephemeral_ports().start
    network = PodNetwork(None, tmp_path)  # type: ignore[arg-type]  # ports need no API
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            busy.bind(("127.0.0.1", low - 2))
            busy.listen()
        except OSError:
            pytest.skip(f"port {low - 2} is in use on this machine")
        got = {network.rendezvous_port(pod(f"p-{i}", f"u{i}", f"job-{i}")) for i in range(2)}
        assert got == {low - 3, low - 1}  # every Job its own, the listened-on one skipped
        # With all three taken, the kernel's choice, as before.
        assert network.rendezvous_port(pod("p-3", "u3", "job-3")) in ephemeral_ports()


def test_only_rank_0_of_a_group_is_registered_for_scraping(tmp_path: Path) -> None:
    (tmp_path / "sd").mkdir()
    targets = Targets(tmp_path / "sd")
    assert json.loads(targets.path.read_text()) == [], "a new runner starts with no targets"
    assert not targets.add(pod("t-a1-1", "u2", "job", index=1), 4242)
    assert not targets.add(pod("t-a1-0", "u1", "job", index=0), None)
    assert targets.add(pod("t-a1-0", "u1", "job", index=0), 4242)
    targets.write()
    [entry] = json.loads(targets.path.read_text())
    assert entry["targets"] == ["127.0.0.1:4242"]
    assert entry["labels"]["trial"] == "t" and entry["labels"]["pod"] == "t-a1-0"
    # A one-worker trial's pod has no completion index: it is rank 0.
    assert targets.add(pod("t-1", "u9", None), 4243)
    targets.remove("u1")
    targets.write()
    assert [e["labels"]["pod"] for e in json.loads(targets.path.read_text())] == ["t-1"]
    assert [p.name for p in (tmp_path / "sd").iterdir()] == ["targets.json"], \
        "the temporary file is written outside the directory Prometheus watches"


def test_target_changes_are_batched_into_few_writes(tmp_path: Path) -> None:
    (tmp_path / "sd").mkdir()
    targets = Targets(tmp_path / "sd", seconds=0.3)
    writes: list[int] = []
    write = targets.write
    targets.write = lambda: (writes.append(1), write())[1]  # type: ignore[method-assign]
    threading.Thread(target=targets.run, daemon=True).start()
    try:
        for i in range(40):
            targets.add(pod(f"t-{i}", f"u{i}", None), 5000 + i)
            time.sleep(0.01)
        deadline = time.monotonic() + 5
        while len(json.loads(targets.path.read_text())) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        targets.stop()
    assert len(json.loads(targets.path.read_text())) == 40
    assert 1 <= len(writes) <= 4, f"40 changes in 0.4 s took {len(writes)} writes"


def test_placement_is_read_from_torchruns_environment() -> None:
    assert Placement.from_env({}) is None
    placement = Placement.from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert placement == Placement(3, 4, 1) and not placement.is_leader
    assert Placement.from_env({"RANK": "0", "WORLD_SIZE": "2"}) == Placement(0, 2, 0)
    with pytest.raises(ValueError, match="RANK=2"):
        Placement.from_env({"RANK": "2", "WORLD_SIZE": "2"})


def test_the_ddp_example_tunes_lr_and_the_worker_count() -> None:
    body = yaml.safe_load(EXAMPLE.read_text())
    spec = validate_experiment_spec(body["spec"])
    assert spec.workers is not None and spec.workers.parameter == "num_workers"
    assert spec.scheduler.type == "asha"
    command = body["spec"]["trialTemplate"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["python", "-m", "torch.distributed.run"]
    exp = ExperimentView(name=body["metadata"]["name"], namespace="default", generation=1,
                         spec=spec, status={})
    plan = plan_tick(exp, [], [], None, "2026-01-01T00:00:00Z")
    assert len(plan.new_trials) == spec.max_concurrent_trials
    for new in plan.new_trials:
        assert spec.workers.count_for(new.params) in (2, 3)
        assert 1e-3 <= new.params["lr"] <= 3e-1


def test_the_trainer_reads_ray_trains_nested_train_loop_config() -> None:
    config = {"num_workers": 4, "lr": 0.5, "train_loop_config": {"lr": 3e-4, "epochs": 2}}
    hp = resolve(config, {"batch_size": 16})
    assert (hp.lr, hp.epochs, hp.batch_size) == (3e-4, 2, 16)
