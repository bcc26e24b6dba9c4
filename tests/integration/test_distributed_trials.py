"""Multi-worker trials on the local control plane: Indexed Jobs made by the real Job
controller, placed by the real scheduler, run by the local runner as gloo groups.

Each worker runs tests/support/worker_trial.py: the pods of a trial join one
torch.distributed group from the PET_* env the operator writes, every step is an
all_reduce over the group, and rank 0 alone reports and checkpoints.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kubetune import contract
from kubetune.api import validate_experiment_spec
from kubetune.search import BasicVariantSampler
from tests.integration.kube import wait_for
from tests.support.operator import CHECKPOINT_ROOT, ROOT, OperatorProcess
from tests.support.watching import follow

WORKER_TRIAL = ROOT / "tests" / "support" / "worker_trial.py"
GROUP, VERSION = "kubetune.io", "v1alpha1"


def worker_experiment(name: str, qualities: list[float], *, workers: dict[str, Any],
                      extra_space: dict[str, Any] | None = None, steps: int = 6,
                      sleep: float = 0.5, concurrency: int = 2,
                      scheduler: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "TuneExperiment",
        "metadata": {"name": name},
        "spec": {
            "objective": {"metric": "accuracy", "mode": "max"},
            "searchSpace": {"quality": {"grid": qualities}, "steps": {"value": steps},
                            "sleep": {"value": sleep}, **(extra_space or {})},
            "numSamples": 1,
            "maxConcurrentTrials": concurrency,
            "scheduler": scheduler or {"type": "fifo"},
            "pruneGracePeriodSeconds": 5,
            "workers": workers,
            "trialTemplate": {"spec": {"containers": [{
                "name": "trial", "image": "kubetune/worker:test",
                "command": ["python", str(WORKER_TRIAL)],
                "env": [{"name": "KUBETUNE_LINGER_SECONDS", "value": "3"},
                        {"name": "KUBETUNE_CHECKPOINT_ROOT", "value": CHECKPOINT_ROOT}],
                "resources": {"limits": {"nvidia.com/gpu": "1"}},
            }]}},
            **spec,
        },
    }


def custom(api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


def create(api_client: client.ApiClient, namespace: str, body: dict[str, Any]) -> None:
    custom(api_client).create_namespaced_custom_object(GROUP, VERSION, namespace,
                                                       "tuneexperiments", body)


def trials(api_client: client.ApiClient, namespace: str) -> dict[str, dict[str, Any]]:
    items = custom(api_client).list_namespaced_custom_object(GROUP, VERSION, namespace,
                                                             "tunetrials")["items"]
    return {t["metadata"]["name"]: t for t in items}


def wait_done(api_client: client.ApiClient, namespace: str, name: str,
              timeout: float = 300) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        exp = custom(api_client).get_namespaced_custom_object(GROUP, VERSION, namespace,
                                                              "tuneexperiments", name)
        return exp if (exp.get("status") or {}).get("phase") in ("Succeeded", "Failed") else None

    exp = wait_for(done, timeout=timeout, interval=0.5, what=f"{name} to end")
    assert exp["status"]["phase"] == "Succeeded", exp["status"]
    return dict(exp)


class GroupWatch:
    """A real watch of the namespace's pods and Jobs: every worker pod seen per attempt, each
    Job's creations, and at every event the GPUs held and whether a pod could not be placed."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.core = client.CoreV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.namespace = namespace
        self.ranks: dict[tuple[str, str], set[int]] = defaultdict(set)
        self.job_uids: dict[str, set[str]] = defaultdict(set)
        self.bound: dict[str, tuple[str, str]] = {}  # live bound pod -> (trial, attempt)
        self.unschedulable: list[str] = []
        self.partial_while_held: list[str] = []
        self.peak_gpus = 0
        # pod deleted while it ran -> the grace periods its deletion had, in order
        self.grace: dict[str, list[int]] = {}
        self.peak_trials = 0
        self.pods: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._pods, daemon=True),
                         threading.Thread(target=self._jobs, daemon=True)]
        for t in self._threads:
            t.start()

    def _pods(self) -> None:
        for event in follow(self.core.list_namespaced_pod, self.namespace, stop=self._stop):
            pod = event["object"]
            labels = pod.metadata.labels or {}
            trial, attempt = labels.get(contract.TRIAL_LABEL), labels.get(contract.ATTEMPT_LABEL)
            if trial is None:
                continue
            rank = contract.worker_rank(labels, pod.metadata.annotations)
            self.ranks[(trial, attempt)].add(rank)
            self.pods[trial][attempt].add(pod.metadata.name)
            for c in pod.status.conditions or []:
                if c.type == "PodScheduled" and c.status == "False":
                    self.unschedulable.append(f"{pod.metadata.name}: {c.message}")
            ended = event["type"] == "DELETED" or pod.status.phase in ("Succeeded", "Failed")
            grace = pod.metadata.deletion_grace_period_seconds
            if pod.metadata.deletion_timestamp and grace is not None and (
                    pod.status.phase == "Running" or pod.metadata.name in self.grace):
                seen = self.grace.setdefault(pod.metadata.name, [])
                if not seen or seen[-1] != grace:
                    seen.append(grace)
            if ended or not pod.spec.node_name:
                self.bound.pop(pod.metadata.name, None)
            else:
                self.bound[pod.metadata.name] = (trial, attempt)
            self._check()

    def _check(self) -> None:
        per_attempt: dict[tuple[str, str], int] = defaultdict(int)
        for key in self.bound.values():
            per_attempt[key] += 1
        self.peak_gpus = max(self.peak_gpus, len(self.bound))
        self.peak_trials = max(self.peak_trials, len({t for t, _ in per_attempt}))

    def _jobs(self) -> None:
        for event in follow(self.batch.list_namespaced_job, self.namespace, stop=self._stop):
            job = event["object"]
            self.job_uids[job.metadata.name].add(job.metadata.uid)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)


