"""An experiment's outcome as Ray's `ResultGrid` of `Result`s: configs, metrics, curves.

Built from a TuneExperiment and its TuneTrials as read from the cluster. A
trial's full curve (its history) is fetched on first use, once for the whole
experiment, from whatever `HistorySource` the grid was given (the
`ExperimentClient` that read it). `get_best_result` is Ray's
`ExperimentAnalysis.get_best_trial` (ray/tune/analysis/experiment_analysis.py)
over every trial that reported the metric, pruned and failed ones included, with
each scope's statistic computed as Ray's `_TrainingRunMetadata.update_metric`
computes it (ray/tune/trainable/metadata.py). `Result.checkpoint` is the
trial's latest checkpoint where its files can be read from here (checkpoints.py).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from kubetune.client.checkpoints import (
    Checkpoint,
    claim_directory,
    latest_checkpoint,
    pod_checkpoint_root,
    run_directory,
    storage_uri,
)
from kubetune.client.errors import TuneError
from kubetune.client.history import History, trial_history

if TYPE_CHECKING:
    import pandas as pd


Scope = Literal["last", "avg", "last-5-avg", "last-10-avg", "all"]
SCOPES: tuple[Scope, ...] = ("last", "avg", "last-5-avg", "last-10-avg", "all")


def ray_metric_analysis(reports: Sequence[tuple[int, float]]) -> dict[str, float] | None:
    """Ray's per-trial statistics of one metric from its reports (training_iteration, value)
    in order, updated report by report as _TrainingRunMetadata.update_metric does (its
    "avg" weighs by training_iteration, which is the plain mean when steps count 1, 2, ...)."""
    if not reports:
        return None
    _, first = reports[0]
    out = {"max": first, "min": first, "avg": first, "last": first}
    windows = {n: deque([first], maxlen=n) for n in (5, 10)}
    for step, value in reports[1:]:
        step = step or 1
        out["max"], out["min"] = max(value, out["max"]), min(value, out["min"])
        out["avg"] = 1 / step * (value + (step - 1) * out["avg"])
        out["last"] = value
        for window in windows.values():
            window.append(value)
    for n, window in windows.items():
        out[f"last-{n}-avg"] = sum(window) / len(window)
    return out


class HistorySource(Protocol):
    """What a ResultGrid needs to fetch curves: the experiment's trials and their histories."""

    def list_trials(self, experiment: str) -> list[dict[str, Any]]: ...

    def histories(self, experiment: Mapping[str, Any], trials: Sequence[Mapping[str, Any]]
                  ) -> tuple[dict[str, History], str]: ...


@dataclass
class TrialError:
    """Why a trial failed (ResultGrid.errors)."""

    trial_name: str
    message: str

    def __str__(self) -> str:
        return f"{self.trial_name}: {self.message}"


@dataclass
class Result:
    """One trial's outcome, as Ray's Result: config, last metrics, history."""

    trial_name: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    state: str
    path: str
    """Where the trial's files are, as Ray's Result.path: pvc://<claim>/<namespace>/<run>/<trial>
    with spec.storage (its checkpoint directory on the claim), else namespace/name of the
    TuneTrial (kubectl get tunetrial -n NAMESPACE NAME)."""
    error: TrialError | None = None
    pruned_at: dict[str, Any] | None = None
    _history: History | None = field(default=None, repr=False)
    _load_history: Any = field(default=None, repr=False)
    _load_checkpoint: Any = field(default=None, repr=False)

    @property
    def checkpoint(self) -> Checkpoint | None:
        """The trial's latest checkpoint (its highest `step-<n>`), with to_directory() and
        as_directory(); None when it saved none, or when its files cannot be read from
        this machine (then `path` says where they are)."""
        return self._load_checkpoint(self.trial_name) if self._load_checkpoint else None

    @property
    def metrics_dataframe(self) -> pd.DataFrame:
        """Every report known for this trial: one row per step (Prometheus, rungs, final)."""
        import pandas as pd

        if self._history is None and self._load_history is not None:
            self._history = self._load_history(self.trial_name)
        rows = [{"training_iteration": step, **m} for step, m in (self._history or {}).items()]
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        return (f"Result(trial_name={self.trial_name!r}, state={self.state!r}, "
                f"metrics={self.metrics!r}, config={self.config!r})")


