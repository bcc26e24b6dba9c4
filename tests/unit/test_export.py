"""`kubetune export`: TensorBoard runs read back by TensorBoard, Ray's files read by Ray.

The trials and curves are what `ExperimentClient.histories` hands the export
(scraped points completed by `history.trial_history` from the TuneTrial
records); the files are read back with TensorBoard's own event reader and
HParams plugin, and with Ray Tune's `ExperimentAnalysis`.
"""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kubetune.client.cli.app import main
from kubetune.client.export import (
    EVENT_FILE_SUFFIX,
    RAY_AUTO_KEYS,
    TrialRecord,
    ray_results,
    trial_records,
    write_ray_files,
    write_tensorboard,
)
from kubetune.client.history import History, trial_history

START, END = "2026-12-01T10:00:00Z", "2026-12-01T10:01:30Z"


def _trial(name: str, params: dict[str, Any], state: str, step: int,
           metrics: dict[str, float], *, done: bool = True,
           rungs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"state": state, "step": step, "metrics": metrics,
                              "startTime": START}
    if done:
        status["completionTime"] = END
    if rungs:
        status["rungs"] = rungs
    return {"metadata": {"name": name}, "spec": {"index": int(name.rsplit("-", 1)[1]),
                                                 "params": params}, "status": status}


TRIALS = [
    _trial("demo-0", {"lr": 0.01, "opt": {"name": "sgd", "nesterov": True}, "layers": 2},
           "Succeeded", 4, {"accuracy": 0.91, "loss": 0.2}),
    _trial("demo-1", {"lr": 0.3, "opt": {"name": "adam", "nesterov": False}, "layers": 3},
           "Pruned", 1, {"accuracy": 0.4, "loss": 1.1},
           rungs=[{"milestone": 1, "value": 0.4, "step": 1, "cutoff": 0.6, "decision": "stop"}]),
    _trial("demo-2", {"lr": 0.05, "opt": {"name": "sgd", "nesterov": False}, "layers": 1},
           "Running", 2, {"accuracy": 0.7, "loss": 0.5}, done=False),
]
# What Prometheus scraped (demo-0's last step and all of demo-1 only in the TuneTrials).
SCRAPED: dict[str, History] = {
    "demo-0": {1: {"accuracy": 0.5, "loss": 0.9}, 2: {"accuracy": 0.7, "loss": 0.6},
               3: {"accuracy": 0.85, "loss": 0.3}},
    "demo-2": {1: {"accuracy": 0.55, "loss": 0.8}},
}


@pytest.fixture
def records() -> list[TrialRecord]:
    histories = {t["metadata"]["name"]: trial_history(t, "accuracy",
                                                      SCRAPED.get(t["metadata"]["name"]))
                 for t in TRIALS}
    return trial_records(TRIALS, histories)


def _expected(name: str) -> History:
    trial = next(t for t in TRIALS if t["metadata"]["name"] == name)
    return trial_history(trial, "accuracy", SCRAPED.get(name))


# -- TensorBoard ---------------------------------------------------------------------------


def test_every_reported_metric_is_a_scalar_against_the_trials_step(tmp_path, records):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    write_tensorboard(tmp_path, "demo", records)
    for trial in TRIALS:
        name = trial["metadata"]["name"]
        run = EventAccumulator(str(tmp_path / name))
        run.Reload()
        expected = _expected(name)
        assert set(run.Tags()["scalars"]) == {"accuracy", "loss"}
        for metric in ("accuracy", "loss"):
            points = [(e.step, e.value) for e in run.Scalars(metric)]
            assert [s for s, _ in points] == sorted(expected)
            assert [v for _, v in points] == pytest.approx(
                [expected[s][metric] for s in sorted(expected)], rel=1e-6)
    finished = EventAccumulator(str(tmp_path / "demo-0"))
    finished.Reload()
    end = datetime.fromisoformat(END.replace("Z", "+00:00")).timestamp()
    assert finished.Scalars("accuracy")[-1].wall_time == end


def test_hyperparameters_and_outcome_are_in_the_hparams_plugin(tmp_path, records):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import api_pb2, metadata

    write_tensorboard(tmp_path, "demo", records)
    root = EventAccumulator(str(tmp_path))
    root.Reload()
    experiment = metadata.parse_experiment_plugin_data(
        root.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.EXPERIMENT_TAG])
    infos = {i.name: i for i in experiment.hparam_infos}
    assert set(infos) == {"lr", "opt/name", "opt/nesterov", "layers"}
    assert infos["lr"].type == api_pb2.DATA_TYPE_FLOAT64
    assert (infos["lr"].domain_interval.min_value, infos["lr"].domain_interval.max_value) == \
        (0.01, 0.3)
    assert infos["opt/name"].type == api_pb2.DATA_TYPE_STRING
    assert {v.string_value for v in infos["opt/name"].domain_discrete.values} == {"sgd", "adam"}
    assert infos["opt/nesterov"].type == api_pb2.DATA_TYPE_BOOL
    assert {m.name.tag for m in experiment.metric_infos} == {"accuracy", "loss"}

    outcome = {"demo-0": api_pb2.STATUS_SUCCESS, "demo-1": api_pb2.STATUS_SUCCESS}
    for trial in TRIALS:
        name = trial["metadata"]["name"]
        run = EventAccumulator(str(tmp_path / name))
        run.Reload()
        content = run.PluginTagToContent(metadata.PLUGIN_NAME)
        start = metadata.parse_session_start_info_plugin_data(
            content[metadata.SESSION_START_INFO_TAG])
        params = trial["spec"]["params"]
        assert start.hparams["lr"].number_value == params["lr"]
        assert start.hparams["layers"].number_value == params["layers"]
        assert start.hparams["opt/name"].string_value == params["opt"]["name"]
        assert start.hparams["opt/nesterov"].bool_value is params["opt"]["nesterov"]
        if name in outcome:
            end = metadata.parse_session_end_info_plugin_data(
                content[metadata.SESSION_END_INFO_TAG])
            assert end.status == outcome[name]
        else:  # still running: no session end yet
            assert metadata.SESSION_END_INFO_TAG not in content


