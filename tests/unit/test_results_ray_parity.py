"""ResultGrid.get_best_result against Ray's own best-trial code, and Result.checkpoint.

The parity test feeds the same trial histories to kubetune's ResultGrid and to
Ray's `ExperimentAnalysis.get_best_trial` (ray/tune/analysis/experiment_analysis.py)
over Ray `Trial`s whose statistics Ray's `_TrainingRunMetadata.update_metric`
computed report by report, as `Trial.update_last_result` does. Both run without a
Ray runtime.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from kubetune.client.checkpoints import Checkpoint
from kubetune.client.errors import TuneError
from kubetune.client.history import History
from kubetune.client.results import SCOPES, ResultGrid

pytestmark = pytest.mark.unit

STATES = ["Succeeded", "Pruned", "Failed", "Pruned", "Succeeded", "Running"]


class Histories:
    """The HistorySource a ResultGrid reads curves from: here, the histories of the test."""

    def __init__(self, histories: Mapping[str, History]) -> None:
        self._histories = dict(histories)

    def list_trials(self, experiment: str) -> list[dict[str, Any]]:
        return []

    def histories(self, experiment: Mapping[str, Any], trials: Sequence[Mapping[str, Any]]
                  ) -> tuple[dict[str, History], str]:
        return dict(self._histories), "test"


def experiment(mode: str = "max", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "exp", "namespace": "ns", "uid": "0123456789abcdef"},
            "spec": {"objective": {"metric": "accuracy", "mode": mode}, **spec},
            "status": {"phase": "Succeeded"}}


def tune_trial(index: int, history: History, state: str) -> dict[str, Any]:
    last_step = max(history)
    return {"metadata": {"name": f"exp-{index}"},
            "spec": {"index": index, "params": {"i": index}},
            "status": {"state": state, "step": last_step, "metrics": dict(history[last_step])}}


def random_histories(rng: random.Random, n: int) -> dict[str, History]:
    out = {}
    for i in range(n):
        length = rng.randint(1, 14)  # pruned trials stop early, as ASHA's do
        out[f"exp-{i}"] = {step: {"accuracy": round(rng.uniform(0, 1), 3)}
                           for step in range(1, length + 1)}
    return out


def ray_best(histories: Mapping[str, History], metric: str, mode: str, scope: str,
             filter_nan_and_inf: bool = True) -> str | None:
    from ray.tune.analysis.experiment_analysis import ExperimentAnalysis
    from ray.tune.experiment.trial import Trial
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    trials = []
    for name, history in histories.items():
        trial = Trial.__new__(Trial)
        trial.trial_id = name
        trial.run_metadata = _TrainingRunMetadata()
        for step, metrics in sorted(history.items()):
            for key, value in metrics.items():  # Trial.update_last_result's loop
                trial.run_metadata.update_metric(key, value, step=step)
        trials.append(trial)
    analysis = ExperimentAnalysis.__new__(ExperimentAnalysis)
    analysis.trials = trials
    analysis.default_metric, analysis.default_mode = metric, mode
    best = analysis.get_best_trial(metric, mode, scope, filter_nan_and_inf)
    return None if best is None else best.trial_id


def ours_best(histories: Mapping[str, History], mode: str, scope: str, **kw: Any) -> str:
    trials = [tune_trial(i, h, STATES[i % len(STATES)])
              for i, h in enumerate(histories.values())]
    grid = ResultGrid(experiment(mode), trials, client=Histories(histories))
    return grid.get_best_result(mode=mode, scope=scope, **kw).trial_name  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("scope", SCOPES)
def test_best_result_is_rays_best_trial_for_every_scope(seed: int, mode: str,
                                                        scope: str) -> None:
    histories = random_histories(random.Random(seed), 6)
    assert ours_best(histories, mode, scope) == ray_best(histories, "accuracy", mode, scope)


def test_a_pruned_trial_with_the_best_last_value_is_the_best_result_as_in_ray() -> None:
    histories = {"exp-0": {1: {"accuracy": 0.5}, 2: {"accuracy": 0.6}, 3: {"accuracy": 0.7}},
                 "exp-1": {1: {"accuracy": 0.9}}}  # STATES[1]: Pruned at its first rung
    assert ours_best(histories, "max", "last") == "exp-1" == \
        ray_best(histories, "accuracy", "max", "last")
    assert ours_best(histories, "max", "avg") == "exp-1"


def test_the_scopes_pick_different_trials_where_rays_rule_says_so() -> None:
    histories = {
        "exp-0": {s: {"accuracy": v} for s, v in enumerate([0.1, 0.95, 0.1, 0.1], 1)},
        "exp-1": {s: {"accuracy": v} for s, v in enumerate([0.5, 0.5, 0.5, 0.5], 1)},
        "exp-2": {s: {"accuracy": v} for s, v in enumerate([0.2, 0.2, 0.2, 0.6], 1)},
    }
    picks = {scope: ours_best(histories, "max", scope) for scope in SCOPES}
    assert picks == {"last": "exp-2", "avg": "exp-1", "last-5-avg": "exp-1",
                     "last-10-avg": "exp-1", "all": "exp-0"}
    assert picks == {scope: ray_best(histories, "accuracy", "max", scope) for scope in SCOPES}


def test_an_unknown_scope_and_an_unreported_metric_are_refused() -> None:
    histories = random_histories(random.Random(0), 3)
    with pytest.raises(ValueError, match="scope must be one of"):
        ours_best(histories, "max", "best")
    grid = ResultGrid(experiment(), [tune_trial(i, h, "Succeeded")
                                     for i, h in enumerate(histories.values())],
                      client=Histories(histories))
    with pytest.raises(TuneError, match="'loss'"):
        grid.get_best_result(metric="loss")


def test_num_errors_and_num_terminated_count_as_ray_does() -> None:
    histories = random_histories(random.Random(3), 6)
    trials = [tune_trial(i, h, STATES[i]) for i, h in enumerate(histories.values())]
    grid = ResultGrid(experiment(), trials)
    assert grid.num_errors == 1 and grid.num_terminated == 4  # Succeeded and Pruned


# -- paths and checkpoints ------------------------------------------------------------------

def test_paths_name_the_claim_directory_with_storage_and_the_objects_without() -> None:
    trials = [tune_trial(0, {1: {"accuracy": 0.5}}, "Succeeded")]
    with_storage = ResultGrid(experiment(storage={"persistentVolumeClaim": {"claimName": "c"}}),
                              trials)
    assert with_storage.experiment_path == "pvc://c/ns/exp-01234567"
    assert with_storage[0].path == "pvc://c/ns/exp-01234567/exp-0"
    plain = ResultGrid(experiment(), trials)
    assert plain.experiment_path == "ns/exp" and plain[0].path == "ns/exp-0"
    assert plain[0].checkpoint is None  # no client: nothing can be reached


class DevCluster(Histories):
    """A client of the dev cluster, whose trial pods run as local processes."""

    local = object()


def test_result_checkpoint_is_the_latest_step_and_round_trips(tmp_path: Path) -> None:
    root = tmp_path / "root"
    trial_dir = root / "ns" / "exp-01234567" / "exp-0"
    for step in (1, 2, 10):
        (trial_dir / f"step-{step}").mkdir(parents=True)
        (trial_dir / f"step-{step}" / "model.pt").write_text(f"weights at {step}")
    (trial_dir / "step-11.tmp").mkdir()  # an unfinished save is no checkpoint
    template = {"spec": {"containers": [{"name": "t", "image": "x", "env": [
        {"name": "KUBETUNE_CHECKPOINT_ROOT", "value": str(root)}]}]}}
    trials = [tune_trial(0, {10: {"accuracy": 0.9}}, "Succeeded"),
              tune_trial(1, {1: {"accuracy": 0.1}}, "Pruned")]
    grid = ResultGrid(experiment(trialTemplate=template), trials, client=DevCluster({}))
    checkpoint = grid[0].checkpoint
    assert isinstance(checkpoint, Checkpoint) and checkpoint.step == 10
    copied = Path(checkpoint.to_directory(tmp_path / "copy"))
    assert (copied / "model.pt").read_text() == "weights at 10"
    with checkpoint.as_directory() as directory:
        assert Path(directory, "model.pt").read_text() == "weights at 10"
    assert Path(Checkpoint.from_directory(copied).to_directory()).joinpath(
        "model.pt").read_text() == "weights at 10"
    assert grid[1].checkpoint is None  # saved nothing


def test_after_pbt_exploits_the_checkpoint_is_in_the_last_segment(tmp_path: Path) -> None:
    from kubetune.client.checkpoints import latest_checkpoint

    (tmp_path / "step-8").mkdir()
    (tmp_path / "exploit-1" / "step-4").mkdir(parents=True)
    (tmp_path / "exploit-2").mkdir()  # just started: nothing saved yet
    latest = latest_checkpoint(tmp_path)
    assert latest is not None and latest.path == str(tmp_path / "exploit-1" / "step-4")


def test_non_finite_values_are_skipped_unless_asked() -> None:
    histories = {"exp-0": {1: {"accuracy": 0.3}}, "exp-1": {1: {"accuracy": math.inf}}}
    assert ours_best(histories, "max", "last") == "exp-0" == \
        ray_best(histories, "accuracy", "max", "last")