class ResultGrid:
    """The trials of a finished (or running) experiment, as Ray's ResultGrid."""

    def __init__(self, experiment: Mapping[str, Any], trials: Sequence[Mapping[str, Any]],
                 client: HistorySource | None = None) -> None:
        self.experiment = dict(experiment)
        self.name: str = experiment["metadata"]["name"]
        self.namespace: str = experiment["metadata"].get("namespace", "")
        self.status: dict[str, Any] = dict(experiment.get("status") or {})
        objective = experiment["spec"]["objective"]
        self.metric: str = objective["metric"]
        self.mode: str = objective["mode"]
        self._client = client
        self._histories: dict[str, History] | None = None
        self._checkpoint_root: Path | bool | None = False  # False: not looked up yet
        self._results = [self._result(t) for t in trials]

    @property
    def experiment_path(self) -> str:
        """Where the experiment's files are, as Ray's ResultGrid.experiment_path:
        pvc://<claim>/<namespace>/<run> with spec.storage, else namespace/name."""
        return storage_uri(self.experiment) or f"{self.namespace}/{self.name}"

    def _result(self, trial: Mapping[str, Any]) -> Result:
        status = trial.get("status") or {}
        name = trial["metadata"]["name"]
        metrics: dict[str, Any] = dict(status.get("metrics") or {})
        if status.get("step") is not None:
            metrics["training_iteration"] = status["step"]
        error = None
        if status.get("state") == "Failed":
            error = TrialError(name, str(status.get("message") or status.get("reason") or "failed"))
        return Result(trial_name=name, config=dict(trial["spec"].get("params") or {}),
                      metrics=metrics, state=str(status.get("state") or "Pending"),
                      path=(f"{uri}/{name}" if (uri := storage_uri(self.experiment))
                            else f"{self.namespace}/{name}"),
                      error=error, pruned_at=status.get("prunedAt"),
                      _load_checkpoint=self._checkpoint_of,
                      _history=trial_history(trial, self.metric) if self._client is None else None,
                      _load_history=self._history_of if self._client is not None else None)

    def _checkpoint_of(self, trial: str) -> Checkpoint | None:
        if self._checkpoint_root is False:
            self._checkpoint_root = self._find_checkpoint_root()
        root = self._checkpoint_root
        return latest_checkpoint(root / trial) if isinstance(root, Path) else None

    def _find_checkpoint_root(self) -> Path | None:
        """The experiment's checkpoint directory on this machine, None if not reachable."""
        claim = ((self.experiment["spec"].get("storage") or {})
                 .get("persistentVolumeClaim") or {}).get("claimName")
        api = getattr(self._client, "api", None)
        if claim:
            local = claim_directory(api, self.namespace, claim) if api is not None else None
            return local / run_directory(self.experiment) if local is not None else None
        if getattr(self._client, "local", None) is not None:  # the dev cluster: local pods
            return Path(pod_checkpoint_root(self.experiment)) / run_directory(self.experiment)
        return None

    def _history_of(self, trial: str) -> History:
        if self._histories is None:
            assert self._client is not None
            trials = self._client.list_trials(self.name)
            self._histories, _ = self._client.histories(self.experiment, trials)
        return self._histories.get(trial, {})

    @property
    def phase(self) -> str | None:
        return self.status.get("phase")

    def __len__(self) -> int:
        return len(self._results)

    def __iter__(self) -> Iterator[Result]:
        return iter(self._results)

    def __getitem__(self, i: int) -> Result:
        return self._results[i]

    @property
    def errors(self) -> list[TrialError]:
        return [r.error for r in self._results if r.error is not None]

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    @property
    def num_terminated(self) -> int:
        return sum(1 for r in self._results if r.state in ("Succeeded", "Pruned"))

    def get_best_result(self, metric: str | None = None, mode: str | None = None,
                        scope: Scope = "last", filter_nan_and_inf: bool = True) -> Result:
        """The best trial's Result, as Ray's ResultGrid.get_best_result: over every trial that
        reported `metric` (pruned, failed and running ones included, as in Ray), by its last
        value (scope "last"), the mean of all its reports ("avg"), of its last 5 or 10
        ("last-5-avg", "last-10-avg"), or its best report ("all"). Ties go to the lower index.
        The experiment's status.bestTrial is the operator's pick among completed trials."""
        if len(self._results) == 1:  # as Ray: a lone trial is the best whatever it reported
            return self._results[0]
        metric, mode = metric or self.metric, mode or self.mode
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        best: tuple[float, Result] | None = None
        for r in self._results:
            analysis = self._analysis(r, metric)
            if analysis is None:
                continue
            score = analysis[mode if scope == "all" else scope]
            if filter_nan_and_inf and not math.isfinite(score):
                continue
            if best is None or (score > best[0] if mode == "max" else score < best[0]):
                best = (score, r)
        if best is None:
            raise TuneError(f"no trial of {self.name!r} has reported {metric!r}"
                            + (" as a finite value" if filter_nan_and_inf else ""))
        return best[1]

    def _analysis(self, r: Result, metric: str) -> dict[str, float] | None:
        """Ray's metric_analysis of one trial: max, min, avg, last, last-5-avg, last-10-avg."""
        needs_history = r._history is None and r._load_history is not None
        history = self._history_of(r.trial_name) if needs_history else (r._history or {})
        reports = [(step, float(m[metric])) for step, m in sorted(history.items())
                   if isinstance(m.get(metric), int | float)]
        last = r.metrics.get(metric)
        if isinstance(last, int | float) and (not reports or reports[-1][1] != last):
            reports.append((int(r.metrics.get("training_iteration") or 0), float(last)))
        return ray_metric_analysis(reports)

    def get_dataframe(self, filter_metric: str | None = None,
                      filter_mode: str | None = None) -> pd.DataFrame:
        """One row per trial: name, state, last metrics and config/<param> columns, as Ray.
        With filter_metric and filter_mode, a trial's row holds its best report of that
        metric (from its history) instead of its last."""
        import pandas as pd

        rows = []
        for r in self._results:
            metrics = dict(r.metrics)
            if filter_metric and filter_mode in ("min", "max"):
                frame = r.metrics_dataframe
                if filter_metric in frame:
                    frame = frame.dropna(subset=[filter_metric])
                    if len(frame):
                        pick = frame[filter_metric].idxmax() if filter_mode == "max" \
                            else frame[filter_metric].idxmin()
                        metrics = {k: v for k, v in frame.loc[pick].items() if pd.notna(v)}
            rows.append({"trial_name": r.trial_name, "state": r.state, **metrics,
                         **{f"config/{k}": v for k, v in flatten_config(r.config).items()}})
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        return f"ResultGrid({self.namespace}/{self.name}: {len(self)} trials, phase={self.phase})"


def flatten_config(config: Mapping[str, Any], sep: str = "/", prefix: str = "") -> dict[str, Any]:
    """A nested config with joined keys: {"opt": {"lr": 1}} -> {"opt/lr": 1} (`sep` joins)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, sep, f"{prefix}{key}{sep}"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


__all__ = ["SCOPES", "Checkpoint", "HistorySource", "Result", "ResultGrid", "Scope", "TrialError",
           "ray_metric_analysis"]
