"""An experiment's curves as files other tools read: TensorBoard runs and Ray's per-trial logs.

Everything written comes from what `ExperimentClient.histories` returns (each
trial's reports by step, from Prometheus completed by the TuneTrial records)
and the TuneTrials themselves (config, state, start and completion times), so
an export is the same whether Prometheus still holds the curves or only the
rung values and final metrics survive.

- TensorBoard: one run (sub-directory) per trial, every reported metric a
  scalar against the trial's step, and the HParams plugin's experiment, session
  start (the config) and session end (the outcome) summaries, so TensorBoard's
  HParams tab shows one row per trial with its final metrics.
- Ray's shapes: `<trial>/progress.csv` and `<trial>/result.json` (one JSON
  object per report) with the keys Ray's logger callbacks write, where kubetune
  knows their value: the metrics, `timestamp`, `done`, `training_iteration`,
  `trial_id`, `date`, `time_total_s` and `config`; and `<trial>/params.json`.
  Ray's `ExperimentAnalysis` reads these directories as it reads its own.

A report's time is when Prometheus first scraped it (within one scrape interval
of the report); a report known only from the TuneTrial records has no time of
its own, except a finished trial's last, which gets its completion time.
`time_total_s` counts from the start of the trial's first pod.
"""

from __future__ import annotations

import csv
import json
import math
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubetune.client.errors import KubetuneError
from kubetune.client.history import History, StepTimes, parse_timestamp
from kubetune.client.results import flatten_config

if TYPE_CHECKING:
    from kubetune.client.experiments import ExperimentClient
    from kubetune.client.results import ResultGrid

EVENT_FILE_SUFFIX = ".kubetune-export"
"""Ends the name of every event file an export writes; a new export of a run replaces them."""

PROGRESS_FILE = "progress.csv"  # ray.air.constants.EXPR_PROGRESS_FILE
RESULT_FILE = "result.json"  # ray.air.constants.EXPR_RESULT_FILE
PARAMS_FILE = "params.json"  # ray.air.constants.EXPR_PARAM_FILE

# Ray's auto-filled keys kubetune can fill, in the order Ray's function trainables write
# them after the reported metrics (ray/train/_internal/session.py, then Trainable.train()).
RAY_AUTO_KEYS = ("timestamp", "done", "training_iteration", "trial_id", "date",
                 "time_total_s", "config")
_FINAL_STATES = frozenset({"Succeeded", "Pruned", "Failed"})


@dataclass
class TrialRecord:
    """One trial as an export sees it: its config, outcome, times and reports by step."""

    name: str
    config: dict[str, Any]
    state: str
    history: History
    start_time: float | None = None
    completion_time: float | None = None
    times: dict[int, float] = field(default_factory=dict)
    """step -> when Prometheus first scraped it."""

    @property
    def finished(self) -> bool:
        return self.state in _FINAL_STATES

    def time_of(self, step: int) -> float | None:
        """When the report of `step` was seen; a finished trial's last: its completion."""
        if step in self.times:
            return self.times[step]
        if self.finished and self.history and step == max(self.history):
            return self.completion_time
        return None


@dataclass
class ExportSummary:
    """What an export wrote: the directories, and the files of each format."""

    experiment: str
    trials: int
    source: str
    """Where the curves came from (Prometheus + TuneTrial records, or the records alone)."""
    files: dict[str, list[Path]] = field(default_factory=dict)

    def __str__(self) -> str:
        parts = [f"{fmt}: {len(paths)} files" for fmt, paths in self.files.items()]
        return f"{self.experiment}: {self.trials} trials exported ({'; '.join(parts)}; {self.source})"


def trial_records(trials: Sequence[Mapping[str, Any]], histories: Mapping[str, History],
                  times: StepTimes | None = None) -> list[TrialRecord]:
    """The TuneTrials, their histories and scrape times (as `ExperimentClient.histories`
    returns and fills them)."""
    records = []
    for trial in trials:
        name = trial["metadata"]["name"]
        status = trial.get("status") or {}
        records.append(TrialRecord(
            name=name, config=dict((trial.get("spec") or {}).get("params") or {}),
            state=str(status.get("state") or "Pending"), history=dict(histories.get(name) or {}),
            start_time=parse_timestamp(status.get("startTime")),
            completion_time=parse_timestamp(status.get("completionTime")),
            times=dict((times or {}).get(name) or {})))
    return records


# -- Ray's per-trial files -------------------------------------------------------------------


