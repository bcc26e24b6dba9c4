"""What wakes an experiment's reconcile loop, and how the loop ticks (wake.py)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import kopf
import pytest
from kopf._core.intents.stoppers import DaemonStopper, DaemonStoppingReason

from kubetune.controller import handlers, wake
from kubetune.controller.context import OperatorContext
from kubetune.controller.metrics import OperatorMetrics
from kubetune.controller.settings import OperatorSettings

pytestmark = pytest.mark.unit

KEY = ("ns", "exp")


def pod(name: str = "exp-0-1", phase: str = "Running", deleting: bool = False,
        terminated: tuple[str, ...] = (), experiment: str = "exp") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "resourceVersion": "7",
                            "labels": {"kubetune.io/experiment": experiment}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    statuses = [{"name": c, "state": {"terminated": {"exitCode": 0}}} for c in terminated]
    statuses.append({"name": "sidecar", "state": {"running": {"startedAt": "x"}}})
    return {"kind": "Pod", "metadata": meta, "status": {"phase": phase,
                                                       "containerStatuses": statuses}}


def trial(state: str | None, name: str = "exp-0") -> dict[str, Any]:
    return {"kind": "TuneTrial", "metadata": {
        "name": name, "namespace": "ns", "labels": {"kubetune.io/experiment": "exp"}},
        "status": {"state": state} if state else {}}


def woken(wakes: wake.Wakes, kind: str, event: str | None, body: dict[str, Any]) -> bool:
    """Feed one watch event as handlers.py does; whether the experiment's waiter was set."""
    waiter = wakes._waiters[KEY]
    waiter.event.clear()
    if wakes.matters(kind, event, body):
        wakes.changed(kind, event, body)
    return waiter.event.is_set()


@pytest.fixture
def wakes() -> wake.Wakes:
    async def make() -> wake.Wakes:
        w = wake.Wakes()
        w.waiter(KEY)
        return w
    return asyncio.run(make())


def test_a_pod_that_finishes_wakes_its_experiment_and_its_status_updates_do_not(
        wakes: wake.Wakes) -> None:
    assert not woken(wakes, "pods", "ADDED", pod(phase="Pending"))
    assert not woken(wakes, "pods", "MODIFIED", pod(phase="Running"))  # kubelet updates
    assert not woken(wakes, "pods", "MODIFIED", pod(phase="Running"))
    assert woken(wakes, "pods", "MODIFIED", pod(phase="Running", terminated=("trial",)))
    assert woken(wakes, "pods", "MODIFIED", pod(phase="Succeeded", terminated=("trial",)))
    assert not woken(wakes, "pods", "MODIFIED", pod(phase="Succeeded", terminated=("trial",)))
    assert woken(wakes, "pods", "DELETED", pod(phase="Succeeded", terminated=("trial",)))


@pytest.mark.parametrize("phase", ["Failed", "Succeeded"])
def test_a_pod_first_seen_finished_wakes_its_experiment(wakes: wake.Wakes, phase: str) -> None:
    assert woken(wakes, "pods", None, pod(phase=phase))


def test_a_pod_deleted_by_someone_else_wakes_and_one_the_operator_deleted_does_not(
        wakes: wake.Wakes) -> None:
    assert not woken(wakes, "pods", "ADDED", pod("a"))
    assert woken(wakes, "pods", "MODIFIED", pod("a", deleting=True))  # an eviction, a user
    assert not woken(wakes, "pods", "ADDED", pod("b"))
    wakes.written("pods", pod("b", deleting=True))  # the apiserver's answer to our DELETE
    assert not woken(wakes, "pods", "MODIFIED", pod("b", deleting=True))
    assert woken(wakes, "pods", "DELETED", pod("b", deleting=True))  # gone: its GPU is free


def test_the_operators_own_trial_status_patches_wake_nothing(wakes: wake.Wakes) -> None:
    wakes.written("trials", trial("Pending"))
    assert not woken(wakes, "trials", "ADDED", trial(None))
    for state in ("Running", "Pruned"):
        wakes.written("trials", trial(state))
        assert not woken(wakes, "trials", "MODIFIED", trial(state))
    assert woken(wakes, "trials", "DELETED", trial("Pruned"))


