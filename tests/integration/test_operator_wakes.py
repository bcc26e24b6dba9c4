"""An experiment's reconcile runs when one of its trial pods ends, not at its next tick: on the
real control plane, with a tick far longer than a trial."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

from kubernetes import client

from tests.integration.test_operator import create, wait_phase
from tests.integration.test_operator_view import operator_ticks
from tests.support.operator import OperatorProcess, scripted_experiment, session_operator_stopped
from tests.support.watching import follow

TICK = 20.0
"""The operator's tick here: a reaction within a few seconds cannot be a tick."""
REACTION = 3.0
"""The longest a finished pod may wait for the next trial's pod (a settle, a tick, a write)."""


class PodTimes:
    """When each pod of the namespace was first seen, and when it was first seen finished."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.added: dict[str, float] = {}
        self.finished: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for event in follow(self.core.list_namespaced_pod, self.namespace, stop=self._stop):
            pod, now = event["object"], time.monotonic()
            self.added.setdefault(pod.metadata.name, now)
            if pod.status.phase in ("Succeeded", "Failed"):
                self.finished.setdefault(pod.metadata.name, now)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _one_at_a_time(name: str, trials: int) -> dict[str, Any]:
    body = scripted_experiment(name, [0.5 + 0.1 * i for i in range(trials)], concurrency=1,
                               steps=3, sleep=0.1, scheduler={"type": "fifo"})
    env = body["spec"]["trialTemplate"]["spec"]["containers"][0]["env"]
    for var in env:
        if var["name"] == "KUBETUNE_LINGER_SECONDS":
            var["value"] = "0"  # the pod ends when its training ends
    return body


def test_a_finished_pod_is_followed_by_the_next_trials_pod_well_before_the_tick(
        cluster, api_client, namespace, operator: OperatorProcess, tmp_path) -> None:
    trials = 4
    own = OperatorProcess(cluster, tmp_path, tick=TICK, name="operator-slow-tick")
    times = PodTimes(api_client, namespace)
    with session_operator_stopped(operator):
        try:
            own.start()
            started = time.monotonic()
            create(api_client, namespace, _one_at_a_time("woken", trials))
            exp = wait_phase(api_client, namespace, "woken", ("Succeeded", "Failed"),
                             timeout=TICK * trials)
            took = time.monotonic() - started
            ticks = operator_ticks(own)
        finally:
            own.kill()
            times.stop()
    assert exp["status"]["phase"] == "Succeeded", exp["status"]
    pods = [f"woken-{i}-1" for i in range(trials)]
    assert set(times.finished) >= set(pods), times.finished
    waits = [times.added[nxt] - times.finished[prev] for prev, nxt in itertools.pairwise(pods)]
    assert all(0 < w < REACTION for w in waits), (
        f"from a pod's end to the next trial's pod: {[round(w, 2) for w in waits]} s "
        f"(tick {TICK:.0f} s)")
    assert took < TICK, f"{trials} trials one at a time took {took:.1f} s, a tick is {TICK:.0f} s"
    # A few ticks per trial: its pod's end, its pod gone, its creations' end in the
    # background (11-16 for 4 trials here, on a loaded machine). A tick whose own writes
    # woke the next would tick every settle, some 80 times in 4 s.
    assert ticks <= 6 * trials + 6, f"{ticks:.0f} ticks for {trials} trials: a storm of wakes"
    # Each wake ran a kopf handler; none of them is a log line.
    log = own.log.read_text()
    assert "kubetune operator:" in log and "Handler 'wake-" not in log, log[-2000:]