def ray_results(record: TrialRecord) -> list[dict[str, Any]]:
    """The trial's reports as Ray's result dicts, one per step, in Ray's key order."""
    steps = sorted(record.history)
    rows = []
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        row: dict[str, Any] = dict(record.history[step])
        at = record.time_of(step)
        if at is not None:
            row.setdefault("timestamp", int(at))  # Ray keeps a reported timestamp too
        row["done"] = last and record.finished
        row.setdefault("training_iteration", step)  # as Ray: a reported value wins
        row["trial_id"] = record.name
        if at is not None:
            row["date"] = datetime.fromtimestamp(at).strftime("%Y-%m-%d_%H-%M-%S")
            if record.start_time is not None:
                row["time_total_s"] = max(0.0, at - record.start_time)
        row["config"] = record.config
        rows.append(row)
    return rows


def progress_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """progress.csv's header: the metrics in first-seen order, then Ray's auto-filled keys.

    Ray's CSV logger takes its columns from a trial's first result; a kubetune trial's
    first report can lack what later ones carry (the final report's times), so the
    header is the union, with empty cells where a report has no value.
    """
    metrics: dict[str, None] = {}
    auto: set[str] = set()
    for row in rows:
        for key, value in flatten_config({k: v for k, v in row.items() if k != "config"}).items():
            if key.split("/")[0] in RAY_AUTO_KEYS:
                auto.add(key)
            elif value is not None:
                metrics.setdefault(key)
    return [*metrics, *(k for k in RAY_AUTO_KEYS if k in auto)]


def write_ray_files(directory: Path, records: Sequence[TrialRecord], *, csv_files: bool,
                    json_files: bool) -> list[Path]:
    """`<directory>/<trial>/progress.csv`, `result.json` and `params.json`, as Ray's loggers."""
    written: list[Path] = []
    for record in records:
        trial_dir = directory / record.name
        trial_dir.mkdir(parents=True, exist_ok=True)
        rows = ray_results(record)
        if csv_files:
            path = trial_dir / PROGRESS_FILE
            with path.open("w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, progress_columns(rows), extrasaction="ignore")
                writer.writeheader()
                for row in rows:
                    writer.writerow(flatten_config({k: v for k, v in row.items()
                                                    if k != "config"}))
            written.append(path)
        if json_files:
            path = trial_dir / RESULT_FILE
            path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
            params = trial_dir / PARAMS_FILE
            params.write_text(json.dumps(record.config, indent=2, sort_keys=True),
                              encoding="utf-8")
            written += [path, params]
    return written


# -- TensorBoard -----------------------------------------------------------------------------


def hparams_of(record: TrialRecord) -> dict[str, bool | float | str]:
    """The config as HParams values: nested keys joined with '/', lists as their text."""
    values: dict[str, bool | float | str] = {}
    for key, value in flatten_config(record.config).items():
        if isinstance(value, bool | str):
            values[key] = value
        elif isinstance(value, int | float) and math.isfinite(value):
            values[key] = float(value)
        else:
            values[key] = json.dumps(value)
    return values


def write_tensorboard(directory: Path, experiment: str, records: Sequence[TrialRecord]
                      ) -> list[Path]:
    """One TensorBoard run per trial under `directory`, and the HParams experiment at its root."""
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
        from tensorboard.plugins.hparams import metadata as hp_metadata
        from tensorboard.summary.writer.record_writer import RecordWriter
    except ModuleNotFoundError as e:
        raise KubetuneError(f"writing TensorBoard files needs {e.name}, which is not installed: "
                            "pip install 'kubetune[client]'") from None

    def plugin_summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> summary_pb2.Summary:
        return summary_pb2.Summary(value=[summary_pb2.Summary.Value(
            tag=tag, metadata=hp_metadata.create_summary_metadata(data),
            tensor=hp_metadata.NULL_TENSOR)])

    def write(run_dir: Path, events: list[event_pb2.Event]) -> Path:
        run_dir.mkdir(parents=True, exist_ok=True)
        for old in run_dir.glob(f"events.out.tfevents.*{EVENT_FILE_SUFFIX}"):
            old.unlink()
        path = run_dir / (f"events.out.tfevents.{int(now):010d}.{socket.gethostname()}"
                          f"{EVENT_FILE_SUFFIX}")
        with path.open("wb") as f:
            records = RecordWriter(f)
            for event in [event_pb2.Event(wall_time=now, file_version="brain.Event:2"), *events]:
                records.write(event.SerializeToString())
        return path

    now = time.time()
    hparams = {r.name: hparams_of(r) for r in records}
    metrics = sorted({m for r in records for point in r.history.values() for m in point})
    created = min((r.start_time for r in records if r.start_time is not None), default=now)
    exp = api_pb2.Experiment(
        name=experiment, time_created_secs=created,
        hparam_infos=_hparam_infos(hparams, api_pb2),
        metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=m), display_name=m)
                      for m in metrics])
    written = [write(directory, [event_pb2.Event(
        wall_time=created, summary=plugin_summary(
            hp_metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=exp)))])]
    for record in records:
        started = record.start_time or created
        start_info = plugin_data_pb2.SessionStartInfo(group_name=record.name,
                                                      start_time_secs=started)
        for key, value in hparams[record.name].items():
            if isinstance(value, bool):
                start_info.hparams[key].bool_value = value
            elif isinstance(value, float):
                start_info.hparams[key].number_value = value
            else:
                start_info.hparams[key].string_value = value
        events = [event_pb2.Event(wall_time=started, summary=plugin_summary(
            hp_metadata.SESSION_START_INFO_TAG,
            plugin_data_pb2.HParamsPluginData(session_start_info=start_info)))]
        steps = sorted(record.history)
        for step in steps:
            events.append(event_pb2.Event(
                wall_time=record.time_of(step) or started, step=step,
                summary=summary_pb2.Summary(value=[
                    summary_pb2.Summary.Value(tag=m, simple_value=v)
                    for m, v in sorted(record.history[step].items())])))
        if record.finished:
            ended = record.completion_time or now
            end_info = plugin_data_pb2.SessionEndInfo(
                status=api_pb2.STATUS_FAILURE if record.state == "Failed"
                else api_pb2.STATUS_SUCCESS, end_time_secs=ended)
            events.append(event_pb2.Event(wall_time=ended, summary=plugin_summary(
                hp_metadata.SESSION_END_INFO_TAG,
                plugin_data_pb2.HParamsPluginData(session_end_info=end_info))))
        written.append(write(directory / record.name, events))
    return written