def test_the_hparams_tab_lists_each_trial_with_its_config_and_final_metrics(tmp_path, records):
    """What TensorBoard's HParams tab shows, asked of the plugin's own request handler."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider
    from tensorboard.backend.event_processing import plugin_event_multiplexer as pem
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups
    from tensorboard.plugins.scalar import scalars_plugin

    write_tensorboard(tmp_path, "demo", records)
    multiplexer = pem.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(tmp_path))
    multiplexer.Reload()
    tb = base_plugin.TBContext(
        logdir=str(tmp_path), multiplexer=multiplexer, plugin_name_to_instance={},
        data_provider=data_provider.MultiplexerDataProvider(multiplexer, str(tmp_path)))
    tb.plugin_name_to_instance["scalars"] = scalars_plugin.ScalarsPlugin(tb)
    request = api_pb2.ListSessionGroupsRequest(start_index=0, slice_size=100, allowed_statuses=[
        api_pb2.STATUS_UNKNOWN, api_pb2.STATUS_SUCCESS, api_pb2.STATUS_FAILURE,
        api_pb2.STATUS_RUNNING])
    response = list_session_groups.Handler(context.RequestContext(),
                                           backend_context.Context(tb), "", request).run()
    groups = {g.name: g for g in response.session_groups}
    assert set(groups) == {"demo-0", "demo-1", "demo-2"}
    for trial in TRIALS:
        group = groups[trial["metadata"]["name"]]
        assert group.hparams["lr"].number_value == trial["spec"]["params"]["lr"]
        final = {m.name.tag: (m.training_step, m.value) for m in group.metric_values}
        assert final["accuracy"] == (trial["status"]["step"],
                                     pytest.approx(trial["status"]["metrics"]["accuracy"]))


def test_a_new_export_replaces_the_runs_event_files_and_keeps_others(tmp_path, records):
    write_tensorboard(tmp_path, "demo", records)
    theirs = tmp_path / "demo-0" / "events.out.tfevents.1.someone-else"
    theirs.write_bytes(b"")
    write_tensorboard(tmp_path, "demo", records)
    ours = sorted((tmp_path / "demo-0").glob(f"*{EVENT_FILE_SUFFIX}"))
    assert len(ours) == 1 and theirs.exists()


# -- Ray's progress.csv and result.json --------------------------------------------------------


def test_result_rows_carry_rays_auto_filled_keys_in_rays_order(records):
    rows = ray_results(records[0])
    assert [r["training_iteration"] for r in rows] == [1, 2, 3, 4]
    assert [r["done"] for r in rows] == [False, False, False, True]
    assert {r["trial_id"] for r in rows} == {"demo-0"}
    assert all(r["config"] == TRIALS[0]["spec"]["params"] for r in rows)
    last = rows[-1]
    assert list(last) == ["accuracy", "loss", *RAY_AUTO_KEYS]
    assert last["time_total_s"] == 90.0
    end = datetime.fromisoformat(END.replace("Z", "+00:00")).timestamp()
    assert last["timestamp"] == int(end)
    assert last["date"] == datetime.fromtimestamp(end).strftime("%Y-%m-%d_%H-%M-%S")
    assert "timestamp" not in rows[0]  # no scrape time given: only the completion is known
    running = ray_results(records[2])
    assert not any(r["done"] for r in running) and "timestamp" not in running[-1]


def test_a_reported_training_iteration_wins_over_the_step_as_in_ray():
    record = TrialRecord("x-0", {}, "Succeeded", {5: {"training_iteration": 2.0, "acc": 1.0}})
    assert ray_results(record)[0]["training_iteration"] == 2.0


def _ray_trials(root: Path, records: list[TrialRecord]) -> list[Any]:
    """Ray's own Trial objects (stubs, no Ray runtime) for the exported trial directories."""
    from ray.train._internal.storage import StorageContext
    from ray.tune.experiment import Trial

    trials = []
    for record in records:
        storage = StorageContext(storage_path=str(root.parent), experiment_dir_name=root.name,
                                 trial_dir_name=record.name)
        trial = Trial("kubetune", config=record.config, trial_id=record.name, stub=True,
                      storage=storage)
        trial.run_metadata.last_result = ray_results(record)[-1]
        trials.append(trial)
    return trials


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_rays_experiment_analysis_reads_the_export(tmp_path, records, fmt):
    from ray.tune import ExperimentAnalysis

    root = tmp_path / "demo"
    write_ray_files(root, records, csv_files=fmt == "csv", json_files=fmt == "json")
    analysis = ExperimentAnalysis(str(root / "experiment_state.json"),
                                  trials=_ray_trials(root, records),
                                  default_metric="accuracy", default_mode="max")
    frames = analysis.trial_dataframes
    for record in records:
        frame, expected = frames[record.name], record.history
        assert list(frame["training_iteration"]) == sorted(expected)
        assert list(frame["accuracy"]) == pytest.approx(
            [expected[s]["accuracy"] for s in sorted(expected)])
        assert list(frame["done"]) == [False] * (len(expected) - 1) + [record.finished]
        assert set(frame["trial_id"]) == {record.name}
    if fmt == "json":  # config is a column only in result.json, as in Ray
        assert list(frames["demo-0"]["config/opt/name"].unique()) == ["sgd"]
    best = analysis.dataframe(metric="accuracy", mode="max").set_index("trial_id")
    assert best.loc["demo-0", "accuracy"] == pytest.approx(0.91)
    assert best.loc["demo-0", "config/opt/name"] == "sgd"
    assert best["accuracy"].idxmax() == "demo-0"


