"""TPE through the real operator: configs follow the results, and survive operator kills.

Trials run tests/support/smooth_trial.py, whose final accuracy is
(1 - (x - 0.75)^2)(1 - 0.5^9): the good region is x near 0.75. The statistic is
the mean distance |x - 0.75| over trials 10..19 (after the 5 startup trials and
a round of the cap). Random search's value for its seed is fixed by (seed,
index); TPE's depends on which trials had finished when each was created,
which the kills and the machine's load change. Offline, with these settings and
six different finishing orders, TPE gave 0.08-0.12 and random 0.35 (uniform
draws give 0.31 on average), so the test asks for less than 0.2 and less than
0.6 times random's.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.integration.kube import wait_for
from tests.integration.test_operator import PodWatch, custom, trials, wait_phase
from tests.support.operator import OperatorProcess
from tests.support.smooth_trial import OPTIMUM

SMOOTH_TRIAL = Path(__file__).resolve().parents[1] / "support" / "smooth_trial.py"
TRIALS = 20
LATE = range(10, TRIALS)


def smooth_experiment(name: str, algorithm: dict[str, Any],
                      space: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "kubetune.io/v1alpha1", "kind": "TuneExperiment",
        "metadata": {"name": name},
        "spec": {
            "objective": {"metric": "accuracy", "mode": "max"},
            "searchSpace": space or {"x": {"uniform": [0.0, 1.0]}, "steps": {"value": 9},
                                     "sleep": {"value": 0.3}},
            "searchAlgorithm": algorithm,
            "numSamples": TRIALS,
            "maxConcurrentTrials": 4,
            "scheduler": {"type": "asha", "maxT": 9, "gracePeriod": 1, "reductionFactor": 3},
            "pruneGracePeriodSeconds": 2,
            "trialTemplate": {"spec": {"containers": [{
                "name": "trial", "image": "kubetune/scripted:test",
                "command": ["python", str(SMOOTH_TRIAL)],
                "env": [{"name": "KUBETUNE_LINGER_SECONDS", "value": "2"}],
                "resources": {"limits": {"nvidia.com/gpu": "1"}},
            }]}},
        },
    }


class TrialWatch:
    """Every TuneTrial as first seen (ADDED): its uid and config, from a real watch."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.api = custom(api_client)
        self.namespace = namespace
        self.added: list[tuple[str, str, dict[str, Any]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        w = watch.Watch()
        while not self._stop.is_set():
            for event in w.stream(self.api.list_namespaced_custom_object, "kubetune.io",
                                  "v1alpha1", self.namespace, "tunetrials", timeout_seconds=2):
                body = event["object"]
                if event["type"] == "ADDED":
                    meta = body["metadata"]
                    entry = (meta["name"], meta["uid"], body["spec"]["params"])
                    if entry not in self.added:  # a re-listed object is not a new one
                        self.added.append(entry)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def late_distance(configs: dict[int, dict[str, Any]]) -> float:
    return statistics.mean(abs(configs[i]["x"] - OPTIMUM) for i in LATE)


def configs_of(api_client: client.ApiClient, namespace: str, name: str) -> dict[int, Any]:
    return {t["spec"]["index"]: t["spec"]["params"] for t in trials(api_client, namespace).values()
            if t["spec"]["experiment"] == name}


def test_tpe_moves_toward_the_good_region_and_operator_kills_change_no_config(
        api_client, namespace, operator: OperatorProcess):
    pods = PodWatch(api_client, namespace)
    trial_watch = TrialWatch(api_client, namespace)
    api = custom(api_client)
    for name, algorithm in (("tpe", {"type": "tpe", "seed": 10, "nStartupTrials": 5}),
                            ("rand", {"type": "random", "seed": 10})):
        api.create_namespaced_custom_object("kubetune.io", "v1alpha1", namespace,
                                            "tuneexperiments", smooth_experiment(name, algorithm))
    rng = random.Random(13)
    kills = 0
    try:
        while kills < 3:
            time.sleep(rng.uniform(4.0, 9.0))
            operator.kill()
            kills += 1
            time.sleep(rng.uniform(0.5, 2.0))
            operator.start()
    finally:
        if operator.proc is None:
            operator.start()
    for name in ("tpe", "rand"):
        exp = wait_phase(api_client, namespace, name, ("Succeeded", "Failed"), timeout=420)
        assert exp["status"]["phase"] == "Succeeded", exp["status"]
    pods.stop()
    trial_watch.stop()

    stored = trials(api_client, namespace)
    # No trial duplicated, none created twice, no config changed after its creation.
    names = [n for n, _, _ in trial_watch.added]
    assert sorted(names) == sorted(f"{e}-{i}" for e in ("tpe", "rand") for i in range(TRIALS))
    for name, uid, params in trial_watch.added:
        assert stored[name]["metadata"]["uid"] == uid, f"{name} was created again"
        assert stored[name]["spec"]["params"] == params, f"{name}'s config changed"
    tpe_pods = {p for p in pods.seen if p.startswith("tpe-")}
    assert tpe_pods == {f"tpe-{i}-1" for i in range(TRIALS)}, "each trial exactly one pod"
    assert any(t["status"]["state"] == "Pruned" for t in stored.values()), "ASHA ran too"

    tpe, rand = configs_of(api_client, namespace, "tpe"), configs_of(api_client, namespace, "rand")
    tpe_late, rand_late = late_distance(tpe), late_distance(rand)
    print(f"mean |x - {OPTIMUM}| over trials 10-19: tpe {tpe_late:.3f}, random {rand_late:.3f}")
    assert tpe_late < 0.2, f"TPE's late trials are {tpe_late:.3f} from the optimum on average"
    assert tpe_late < 0.6 * rand_late, f"TPE {tpe_late:.3f} vs random {rand_late:.3f}"


@pytest.mark.parametrize(("entry", "expected"), [
    ({"randn": [0.0, 1.0]}, "cannot search randn"),
    ({"qlograndint": [2, 64, 2]}, "qlograndint"),
])
def test_a_domain_tpe_cannot_search_is_refused_at_apply_time(
        api_client, crds, namespace, entry: dict[str, Any], expected: str):
    body = smooth_experiment("refused", {"type": "tpe"}, space={"x": entry})
    with pytest.raises(ApiException) as err:
        custom(api_client).create_namespaced_custom_object(
            "kubetune.io", "v1alpha1", namespace, "tuneexperiments", body)
    assert err.value.status == 422
    assert expected in err.value.body and "spec.searchSpace" in err.value.body


def test_a_grid_entry_under_tpe_fails_the_experiment_naming_the_entry_and_the_alternative(
        api_client, namespace, operator: OperatorProcess):
    # CEL cannot name a field of any JSON value, so the operator refuses it (SpecValid).
    space = {"x": {"uniform": [0.0, 1.0]}, "opt": {"space": {"lr": {"grid": [0.1, 0.2]}}}}
    custom(api_client).create_namespaced_custom_object(
        "kubetune.io", "v1alpha1", namespace, "tuneexperiments",
        smooth_experiment("gridded", {"type": "tpe"}, space=space))
    exp = wait_phase(api_client, namespace, "gridded", ("Failed",), timeout=60)
    valid = next(c for c in exp["status"]["conditions"] if c["type"] == "SpecValid")
    assert valid["status"] == "False"
    assert "searchSpace.opt.lr" in valid["message"] and "use choice" in valid["message"]
    assert not trials(api_client, namespace)


def test_an_option_of_another_sampler_is_refused_at_apply_time(api_client, crds, namespace):
    body = smooth_experiment("refused", {"type": "qmc", "constantLiar": True})
    with pytest.raises(ApiException) as err:
        custom(api_client).create_namespaced_custom_object(
            "kubetune.io", "v1alpha1", namespace, "tuneexperiments", body)
    assert err.value.status == 422
    assert "constantLiar is an option of searchAlgorithm.type tpe only" in err.value.body


def test_a_deleted_tunetrial_comes_back_with_its_config_not_a_new_suggestion(
        api_client, namespace, operator: OperatorProcess):
    api = custom(api_client)
    body = smooth_experiment("again", {"type": "tpe", "seed": 4, "nStartupTrials": 2})
    body["spec"]["numSamples"] = 8
    body["spec"]["maxConcurrentTrials"] = 2
    body["spec"]["scheduler"] = {"type": "fifo"}
    api.create_namespaced_custom_object("kubetune.io", "v1alpha1", namespace,
                                        "tuneexperiments", body)

    def first_two_done() -> dict[str, Any] | None:
        found = trials(api_client, namespace)
        ok = all((found.get(f"again-{i}") or {}).get("status", {}).get("state") == "Succeeded"
                 for i in (0, 1))
        return found if ok and "again-3" in found else None

    before = wait_for(first_two_done, timeout=180, interval=0.5, what="two trials done")
    core = client.CoreV1Api(api_client)
    # With the operator down, the garbage collector removes the trials' pods too, so only
    # what the operator recorded can give the configs back.
    operator.kill()
    try:
        for name in ("again-0", "again-3"):  # one finished, one running
            api.delete_namespaced_custom_object("kubetune.io", "v1alpha1", namespace,
                                                "tunetrials", name)

        def pods_gone() -> bool:
            return not any(p.metadata.name.startswith(("again-0-", "again-3-"))
                           for p in core.list_namespaced_pod(namespace).items)

        wait_for(pods_gone, timeout=90, what="the deleted trials' pods to be collected")
    finally:
        operator.start()
    exp = wait_phase(api_client, namespace, "again", ("Succeeded", "Failed"), timeout=300)
    assert exp["status"]["phase"] == "Succeeded", exp["status"]
    after = trials(api_client, namespace)
    for name in ("again-0", "again-3"):
        assert after[name]["metadata"]["uid"] != before[name]["metadata"]["uid"]
        assert after[name]["spec"]["params"] == before[name]["spec"]["params"], name
    assert sorted(after) == sorted(f"again-{i}" for i in range(8))


@pytest.mark.parametrize("sampler", ["qmc", "gp"])
def test_qmc_and_gp_experiments_run_to_the_end(api_client, namespace, operator: OperatorProcess,
                                                sampler: str):
    if sampler == "gp":
        pytest.importorskip("torch")
    algorithm: dict[str, Any] = {"type": sampler, "seed": 1}
    if sampler == "gp":
        algorithm["nStartupTrials"] = 3
    body = smooth_experiment(sampler, algorithm)
    body["spec"]["numSamples"] = 6
    body["spec"]["maxConcurrentTrials"] = 2
    custom(api_client).create_namespaced_custom_object("kubetune.io", "v1alpha1", namespace,
                                                       "tuneexperiments", body)
    exp = wait_phase(api_client, namespace, sampler, ("Succeeded", "Failed"), timeout=300)
    assert exp["status"]["phase"] == "Succeeded", exp["status"]
    xs = [configs_of(api_client, namespace, sampler)[i]["x"] for i in range(6)]
    assert len(set(xs)) == 6 and all(0.0 <= x <= 1.0 for x in xs)
    if sampler == "qmc":
        # Unscrambled Sobol, read at each trial's index whatever finished first.
        assert xs == [0.0, 0.5, 0.75, 0.25, 0.375, 0.875]
