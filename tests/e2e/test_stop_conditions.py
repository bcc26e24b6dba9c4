"""Ray's stop conditions and time budget through Tuner.fit() on the local control plane,
and Result.checkpoint read back from the claim the trials saved to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes import client as k8s

import kubetune
from kubetune import tune
from kubetune.client.experiments import ExperimentClient
from tests.support.events import TrialEvent, about
from tests.support.operator import SCRIPTED_TRIAL
from tests.support.scripted_trial import curve
from tests.support.storage import hostpath_claim

QUALITIES = [0.3, 0.9, 0.5, 0.95]
THRESHOLD = 0.8
BOUND = 6
STEPS = 40


def events(api_client: Any, namespace: str, name: str) -> list[TrialEvent]:
    """The Events on `name`, and those on its experiment naming trial `name`."""
    return about(api_client, namespace, name)


def test_thresholds_and_an_iteration_bound_end_trials_succeeded_with_their_checkpoints(
        api_client, namespace, operator, cluster, tmp_path: Path) -> None:
    claim = hostpath_claim(k8s.CoreV1Api(api_client), namespace, tmp_path / "claim")
    tuner = kubetune.Tuner(
        "kubetune/scripted:test", command=["python", str(SCRIPTED_TRIAL)],
        env={"KUBETUNE_LINGER_SECONDS": "2"}, resources={"gpu": 1},
        param_space={"quality": tune.grid_search(QUALITIES), "steps": STEPS, "sleep": 0.4},
        tune_config=kubetune.TuneConfig(metric="accuracy", mode="max"),
        run_config=kubetune.RunConfig(stop={"training_iteration": BOUND, "accuracy": THRESHOLD},
                                      storage_path=f"pvc://{claim}"),
        name="stops", namespace=namespace, api_client=api_client,
        prometheus_url=cluster.prometheus_url)
    spec = tuner.to_manifest()["spec"]
    assert spec["stop"] == {"trainingIteration": BOUND, "metrics": {"accuracy": THRESHOLD}}
    assert spec["maxConcurrentTrials"] == len(QUALITIES)  # Ray's default: no cap
    results = tuner.fit(progress=False, timeout=240)

    assert results.phase == "Succeeded" and results.num_errors == 0
    trials = {t["metadata"]["name"]: t for t in
              ExperimentClient(api_client=api_client, namespace=namespace).list_trials("stops")}
    for index, quality in enumerate(QUALITIES):
        status = trials[f"stops-{index}"]["status"]
        assert status["state"] == "Succeeded" and status["reason"] == "StopConditionMet", status
        assert status["step"] < STEPS, "the trial's pod was ended before its program finished"
        if curve(quality, BOUND) < THRESHOLD:  # only the bound can stop it
            assert status["message"].startswith(f"stop condition training_iteration >= {BOUND}")
            assert status["step"] >= BOUND
        else:
            reached = next(s for s in range(1, STEPS) if curve(quality, s) >= THRESHOLD)
            assert status["step"] >= min(reached, BOUND)
        assert any(e.reason == "TrialStopped" for e in events(api_client, namespace,
                                                              f"stops-{index}"))

    best = results.get_best_result()  # Ray's rule: the best last value of any trial
    assert best.trial_name == max(results, key=lambda r: r.metrics["accuracy"]).trial_name
    assert best.path.startswith(f"pvc://{claim}/{namespace}/stops-")
    assert results.experiment_path == best.path.rsplit("/", 1)[0]
    checkpoint = best.checkpoint
    assert checkpoint is not None and checkpoint.step is not None and checkpoint.step >= 1
    assert Path(checkpoint.path).is_relative_to(tmp_path / "claim")
    copied = Path(checkpoint.to_directory(tmp_path / "copy"))
    assert copied.is_dir()
    with checkpoint.as_directory() as directory:
        assert Path(directory) == Path(checkpoint.path)
        assert int(Path(directory).name.removeprefix("step-")) == checkpoint.step


def test_a_time_budget_stops_the_running_trials_and_ends_with_the_best_so_far(
        api_client, namespace, operator, cluster) -> None:
    tuner = kubetune.Tuner(
        "kubetune/scripted:test", command=["python", str(SCRIPTED_TRIAL)],
        env={"KUBETUNE_LINGER_SECONDS": "2"}, resources={"gpu": 1},
        param_space={"quality": tune.uniform(0.2, 0.9), "steps": STEPS, "sleep": 0.5},
        tune_config=kubetune.TuneConfig(metric="accuracy", mode="max", num_samples=8,
                                        max_concurrent_trials=2, time_budget_s=15),
        name="budget", namespace=namespace, api_client=api_client,
        prometheus_url=cluster.prometheus_url)
    results = tuner.fit(progress=False, timeout=180)

    experiment = ExperimentClient(api_client=api_client, namespace=namespace)\
        .get_experiment("budget")
    status = experiment["status"]
    assert status["phase"] == "Succeeded", status
    complete = next(c for c in status["conditions"] if c["type"] == "Complete")
    assert complete["reason"] == "TimeBudgetExhausted" and complete["status"] == "True"
    assert "time budget of 15s" in status["message"]
    assert status["trials"]["created"] < 8, "no trial is created once the budget ran out"
    assert any(e.reason == "TimeBudgetExhausted" for e in events(api_client, namespace, "budget"))
    stopped = [r for r in results if r.state in ("Succeeded", "Pruned")]
    assert stopped and len(stopped) == len(results)
    assert all(r.metrics.get("training_iteration", 0) < STEPS for r in results)
    assert results.get_best_result().trial_name == status["bestTrial"]["name"]