def _hparam_infos(hparams: Mapping[str, Mapping[str, bool | float | str]], api_pb2: Any
                  ) -> list[Any]:
    """Each hyperparameter's type and the values the trials took (a range for numbers)."""
    seen: dict[str, list[bool | float | str]] = {}
    for trial_values in hparams.values():
        for key, value in trial_values.items():
            seen.setdefault(key, []).append(value)
    infos = []
    for key, values in sorted(seen.items()):
        info = api_pb2.HParamInfo(name=key, display_name=key)
        if all(isinstance(v, bool) for v in values):
            info.type = api_pb2.DATA_TYPE_BOOL
            info.domain_discrete.extend(sorted(set(values)))
        elif all(isinstance(v, float) and not isinstance(v, bool) for v in values):
            info.type = api_pb2.DATA_TYPE_FLOAT64
            numbers = [float(v) for v in values]
            info.domain_interval.min_value, info.domain_interval.max_value = \
                min(numbers), max(numbers)
        else:  # mixed types are shown as text
            info.type = api_pb2.DATA_TYPE_STRING
            info.domain_discrete.extend(sorted({str(v) for v in values}))
        infos.append(info)
    return infos


# -- the whole export ------------------------------------------------------------------------


def export_experiment(client: ExperimentClient, experiment: str, *,
                      tensorboard: str | Path | None = None, csv: str | Path | None = None,
                      json: str | Path | None = None) -> ExportSummary:
    """Write EXPERIMENT's trials in each format given a directory; at least one is needed."""
    if tensorboard is None and csv is None and json is None:
        raise KubetuneError("nothing to export: give a directory for tensorboard, csv or json")
    exp = client.get_experiment(experiment)
    trials = client.list_trials(experiment)
    times: StepTimes = {}
    histories, source = client.histories(exp, trials, times=times)
    records = trial_records(trials, histories, times)
    summary = ExportSummary(experiment, len(records), source)
    try:
        if tensorboard is not None:
            summary.files["tensorboard"] = write_tensorboard(Path(tensorboard), experiment,
                                                             records)
        if csv is not None and json is not None and Path(csv) == Path(json):
            summary.files["csv+json"] = write_ray_files(Path(csv), records, csv_files=True,
                                                        json_files=True)
        else:
            if csv is not None:
                summary.files["csv"] = write_ray_files(Path(csv), records, csv_files=True,
                                                       json_files=False)
            if json is not None:
                summary.files["json"] = write_ray_files(Path(json), records, csv_files=False,
                                                        json_files=True)
    except OSError as e:
        raise KubetuneError(f"cannot write the export: {e}") from None
    return summary


def export_results(results: ResultGrid, *, tensorboard: str | Path | None = None,
                   csv: str | Path | None = None, json: str | Path | None = None,
                   client: ExperimentClient | None = None) -> ExportSummary:
    """`export_experiment` for the experiment of a ResultGrid (as `Tuner.fit()` returns it)."""
    from kubetune.client.experiments import ExperimentClient

    source = client or getattr(results, "_client", None)
    if not isinstance(source, ExperimentClient):
        raise KubetuneError("this ResultGrid was not read from a cluster; pass client= "
                            "(an ExperimentClient for its namespace)")
    return export_experiment(source, results.name, tensorboard=tensorboard, csv=csv, json=json)


__all__ = ["EVENT_FILE_SUFFIX", "ExportSummary", "TrialRecord", "export_experiment",
           "export_results", "progress_columns", "ray_results", "trial_records",
           "write_ray_files", "write_tensorboard"]