def test_a_trial_state_the_operator_did_not_write_wakes_its_experiment(
        wakes: wake.Wakes) -> None:
    assert not woken(wakes, "trials", "ADDED", trial(None))
    assert woken(wakes, "trials", "MODIFIED", trial("Running"))


def test_a_rejected_write_or_another_experiments_object_wakes_nothing(wakes: wake.Wakes) -> None:
    wakes.written("pods", {"kind": "Status", "metadata": {}, "status": "Failure"})
    assert len(wakes) == 0
    assert not woken(wakes, "pods", "MODIFIED", pod(phase="Failed", experiment="other"))
    assert not woken(wakes, "pods", "MODIFIED", {"metadata": {"name": "x", "namespace": "ns"}})


def test_what_it_remembers_of_an_object_goes_with_the_object(wakes: wake.Wakes) -> None:
    names = [f"exp-{i}-1" for i in range(50)]
    for name in names:  # a signature from the operator's own write and from the watch
        wakes.written("pods", pod(name, deleting=True))
        woken(wakes, "pods", "MODIFIED", pod(name, phase="Succeeded", deleting=True))
        woken(wakes, "trials", "MODIFIED", trial("Pruned", name=name))
    assert len(wakes) == 100
    for name in names:
        woken(wakes, "pods", "DELETED", pod(name, phase="Succeeded", deleting=True))
        woken(wakes, "trials", "DELETED", trial("Pruned", name=name))
    assert len(wakes) == 0, "memory does not grow with the trials ever run"


class Loop:
    """run_loop with kopf's own stop flag and a tick that records when it ran."""

    def __init__(self, interval: float = 30.0, fail: list[float | None] | None = None,
                 took: float = 0.0, again: list[bool] | None = None) -> None:
        self.stopper = DaemonStopper()
        self.waiter = wake.Waiter()
        self.ticks: list[float] = []
        self.running = 0
        self.overlapped = False
        self.fail = list(fail or [])
        self.took = took
        self.interval = interval
        self.again = list(again or [])

    async def tick(self) -> bool:
        self.running += 1
        self.overlapped |= self.running > 1
        self.ticks.append(time.monotonic())
        await asyncio.sleep(self.took)
        self.running -= 1
        if self.fail:
            raise kopf.TemporaryError("apiserver down", delay=self.fail.pop(0))
        return self.again.pop(0) if self.again else False

    def start(self) -> asyncio.Task[None]:
        return asyncio.create_task(wake.run_loop(
            self.stopper.async_waiter, self.waiter, self.tick, interval=self.interval,
            retry=0.4, settle=0.05))

    async def stop(self, task: asyncio.Task[None]) -> float:
        started = time.monotonic()
        self.stopper.set(reason=DaemonStoppingReason.RESOURCE_DELETED)
        await asyncio.wait_for(task, 2)
        return time.monotonic() - started


def test_a_burst_of_wakes_gives_one_prompt_tick_and_the_loop_stops_at_once() -> None:
    async def scenario() -> tuple[list[float], float, float]:
        loop = Loop(interval=30)
        task = loop.start()
        await asyncio.sleep(0.2)  # the first tick, at once
        woke = time.monotonic()
        for _ in range(20):
            loop.waiter.event.set()
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.3)
        return [t - woke for t in loop.ticks], await loop.stop(task), woke

    ticks, stopping, _ = asyncio.run(scenario())
    assert len(ticks) == 2, ticks
    assert 0.04 < ticks[1] < 0.25, "one tick a settle after the burst, none for the rest"
    assert stopping < 0.5


def test_without_wakes_the_loop_ticks_every_interval() -> None:
    async def scenario() -> list[float]:
        loop = Loop(interval=0.2)
        task = loop.start()
        await asyncio.sleep(0.7)
        await loop.stop(task)
        return loop.ticks

    ticks = asyncio.run(scenario())
    assert len(ticks) in (3, 4), ticks
    assert all(0.19 < b - a < 0.4 for a, b in itertools.pairwise(ticks))