@pytest.fixture
def group_watch(api_client, namespace) -> Iterator[GroupWatch]:  # type: ignore[no-untyped-def]
    w = GroupWatch(api_client, namespace)
    yield w
    w.stop()


def worker_counts(body: dict[str, Any]) -> dict[str, int]:
    """Each trial's sampled worker count, from the same sampler the operator uses."""
    spec = validate_experiment_spec(body["spec"])
    sampler = BasicVariantSampler.from_spec(spec)
    total = len(body["spec"]["searchSpace"]["quality"]["grid"])
    assert spec.workers is not None
    return {f"{body['metadata']['name']}-{i}": spec.workers.count_for(sampler.config(i))
            for i in range(total)}


def live_pods(api_client: client.ApiClient, namespace: str, trial: str) -> list[str]:
    return [p.metadata.name for p in client.CoreV1Api(api_client).list_namespaced_pod(
        namespace, label_selector=f"{contract.TRIAL_LABEL}={trial}").items]


def test_sampled_worker_counts_run_that_many_pods_as_one_group_and_pruning_removes_every_worker(
        api_client, namespace, operator: OperatorProcess, group_watch: GroupWatch):
    qualities = [0.9, 0.2, 0.85, 0.1, 0.8, 0.15]
    body = worker_experiment(
        "ddp", qualities, workers={"parameter": "num_workers"},
        extra_space={"num_workers": {"choice": [2, 3]}}, steps=9, sleep=0.4,
        scheduler={"type": "asha", "maxT": 9, "gracePeriod": 1, "reductionFactor": 3},
        searchAlgorithm={"type": "random", "seed": 3})
    counts = worker_counts(body)
    assert set(counts.values()) == {2, 3}, f"the seed should sample both counts: {counts}"
    create(api_client, namespace, body)
    exp = wait_done(api_client, namespace, "ddp", timeout=420)
    group_watch.stop()
    all_trials = trials(api_client, namespace)
    assert sorted(all_trials) == sorted(counts)
    for name, count in counts.items():
        status = all_trials[name]["status"]
        assert group_watch.ranks[(name, "1")] == set(range(count)), (name, group_watch.ranks)
        assert len(group_watch.pods[name]["1"]) == count, "one pod per rank, none replaced"
        if status["state"] == "Succeeded":
            # rank 0 reported for the whole group: every rank took part in each step
            assert status["metrics"]["workers"] == count
            assert status["metrics"]["group_sum"] == count * (count + 1) / 2
    pruned = [n for n, t in all_trials.items() if t["status"]["state"] == "Pruned"]
    assert pruned, "ASHA should prune the low curves"
    for name in pruned:
        # every worker of a pruned trial is sent SIGTERM with the prune grace period
        stopped = [p for p in group_watch.pods[name]["1"] if p in group_watch.grace]
        assert stopped, f"{name}'s workers should have been stopped while running"
        # (the runner ends a pod whose processes exited with a grace period of 0)
        assert all(group_watch.grace[p][0] == 5 for p in stopped), group_watch.grace
        # every worker pod of a pruned trial goes, with its Job
        wait_for(lambda n=name: not live_pods(api_client, namespace, n), timeout=60,
                 what=f"{name}'s worker pods to go")
        # (foreground deletion: the Job goes just after its last pod)
        wait_for(lambda n=name: not [
            j for j in client.BatchV1Api(api_client).list_namespaced_job(namespace).items
            if j.metadata.labels.get(contract.TRIAL_LABEL) == n], timeout=60,
            what=f"{name}'s Job to go")
    best = max((n for n, t in all_trials.items() if t["status"]["state"] == "Succeeded"),
               key=lambda n: all_trials[n]["status"]["metrics"]["accuracy"])
    assert exp["status"]["bestTrial"]["name"] == best
    # one Job per attempt: each created once
    assert all(len(uids) == 1 for uids in group_watch.job_uids.values()), group_watch.job_uids
    assert set(group_watch.job_uids) == {f"{n}-a1" for n, c in counts.items()}


