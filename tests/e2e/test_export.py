"""`kubetune export` on the local control plane: the reference trainer's simulated trials,
exported from Prometheus and the TuneTrials, read back by TensorBoard and by Ray.

The simulated trainer's accuracy at each epoch is a pure function of its config
(`kubetune_trainer.simulated.accuracy_at`), so every exported point is checked
against what the trial actually reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kubetune.client.cli.app import main
from kubetune.client.experiments import ExperimentClient
from kubetune.client.tuner import wait_for_experiment
from kubetune_trainer.hyperparameters import resolve
from kubetune_trainer.simulated import accuracy_at
from tests.support.operator import CHECKPOINT_ROOT

EPOCHS = 8
LRS = [0.002, 0.05, 0.3]


def _experiment() -> dict[str, Any]:
    return {
        "apiVersion": "kubetune.io/v1alpha1", "kind": "TuneExperiment",
        "metadata": {"name": "export"},
        "spec": {
            "objective": {"metric": "accuracy", "mode": "max"},
            "searchSpace": {"lr": {"grid": LRS}, "optimizer": {"value": "sgd"},
                            "hidden_size": {"choice": [64]}, "epochs": {"value": EPOCHS}},
            "numSamples": 1,
            "maxConcurrentTrials": 3,
            "scheduler": {"type": "asha", "maxT": EPOCHS, "gracePeriod": 1,
                          "reductionFactor": 3},
            "pruneGracePeriodSeconds": 5,
            "trialTemplate": {"spec": {"containers": [{
                "name": "trainer", "image": "kubetune-trainer",
                "command": ["python", "-m", "kubetune_trainer"],
                # 1 s a step: Prometheus (1 s scrapes) sees nearly every report.
                "args": ["--dataset", "simulated", "--seconds-per-step", "1.0"],
                "env": [{"name": "KUBETUNE_LINGER_SECONDS", "value": "3"},
                        {"name": "KUBETUNE_CHECKPOINT_ROOT", "value": CHECKPOINT_ROOT}],
                "resources": {"limits": {"nvidia.com/gpu": "1"}},
            }]}},
        },
    }


def _reported(config: dict[str, Any], epoch: int) -> float:
    """What the simulated trainer reported as accuracy at `epoch` for `config`."""
    return accuracy_at(resolve(config, {}), epoch, config)


def _ends_at_its_step(trial: dict[str, Any], last: int) -> bool:
    """A finished trial's last step; a pruned one may have reported (and been scraped)
    past the rung that stopped it, while its pod had its grace period."""
    step = trial["status"]["step"]
    return last == step if trial["status"]["state"] == "Succeeded" else last >= step


@pytest.fixture(scope="module")
def exported(api_client, operator, cluster, module_namespace, tmp_path_factory
             ) -> tuple[Path, list[dict[str, Any]], dict[str, Any]]:
    ec = ExperimentClient(api_client=api_client, namespace=module_namespace)
    ec.create_experiment(_experiment())
    experiment = wait_for_experiment(ec, "export", timeout=240)
    assert experiment["status"]["phase"] == "Succeeded", experiment["status"]
    out = tmp_path_factory.mktemp("export")
    result = CliRunner().invoke(main, [
        "export", "export", "-n", module_namespace, "--kubeconfig", str(cluster.kubeconfig),
        "--prometheus-url", cluster.prometheus_url, "--tensorboard", str(out / "tb"),
        "--csv", str(out / "ray" / "export"), "--json", str(out / "ray" / "export")])
    assert result.exit_code == 0, result.output
    assert "3 trials exported" in result.output and "Prometheus" in result.output, result.output
    return out, ec.list_trials("export"), experiment


def test_tensorboard_runs_hold_every_reported_value_against_its_step(exported):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, trials, _ = exported
    scraped = 0
    for trial in trials:
        name, config = trial["metadata"]["name"], trial["spec"]["params"]
        run = EventAccumulator(str(out / "tb" / name))
        run.Reload()
        points = run.Scalars("accuracy")
        steps = [p.step for p in points]
        assert steps == sorted(set(steps)) and _ends_at_its_step(trial, steps[-1]), name
        for point in points:
            assert point.value == pytest.approx(_reported(config, point.step), abs=1e-6)
        # loss is in no rung record: its points before the last are Prometheus' scrapes
        loss = [p.step for p in run.Scalars("loss")]
        assert set(loss) <= set(steps) and loss[-1] == steps[-1], name
        scraped = max(scraped, len(loss) - 1)
    assert scraped >= 2, "no trial's curve came from Prometheus"


def test_the_hparams_plugin_has_each_trials_config_and_outcome(exported):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import api_pb2, metadata

    out, trials, _ = exported
    root = EventAccumulator(str(out / "tb"))
    root.Reload()
    experiment = metadata.parse_experiment_plugin_data(
        root.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.EXPERIMENT_TAG])
    assert {i.name for i in experiment.hparam_infos} >= {"lr", "optimizer", "epochs"}
    assert {m.name.tag for m in experiment.metric_infos} == {"accuracy", "loss"}
    for trial in trials:
        run = EventAccumulator(str(out / "tb" / trial["metadata"]["name"]))
        run.Reload()
        content = run.PluginTagToContent(metadata.PLUGIN_NAME)
        start = metadata.parse_session_start_info_plugin_data(
            content[metadata.SESSION_START_INFO_TAG])
        assert start.hparams["lr"].number_value == trial["spec"]["params"]["lr"]
        assert start.hparams["optimizer"].string_value == "sgd"
        end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
        assert end.status == api_pb2.STATUS_SUCCESS  # Succeeded or Pruned, none Failed


def test_rays_experiment_analysis_reads_the_csv_and_json_export(exported):
    import pandas as pd
    from ray.train._internal.storage import StorageContext
    from ray.tune import ExperimentAnalysis
    from ray.tune.experiment import Trial

    out, trials, experiment = exported
    root = out / "ray" / "export"
    stubs = []
    for trial in trials:
        name = trial["metadata"]["name"]
        stub = Trial("kubetune", config=trial["spec"]["params"], trial_id=name, stub=True,
                     storage=StorageContext(storage_path=str(root.parent),
                                            experiment_dir_name=root.name, trial_dir_name=name))
        stub.run_metadata.last_result = dict(trial["status"]["metrics"])
        stubs.append(stub)
    analysis = ExperimentAnalysis(str(root / "experiment_state.json"), trials=stubs,
                                  default_metric="accuracy", default_mode="max")
    timed_reports = 0
    for trial in trials:
        name, config = trial["metadata"]["name"], trial["spec"]["params"]
        frame = analysis.trial_dataframes[name]  # from result.json
        progress = pd.read_csv(root / name / "progress.csv", dtype={"trial_id": str})
        for table in (frame, progress):
            assert _ends_at_its_step(trial, list(table["training_iteration"])[-1])
            assert list(table["accuracy"]) == pytest.approx(
                [_reported(config, s) for s in table["training_iteration"]], abs=1e-9)
            assert list(table["done"]) == [False] * (len(table) - 1) + [True]
        assert frame["config/lr"].iloc[0] == config["lr"]
        # Scraped reports carry the time Prometheus first saw them; the last, at the latest,
        # the trial's completion.
        timed = progress.dropna(subset=["timestamp"])
        assert len(timed) >= 1 and timed.index[-1] == len(progress) - 1
        assert list(timed["timestamp"]) == sorted(timed["timestamp"])
        assert list(timed["time_total_s"]) == sorted(timed["time_total_s"])
        assert 0 < timed["time_total_s"].iloc[-1] < 120
        timed_reports = max(timed_reports, len(timed))
    assert timed_reports >= 3
    best = analysis.dataframe(metric="accuracy", mode="max")
    assert best.loc[best["accuracy"].idxmax(), "trial_id"] == \
        experiment["status"]["bestTrial"]["name"]
