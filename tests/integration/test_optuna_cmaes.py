"""CMA-ES through the real operator: generations advance from the state on the TuneTrials.

Trials run tests/support/smooth_trial.py (final accuracy 1 - (x - 0.75)^2 times a
constant). CmaEsSampler's generation lives in what it wrote on the trials it asked;
the operator persists that in each TuneTrial's spec.samplerState at creation, so
the generation read back from the TuneTrials advances past 0, and an operator
SIGKILLed mid-run neither changes a config or a state nor creates a trial twice.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from kubetune.search._optuna_cmaes import restored_state
from tests.integration.test_operator import custom, trials, wait_phase
from tests.integration.test_optuna_search import smooth_experiment
from tests.support.operator import OperatorProcess

TRIALS = 20


class SpecWatch:
    """Every TuneTrial's uid and spec as first seen (ADDED), from a real watch."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.api = custom(api_client)
        self.namespace = namespace
        self.added: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        w = watch.Watch()
        while not self._stop.is_set():
            for event in w.stream(self.api.list_namespaced_custom_object, "kubetune.io",
                                  "v1alpha1", self.namespace, "tunetrials", timeout_seconds=2):
                if event["type"] != "ADDED":
                    continue
                body = event["object"]
                entry = (body["metadata"]["uid"], body["spec"])
                seen = self.added.setdefault(body["metadata"]["name"], [])
                if entry not in seen:  # a re-listed object is not a new one
                    seen.append(entry)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def generation(spec: dict[str, Any]) -> int:
    return int((spec.get("samplerState") or {}).get("cma:generation", -1))


def test_cmaes_generations_advance_from_persisted_state_across_an_operator_kill(
        api_client, namespace, operator: OperatorProcess):
    watcher = SpecWatch(api_client, namespace)
    body = smooth_experiment("cma", {"type": "cmaes", "seed": 3, "popsize": 4})
    body["spec"]["numSamples"] = TRIALS
    body["spec"]["scheduler"] = {"type": "fifo"}  # every trial complete, so each is told
    custom(api_client).create_namespaced_custom_object("kubetune.io", "v1alpha1", namespace,
                                                       "tuneexperiments", body)
    time.sleep(12.0)  # a few trials in: the first generation is under way
    operator.kill()
    time.sleep(1.5)
    operator.start()
    exp = wait_phase(api_client, namespace, "cma", ("Succeeded", "Failed"), timeout=420)
    assert exp["status"]["phase"] == "Succeeded", exp["status"]
    watcher.stop()

    stored = {n: t for n, t in trials(api_client, namespace).items()
              if t["spec"]["experiment"] == "cma"}
    assert sorted(stored) == sorted(f"cma-{i}" for i in range(TRIALS))
    for name, seen in watcher.added.items():
        assert len(seen) == 1, f"{name} was created {len(seen)} times"
        uid, spec = seen[0]
        assert stored[name]["metadata"]["uid"] == uid, f"{name} was created again"
        assert stored[name]["spec"] == spec, f"{name}'s config or sampler state changed"
    recorded = exp["status"]["trialConfigs"]
    assert {int(k): v for k, v in recorded.items()} == {
        t["spec"]["index"]: t["spec"]["params"] for t in stored.values()}

    by_index = {t["spec"]["index"]: t["spec"] for t in stored.values()}
    generations = [generation(by_index[i]) for i in range(TRIALS)]
    print(f"CMA generation of trials 0..{TRIALS - 1}: {generations}")
    assert max(generations) >= 1, generations
    holders = [s["samplerState"] for s in by_index.values()
               if "cma:optimizer:0" in (s.get("samplerState") or {})]
    assert len(holders) >= max(generations)
    for state in holders:  # the persisted optimizer reads back as cmaes' own, complete
        assert restored_state("cmaes", state) == state


def test_cmaes_refuses_two_exclusive_options_at_apply_time(api_client, crds, namespace):
    body = smooth_experiment("refused", {"type": "cmaes", "withMargin": True,
                                         "useSeparableCma": True})
    with pytest.raises(ApiException) as err:
        custom(api_client).create_namespaced_custom_object(
            "kubetune.io", "v1alpha1", namespace, "tuneexperiments", body)
    assert err.value.status == 422
    assert "withMargin and useSeparableCma cannot both be true" in err.value.body
