"""An experiment's outcome as Ray's `ResultGrid` of `Result`s: configs, metrics, curves.

Built from a TuneExperiment and its TuneTrials as read from the cluster. A
trial's full curve (its history) is fetched on first use, once for the whole
experiment, from whatever `HistorySource` the grid was given (the
`ExperimentClient` that read it).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from kubetune.client.errors import TuneError
from kubetune.client.history import History, trial_history

if TYPE_CHECKING:
    import pandas as pd


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
    """namespace/name of the TuneTrial (kubectl get tunetrial -n NAMESPACE NAME)."""
    error: TrialError | None = None
    pruned_at: dict[str, Any] | None = None
    _history: History | None = field(default=None, repr=False)
    _load_history: Any = field(default=None, repr=False)

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
        self._results = [self._result(t) for t in trials]

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
                      path=f"{self.namespace}/{name}", error=error,
                      pruned_at=status.get("prunedAt"),
                      _history=trial_history(trial, self.metric) if self._client is None else None,
                      _load_history=self._history_of if self._client is not None else None)

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
                        scope: Literal["last", "all"] = "last",
                        filter_nan_and_inf: bool = True) -> Result:
        """The experiment's bestTrial by default (the operator's choice among completed
        trials); with another metric, mode or scope, the best over all trials that report it."""
        best_name = (self.status.get("bestTrial") or {}).get("name")
        if metric in (None, self.metric) and mode in (None, self.mode) and scope == "last" \
                and best_name:
            return next(r for r in self._results if r.trial_name == best_name)
        metric, mode = metric or self.metric, mode or self.mode
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        sign = 1.0 if mode == "max" else -1.0
        scored: list[tuple[float, Result]] = []
        for r in self._results:
            if scope == "all":
                history = r._history if r._load_history is None else self._history_of(r.trial_name)
                values = [m[metric] for m in (history or {}).values() if metric in m]
                value = max((sign * v for v in values if math.isfinite(v)), default=None)
                if value is not None:
                    scored.append((value, r))
                continue
            v = r.metrics.get(metric)
            if isinstance(v, int | float) and (math.isfinite(v) or not filter_nan_and_inf):
                scored.append((sign * float(v), r))
        if not scored:
            raise TuneError(f"no trial of {self.name!r} has reported {metric!r} yet")
        return max(scored, key=lambda s: s[0])[1]

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


__all__ = ["HistorySource", "Result", "ResultGrid", "TrialError"]