def test_a_failed_tick_waits_its_delay_whatever_wakes_it() -> None:
    async def scenario() -> list[float]:
        loop = Loop(interval=30, fail=[0.5, None])
        task = loop.start()
        for _ in range(40):  # wakes all along the backoff
            loop.waiter.event.set()
            await asyncio.sleep(0.025)
        await asyncio.sleep(0.5)
        await loop.stop(task)
        return loop.ticks

    ticks = asyncio.run(scenario())
    assert 0.49 < ticks[1] - ticks[0] < 0.8, "the error's own delay, not cut short by wakes"
    assert 0.39 < ticks[2] - ticks[1] < 0.7, "the retry delay for an error without one"


def test_woken_ticks_never_overlap_and_follow_a_long_tick_after_the_settle() -> None:
    async def scenario() -> Loop:
        loop = Loop(interval=30, took=0.2)
        task = loop.start()
        for _ in range(60):
            loop.waiter.event.set()
            await asyncio.sleep(0.02)
        await loop.stop(task)
        return loop

    loop = asyncio.run(scenario())
    assert not loop.overlapped
    gaps = [b - a for a, b in itertools.pairwise(loop.ticks)]
    # 0.2 s of tick, then the 0.05 s settle: no wait as long as the tick took
    assert len(gaps) >= 3 and all(0.24 < g < 0.36 for g in gaps), gaps


def test_a_tick_that_left_work_is_followed_after_the_settle_not_the_interval() -> None:
    async def scenario() -> list[float]:
        loop = Loop(interval=30, took=0.2, again=[True, True, False])
        task = loop.start()
        await asyncio.sleep(1.0)  # no wake at all
        await loop.stop(task)
        return loop.ticks

    ticks = asyncio.run(scenario())
    assert len(ticks) == 3, ticks  # the third left nothing: the loop waits for the interval
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert all(0.24 < g < 0.38 for g in gaps), gaps  # 0.2 s of tick, then the 0.05 s settle


def test_a_finished_experiments_loop_ticks_once_then_idles_until_stopped() -> None:
    registry = kopf.OperatorRegistry()
    handlers.register(registry, OperatorSettings(tick_seconds=0.05))
    (daemon,) = registry._spawning.get_all_handlers()
    settings = OperatorSettings(tick_seconds=0.05)
    ctx = OperatorContext(settings=settings, gateway=cast(Any, None),
                          prometheus=cast(Any, None), metrics=OperatorMetrics())
    body = kopf.Body({"metadata": {"name": "exp", "namespace": "ns", "uid": "u1",
                                   "generation": 2},
                      "status": {"phase": "Succeeded", "observedGeneration": 2}})

    async def scenario() -> float:
        stopper = DaemonStopper()
        memo = kopf.Memo(kubetune=ctx, wakes=wake.Wakes(),
                         executor=ThreadPoolExecutor(2))
        task = asyncio.create_task(daemon.fn(
            body=body, memo=memo, logger=logging.getLogger("test"),
            stopped=stopper.async_waiter))
        await asyncio.sleep(0.2)
        memo.wakes._waiters[KEY].event.set()  # a wake of a finished experiment: no tick
        await asyncio.sleep(0.3)
        stopper.set(reason=DaemonStoppingReason.RESOURCE_DELETED)
        await asyncio.wait_for(task, 1)
        assert not memo.wakes._waiters, "a stopped loop leaves no waiter behind"
        return ctx.metrics.registry.get_sample_value("kubetune_reconcile_ticks_total") or 0.0

    assert asyncio.run(scenario()) == 1.0


def test_the_log_drops_a_wake_handlers_success_and_keeps_everything_else() -> None:
    quiet = wake.QuietWakes()

    def kept(message: str, *args: object) -> bool:
        return quiet.filter(logging.LogRecord("kopf.objects", logging.INFO, __file__, 1,
                                              message, args, None))

    assert not kept("Handler 'wake-pods' succeeded.")
    assert not kept("Handler %r succeeded.", "wake-trials")
    assert kept("Handler 'reconcile' succeeded.")
    assert kept("Handler 'wake-pods' failed with an exception. Will retry.")
    assert kept("created 3 trials, deleted 1 pods")