def test_progress_csv_header_is_the_metrics_then_rays_keys(tmp_path, records):
    write_ray_files(tmp_path, records, csv_files=True, json_files=False)
    with (tmp_path / "demo-0" / "progress.csv").open(newline="") as f:
        header = next(csv.reader(f))
    assert header == ["accuracy", "loss", *(k for k in RAY_AUTO_KEYS if k != "config")]
    assert not (tmp_path / "demo-0" / "result.json").exists()


def test_result_json_is_one_object_a_report_and_params_json_the_config(tmp_path, records):
    write_ray_files(tmp_path, records, csv_files=False, json_files=True)
    lines = (tmp_path / "demo-1" / "result.json").read_text().splitlines()
    assert [json.loads(line)["accuracy"] for line in lines] == [0.4]
    assert json.loads((tmp_path / "demo-1" / "params.json").read_text()) == \
        TRIALS[1]["spec"]["params"]


def test_export_without_a_format_is_a_usage_error():
    result = CliRunner().invoke(main, ["export", "demo"])
    assert result.exit_code == 2
    assert "give at least one of --tensorboard DIR, --csv DIR, --json DIR" in result.output


def test_a_result_grid_not_read_from_a_cluster_is_refused_with_the_fix():
    from kubetune.client.errors import KubetuneError
    from kubetune.client.export import export_results
    from kubetune.client.results import ResultGrid

    grid = ResultGrid({"metadata": {"name": "demo"},
                       "spec": {"objective": {"metric": "accuracy", "mode": "max"}}}, TRIALS)
    with pytest.raises(KubetuneError, match="pass client="):
        export_results(grid, tensorboard="unused")


def test_scraped_reports_carry_when_prometheus_first_saw_them(tmp_path):
    """Ray's timestamp, date and time_total_s, and TensorBoard's wall time, per report."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from kubetune.client.history import StepTimes, parse_history

    start = datetime.fromisoformat(START.replace("Z", "+00:00")).timestamp()
    labels = {"trial": "demo-0", "pod": "demo-0-1"}
    # Three scrapes a second apart: step 1 seen twice, then step 2.
    scrapes = [(start + 10, 1, 0.5), (start + 11, 1, 0.5), (start + 12, 2, 0.7)]
    result = [
        {"metric": {"__name__": "kubetune_trial_step", **labels},
         "values": [[t, str(step)] for t, step, _ in scrapes]},
        {"metric": {"__name__": "kubetune_trial_metric", "metric": "accuracy", **labels},
         "values": [[t, str(v)] for t, _, v in scrapes]},
    ]
    times: StepTimes = {}
    scraped = parse_history(result, times)
    assert times == {"demo-0": {1: start + 10, 2: start + 12}}
    trial = _trial("demo-0", {"lr": 0.01}, "Succeeded", 3, {"accuracy": 0.9})
    (record,) = trial_records([trial], {"demo-0": trial_history(trial, "accuracy",
                                                                scraped["demo-0"])}, times)
    rows = ray_results(record)
    assert [r.get("timestamp") for r in rows] == [int(start + 10), int(start + 12),
                                                  int(start + 90)]  # the last: completion
    assert [r["time_total_s"] for r in rows] == [10.0, 12.0, 90.0]
    assert rows[1]["date"] == datetime.fromtimestamp(start + 12).strftime("%Y-%m-%d_%H-%M-%S")
    write_tensorboard(tmp_path, "demo", [record])
    run = EventAccumulator(str(tmp_path / "demo-0"))
    run.Reload()
    assert [e.wall_time for e in run.Scalars("accuracy")] == [start + 10, start + 12, start + 90]
