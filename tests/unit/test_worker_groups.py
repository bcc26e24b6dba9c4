"""A multi-worker attempt folded into one view, and whole-trial admission (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from kubetune import contract
from kubetune.controller.planner.admission import Capacity, admit_in_order, capacity_message
from kubetune.controller.planner.groups import group_view, read_groups

pytestmark = pytest.mark.unit

JOB: dict[str, Any] = {"metadata": {"name": "x-1-a1", "labels": {contract.TRIAL_LABEL: "x-1",
                                                  contract.ATTEMPT_LABEL: "1"},
                    "ownerReferences": [{"kind": "TuneTrial", "uid": "t"}]},
       "spec": {"completions": 3, "parallelism": 3}}


def pod(rank: int, phase: str = "Running", *, exit_code: int | None = None,
        disruption: bool = False, node: str = "n0", message: str = "",
        created: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if exit_code is not None:
        status["containerStatuses"] = [{"name": "t", "state": {"terminated": {
            "exitCode": exit_code, "message": message}}}]
    elif phase == "Running":
        status["containerStatuses"] = [{"name": "t", "state": {"running": {
            "startedAt": "2026-01-01T00:00:05Z"}}}]
    if disruption:
        status["conditions"] = [{"type": "DisruptionTarget", "status": "True",
                                 "reason": "EvictionByEvictionAPI", "message": "evicted"}]
    return {"metadata": {"name": f"x-1-a1-{rank}-abcde{rank}", "creationTimestamp": created,
                         "labels": {contract.TRIAL_LABEL: "x-1", contract.ATTEMPT_LABEL: "1",
                                    "batch.kubernetes.io/job-name": "x-1-a1",
                                    contract.JOB_COMPLETION_INDEX: str(rank)},
                         "annotations": {contract.JOB_COMPLETION_INDEX: str(rank)}},
            "spec": {"nodeName": node, "containers": [{"name": "t", "image": "i"}]},
            "status": status}


def test_all_running_is_running_named_after_rank_0() -> None:
    view = group_view(JOB, [pod(2), pod(0), pod(1)])
    assert view.name == "x-1-a1-0-abcde0" and view.trial == "x-1" and view.attempt == 1
    assert view.phase == "Running" and not view.done and view.running_since
    assert view.owner_uid == "t"


def test_some_pods_missing_or_pending_is_pending() -> None:
    assert group_view(JOB, [pod(0), pod(1)]).phase == "Pending"
    assert group_view(JOB, [pod(0), pod(1), pod(2, "Pending")]).phase == "Pending"
    assert group_view(JOB, []).name == "x-1-a1"


def test_a_failed_worker_fails_the_attempt_and_holds_until_all_ended() -> None:
    view = group_view(JOB, [pod(0), pod(1, "Failed", exit_code=137, node="n3"), pod(2)])
    assert view.done and view.failed and not view.finished and not view.disruption
    assert view.exit_code == 137 and "worker 1" in view.message and "n3" in view.message
    ended = group_view(JOB, [pod(0, "Failed", exit_code=1), pod(1, "Failed", exit_code=137),
                             pod(2, "Failed", exit_code=1)])
    assert ended.finished and ended.failed and "worker 0" in ended.message


def test_a_disrupted_worker_wins_over_the_failures_it_caused() -> None:
    view = group_view(JOB, [pod(0, "Failed", exit_code=1), pod(1, "Failed", exit_code=143,
                                                               disruption=True),
                            pod(2, "Failed", exit_code=1)])
    assert view.failed and view.disruption.startswith("worker 1")


def test_rank_0_exit_ends_the_attempt_with_its_message() -> None:
    view = group_view(JOB, [pod(0, "Succeeded", exit_code=0, message='{"step":3}'),
                            pod(1), pod(2)])
    assert view.done and not view.failed and not view.finished and view.message == '{"step":3}'
    ended = group_view(JOB, [pod(0, "Succeeded", exit_code=0), pod(1, "Succeeded", exit_code=0),
                             pod(2, "Succeeded", exit_code=0)])
    assert ended.finished and ended.phase == "Succeeded"


def test_read_groups_splits_plain_pods() -> None:
    plain = {"metadata": {"name": "y-0-1", "labels": {contract.TRIAL_LABEL: "y-0"}}}
    groups, rest = read_groups([JOB], [pod(0), plain])
    assert rest == [plain]
    assert groups.job_of_view == {"x-1-a1-0-abcde0": "x-1-a1", "x-1-a1": "x-1-a1"}
    assert [w.rank for w in groups.workers["x-1-a1"]] == [0]


def node(name: str, gpus: int, cordoned: bool = False) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"unschedulable": cordoned},
            "status": {"allocatable": {"nvidia.com/gpu": str(gpus)}}}


def gpu_pod(node_name: str | None, gpus: int, phase: str = "Running",
            job: str = "") -> dict[str, Any]:
    labels = {"batch.kubernetes.io/job-name": job} if job else {}
    return {"metadata": {"name": "p", "namespace": "ns", "labels": labels},
            "spec": {"nodeName": node_name, "containers": [
                {"resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]},
            "status": {"phase": phase}}


def test_free_gpus_node_by_node_whole_pods() -> None:
    cap = Capacity.read([node("a", 4), node("b", 4), node("c", 8, cordoned=True)],
                        [gpu_pod("a", 3), gpu_pod("b", 1), gpu_pod("b", 4, "Succeeded")])
    assert cap.free == {"a": 1, "b": 3}
    assert cap.fits(2, 2) is False  # 4 GPUs free, but only one whole 2-GPU pod
    assert cap.fits(1, 2) and cap.fits(4, 1) and not cap.fits(5, 1)


def test_demand_not_placed_yet_is_counted() -> None:
    job = {"metadata": {"name": "j", "namespace": "ns"},
           "spec": {"parallelism": 3, "template": {"spec": {"containers": [
               {"resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}}}
    # one pod of the Job waits for the scheduler, one is not made yet: 2 GPUs spoken for
    cap = Capacity.read([node("a", 4)], [gpu_pod("a", 1, job="j"), gpu_pod(None, 1, "Pending",
                                                                          job="j")], [job])
    assert cap.free == {"a": 1}


def test_eight_gpus_three_workers_admit_two_trials_then_wait() -> None:
    cap = Capacity.read([node("a", 4), node("b", 4)], [])
    admitted, waiting = admit_in_order(cap, [("t0", 3, 1), ("t1", 3, 1), ("t2", 3, 1),
                                             ("t3", 1, 1)])
    assert admitted == ["t0", "t1"]
    assert [w.trial for w in waiting] == ["t2", "t3"]  # t3 would fit; it waits behind t2
    assert waiting[0].free == 2
    message = capacity_message(waiting)
    assert "t2 needs 3 pods x 1 nvidia.com/gpu" in message and "2 free" in message


def test_cpu_trials_are_always_admitted() -> None:
    admitted, waiting = admit_in_order(Capacity.read([], []), [("t0", 4, 0)])
    assert admitted == ["t0"] and waiting == []


def test_live_trials_get_their_workers_written_once() -> None:
    from kubetune.controller.planner.actions import Plan
    from kubetune.controller.planner.groups import plan_worker_status
    from kubetune.controller.planner.views import TrialView

    groups, _ = read_groups([JOB], [pod(0, node="n0"), pod(1, node="n1")])
    trial = TrialView(name="x-1", index=1, params={}, status={"state": "Running"})
    plan = Plan()
    plan_worker_status(plan, [trial], groups)
    written = plan.trial_status["x-1"].merge_patch()["workers"]
    assert written == [{"rank": 0, "pod": "x-1-a1-0-abcde0", "node": "n0", "phase": "Running"},
                       {"rank": 1, "pod": "x-1-a1-1-abcde1", "node": "n1", "phase": "Running"}]
    again = Plan()
    plan_worker_status(again, [TrialView(name="x-1", index=1, params={},
                                         status={"state": "Running", "workers": written})], groups)
    assert again.trial_status == {}, "unchanged workers are not written again"
    ended = Plan()
    plan_worker_status(ended, [TrialView(name="x-1", index=1, params={},
                                         status={"state": "Pruned"})], groups)
    assert ended.trial_status == {}


def _multi_experiment(cap: int, trials_total: int) -> Any:
    from kubetune.api import validate_experiment_spec
    from kubetune.controller.planner import ExperimentView

    spec = validate_experiment_spec({
        "objective": {"metric": "acc", "mode": "max"},
        "searchSpace": {"q": {"grid": list(range(trials_total))}},
        "maxConcurrentTrials": cap, "scheduler": {"type": "fifo"},
        "workers": {"count": 3},
        "trialTemplate": {"spec": {"containers": [{
            "name": "t", "image": "i", "resources": {"limits": {"nvidia.com/gpu": 1}}}]}},
    })
    return ExperimentView(name="gang", namespace="ns", generation=1, spec=spec, status={})


def test_a_tick_left_waiting_for_capacity_is_not_followed_at_once() -> None:
    from kubetune.controller.planner import plan_tick
    from kubetune.controller.planner.admission import plan_admission
    from kubetune.controller.planner.plan import CREATES_PER_TICK

    exp = _multi_experiment(cap=CREATES_PER_TICK + 8, trials_total=CREATES_PER_TICK + 8)
    now = "2026-01-01T00:00:00Z"
    fits = Capacity.read([node(f"n{i}", 8) for i in range(CREATES_PER_TICK)], [])
    plan = plan_tick(exp, [], [], None, now)
    assert plan.more_to_create, "the creates were bounded"
    plan_admission(plan, exp.spec, [], fits, now, [], 1, "gang")
    assert plan.more_to_create and len(plan.new_pods) == CREATES_PER_TICK, "all fit: go on"
    plan = plan_tick(exp, [], [], None, now)
    plan_admission(plan, exp.spec, [], Capacity.read([node("a", 4)], []), now, [], 1, "gang")
    assert len(plan.new_pods) == 1 and not plan.more_to_create, \
        "a trial waits for GPUs: the loop ticks again on a wake or the interval"


def test_a_tick_admits_what_fits_and_the_rest_waits_in_its_slot() -> None:
    from kubetune.controller.planner import TrialView, plan_tick
    from kubetune.controller.planner.admission import plan_admission

    exp = _multi_experiment(cap=3, trials_total=5)
    now = "2026-01-01T00:00:00Z"
    plan = plan_tick(exp, [], [], None, now)
    assert [p.trial for p in plan.new_pods] == ["gang-0", "gang-1", "gang-2"]
    waiting = plan_admission(plan, exp.spec, [], Capacity.read([node("a", 4), node("b", 4)], []),
                             now, [], 1, "gang")
    assert [p.trial for p in plan.new_pods] == ["gang-0", "gang-1"]
    assert [w.trial for w in waiting] == ["gang-2"]
    assert len(plan.new_trials) == 3, "the waiting trial is created and keeps its slot"
    assert plan.experiment_status is not None
    limited = next(c for c in plan.experiment_status.conditions or []
                   if c.type == "CapacityLimited")
    assert limited.status == "True" and "gang-2 needs 3 pods" in str(limited.message)
    assert any(e.reason == "CapacityLimited" for e in plan.events)
    # next tick: gang-0 and gang-1 run (6 GPUs held); gang-2, planned first, still waits
    trials = [TrialView(name=f"gang-{i}", index=i, params={"q": i},
                        status={"state": "Running", "attempts": 1} if i < 2 else {})
              for i in range(3)]
    jobs = [{**JOB, "metadata": {**JOB["metadata"], "name": f"gang-{i}-a1", "labels": {
        contract.TRIAL_LABEL: f"gang-{i}", contract.ATTEMPT_LABEL: "1"}}} for i in range(2)]
    groups, _ = read_groups(jobs, [])
    plan = plan_tick(exp, trials, groups.views, None, now)
    assert [p.trial for p in plan.new_pods] == ["gang-2"]
    held = Capacity.read([node("a", 4), node("b", 4)],
                         [gpu_pod("a", 1)] * 3 + [gpu_pod("b", 1)] * 3)
    plan_admission(plan, exp.spec, trials, held, now, [], 1, "gang")
    assert plan.new_pods == [] and plan.trial_status["gang-2"].reason == "CapacityLimited"
    assert not plan.new_trials, "no trial beyond the cap while gang-2 waits"