def cli(cluster: Any, namespace: str, *args: str) -> str:
    from click.testing import CliRunner

    from kubetune.client.cli import main

    result = CliRunner().invoke(main, [*args, "-n", namespace, "--kubeconfig",
                                       str(cluster.kubeconfig)], catch_exceptions=False,
                                env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    return result.output


def _worker_pid(trial: str, rank: int) -> int | None:
    """The local process of a worker (the runner runs pods as processes of this user)."""
    want = {f"{contract.ENV_TRIAL}={trial}".encode(), f"{contract.ENV_PET_NODE_RANK}={rank}".encode(),
            f"{contract.ENV_ATTEMPT}=1".encode()}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = set((entry / "environ").read_bytes().split(b"\0"))
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if want <= environ and b"worker_trial.py" in cmdline:
            return int(entry.name)
    return None


def _rank0_log(cluster, namespace: str, pod_prefix: str) -> str:  # type: ignore[no-untyped-def]
    logs = Path(cluster.state_dir) / "pods" / namespace
    return "".join(p.read_text(errors="replace") for p in sorted(logs.glob(f"{pod_prefix}*.log")))


def test_a_killed_worker_restarts_the_whole_trial_from_rank_0s_checkpoint(
        api_client, namespace, operator: OperatorProcess, cluster, group_watch: GroupWatch):
    create(api_client, namespace, worker_experiment(
        "kill", [0.7], workers={"count": 2}, steps=10, sleep=0.5, trialRetries=1))
    # wait until rank 0 has checkpointed a few steps, then SIGKILL rank 1's process
    def saved() -> int:
        steps = [int(p.name.split("-")[1]) for p in Path(CHECKPOINT_ROOT, namespace).rglob("step-*")
                 if p.name.split("-")[1].isdigit()]
        return max(steps, default=0) >= 3

    wait_for(saved, timeout=180, what="rank 0's checkpoint at step 3 or later")
    pid = wait_for(lambda: _worker_pid("kill-0", 1), timeout=10, what="rank 1's process")
    os.kill(pid, signal.SIGKILL)
    wait_done(api_client, namespace, "kill", timeout=240)
    status = trials(api_client, namespace)["kill-0"]["status"]
    assert status["state"] == "Succeeded" and status["attempts"] == 2, status
    assert int(status.get("disruptions") or 0) == 0, "a killed worker is a failure, charged"
    # attempt 2 resumed past the step attempt 1 had saved
    assert status["metrics"]["start_step"] >= 4, status["metrics"]
    group_watch.stop()
    assert group_watch.ranks[("kill-0", "2")] == {0, 1}
    assert set(group_watch.job_uids) == {"kill-0-a1", "kill-0-a2"}
    assert all(len(u) == 1 for u in group_watch.job_uids.values())
    # the CLI: each worker's log by rank and attempt, and where the workers ran
    first = cli(cluster, namespace, "logs", "kill-0", "--rank", "1", "--attempt", "1")
    assert "rank 1 of 2 joined" in first and "starts at step 1" in first, first
    latest = cli(cluster, namespace, "logs", "kill-0", "--rank", "0")
    assert "rank 0 of 2 joined" in latest and "starts at step 1\n" not in latest, latest
    table = cli(cluster, namespace, "trials", "kill")
    nodes = {p.spec.node_name for p in client.CoreV1Api(api_client).list_namespaced_pod(
        namespace, label_selector=f"{contract.ATTEMPT_LABEL}=2").items}
    assert "workers" in table and any(f"0@{n}" in table or f"1@{n}" in table for n in nodes), table


@pytest.mark.parametrize("how", ["kubelet", "eviction-api"])
def test_an_evicted_worker_restarts_the_group_without_being_charged(
        how: str, api_client, namespace, operator: OperatorProcess, group_watch: GroupWatch):
    create(api_client, namespace, worker_experiment(
        "evict", [0.7], workers={"count": 2}, steps=8, sleep=0.5, trialRetries=0))
    core = client.CoreV1Api(api_client)

    def rank1_running() -> Any:
        for p in core.list_namespaced_pod(namespace, label_selector=(
                f"{contract.TRIAL_LABEL}=evict-0,{contract.JOB_COMPLETION_INDEX}=1")).items:
            if p.status.phase == "Running":
                return p
        return None

    victim = wait_for(rank1_running, timeout=180, what="rank 1 running")

    def workers_written() -> Any:
        workers = (trials(api_client, namespace)["evict-0"].get("status") or {}).get("workers")
        return workers if workers and len(workers) == 2 and all(
            w.get("node") for w in workers) else None

    workers = wait_for(workers_written, timeout=30, what="the trial's workers in its status")
    assert [w["rank"] for w in workers] == [0, 1]
    assert workers[1]["pod"] == victim.metadata.name
    assert workers[1]["node"] == victim.spec.node_name
    time.sleep(2)
    if how == "kubelet":
        # what a kubelet writes when it preempts a pod: the DisruptionTarget condition, Failed
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        core.patch_namespaced_pod_status(victim.metadata.name, namespace, {"status": {
            "phase": "Failed", "reason": "Preempting", "message": "preempted by a test",
            "conditions": [{"type": "DisruptionTarget", "status": "True",
                            "reason": "TerminationByKubelet", "message": "preempted by a test",
                            "lastTransitionTime": now}]}})
    else:
        # the apiserver adds DisruptionTarget and deletes the pod; the runner ends it
        core.create_namespaced_pod_eviction(victim.metadata.name, namespace, {
            "apiVersion": "policy/v1", "kind": "Eviction",
            "metadata": {"name": victim.metadata.name, "namespace": namespace}})
    wait_done(api_client, namespace, "evict", timeout=240)
    status = trials(api_client, namespace)["evict-0"]["status"]
    # trialRetries 0: a charged failure would have failed the trial
    assert status["state"] == "Succeeded", status
    assert status["attempts"] == 2 and status["disruptions"] == 1, status
    group_watch.stop()
    assert group_watch.ranks[("evict-0", "2")] == {0, 1}


def test_whole_trial_admission_never_places_part_of_a_trial(
        api_client, namespace, operator: OperatorProcess, cluster, group_watch: GroupWatch):
    core = client.CoreV1Api(api_client)
    nodes = sorted(n.metadata.name for n in core.list_node().items)
    gpus = {n.metadata.name: int(n.status.allocatable.get("nvidia.com/gpu", "0"))
            for n in core.list_node().items}
    # 8 fake GPUs: cordon every node past the first 8 GPUs' worth
    keep, total = [], 0
    for n in nodes:
        if total < 8:
            keep.append(n)
            total += gpus[n]
    assert total == 8, gpus
    cordoned = [n for n in nodes if n not in keep]
    for n in cordoned:
        core.patch_node(n, {"spec": {"unschedulable": True}})
    try:
        create(api_client, namespace, worker_experiment(
            "gang", [0.5, 0.6, 0.7, 0.8, 0.9], workers={"count": 3}, steps=8, sleep=0.4,
            concurrency=3))  # 3.2 s of steps: two trials admitted together overlap
        saw_limited = wait_for(lambda: next((
            c for c in (custom(api_client).get_namespaced_custom_object(
                GROUP, VERSION, namespace, "tuneexperiments", "gang").get("status") or {}
            ).get("conditions") or [] if c["type"] == "CapacityLimited"
            and c["status"] == "True"), None), timeout=180, what="CapacityLimited")
        assert "needs 3 pods x 1 nvidia.com/gpu" in saw_limited["message"], saw_limited
        wait_done(api_client, namespace, "gang", timeout=420)
    finally:
        for n in cordoned:
            core.patch_node(n, {"spec": {"unschedulable": None}})
    group_watch.stop()
    # never a pod the scheduler could not place: no trial ever held part of its GPUs
    assert group_watch.unschedulable == [], group_watch.unschedulable[:3]
    assert group_watch.peak_gpus <= 8
    assert group_watch.peak_trials == 2, "two 3-worker trials fit 8 GPUs, a third never"
    assert len(trials(api_client, namespace)) == 5


def test_operator_killed_three_times_during_a_multi_worker_experiment_decides_the_same(
        api_client, namespace, operator: OperatorProcess, group_watch: GroupWatch):
    qualities = [0.3, 0.9, 0.5, 0.8]
    scheduler = {"type": "asha", "maxT": 6, "gracePeriod": 1, "reductionFactor": 3,
                 "decisionOrder": "trialIndex"}
    create(api_client, namespace, worker_experiment("calm", qualities, workers={"count": 2},
                                                    scheduler=scheduler, sleep=0.4))
    calm = wait_done(api_client, namespace, "calm", timeout=420)
    create(api_client, namespace, worker_experiment("killed", qualities, workers={"count": 2},
                                                    scheduler=scheduler, sleep=0.4))
    kills = 0
    try:
        for delay in (3.0, 4.0, 5.0):
            time.sleep(delay)
            operator.kill()
            kills += 1
            time.sleep(1.5)
            operator.start()
    finally:
        if operator.proc is None:
            operator.start()
    killed = wait_done(api_client, namespace, "killed", timeout=420)
    assert kills == 3
    best = (calm["status"]["bestTrial"]["name"].rsplit("-", 1)[1],
            killed["status"]["bestTrial"]["name"].rsplit("-", 1)[1])
    assert best[0] == best[1], f"best trial uninterrupted {best[0]} != after kills {best[1]}"
    states = {n: t["status"]["state"] for n, t in trials(api_client, namespace).items()}
    assert sorted(n for n in states if n.startswith("killed-")) == [f"killed-{i}" for i in
                                                                    range(len(qualities))]
    group_watch.stop()
    killed_jobs = {n: u for n, u in group_watch.job_uids.items() if n.startswith("killed-")}
    assert set(killed_jobs) == {f"killed-{i}-a1" for i in range(len(qualities))}, killed_jobs
    assert all(len(u) == 1 for u in killed_jobs.values()), "one Job per attempt"


def test_the_apiserver_refuses_changing_workers_and_giving_both_count_and_parameter(
        api_client, namespace, crds):
    from kubernetes.client.exceptions import ApiException

    body = worker_experiment("fixed", [0.5], workers={"count": 2})
    both = worker_experiment("both", [0.5], workers={"count": 2, "parameter": "quality"})
    with pytest.raises(ApiException) as refused:
        create(api_client, namespace, both)
    assert refused.value.status == 422 and "exactly one of count" in str(refused.value.body)
    create(api_client, namespace, body)
    for change in ({"workers": {"count": 3}}, {"workers": None}):
        with pytest.raises(ApiException) as refused:
            custom(api_client).patch_namespaced_custom_object(
                GROUP, VERSION, namespace, "tuneexperiments", "fixed", {"spec": change})
        assert refused.value.status == 422
        assert "spec.workers cannot change" in str(refused.value.body), refused.value.body
    # the limits stay editable
    custom(api_client).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "tuneexperiments", "fixed", {"spec": {"maxConcurrentTrials": 4}})
