"""spec.stop and spec.timeBudgetSeconds: when a trial, or the whole experiment, is done.

Ray's `RunConfig(stop={...})` and `TuneConfig(time_budget_s=...)`. A stop
condition is Ray's rule (ray/tune/experiment/trial.py, `Trial.should_stop`):
a trial stops at the first result in which some named value is `>=` its
threshold, `training_iteration` being the step the trial reported. The rule is
a pure function of one report, so the operator decides it from what the trial
reported and nothing else; the time budget counts from the experiment's
status.startTime, which is persisted, so an operator restarted at any moment
finds the same deadline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from kubetune.api.common import SpecModel
from kubetune.api.limits import MAX_NAME_LENGTH, METRIC_NAME_PATTERN, METRIC_WHY, name_problem

MAX_STOP_METRICS = 16
TRAINING_ITERATION = "training_iteration"
"""Ray's name for the step a trial reports (kubetune.trial.report(step=...))."""


def _check_name(name: str) -> str:
    problem = name_problem("stop metric name", name, METRIC_NAME_PATTERN, METRIC_WHY)
    if len(name) > MAX_NAME_LENGTH:
        problem = f"stop metric name {name[:20]!r}... is over {MAX_NAME_LENGTH} characters"
    if problem:
        raise ValueError(problem)
    return name


StopMetricName = Annotated[str, AfterValidator(_check_name)]


class StopSpec(SpecModel):
    """When a trial is done before its program ends, as Ray's RunConfig(stop={...})."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [{
        "rule": "has(self.trainingIteration) || (has(self.metrics) && size(self.metrics) > 0)",
        "message": "stop needs trainingIteration or at least one entry in metrics",
    }]})

    training_iteration: int | None = Field(
        default=None,
        ge=1,
        description="A trial is ended Succeeded once the step it reported "
        "(kubetune.trial.report(step=...), Ray's training_iteration) is >= this, as "
        "Ray's stop={'training_iteration': N}. The operator ends its pod at the first "
        "report it reads at or past N, and records the metrics of that report.",
    )
    metrics: dict[StopMetricName, float] | None = Field(
        default=None,
        description="Thresholds by metric name: a trial is ended Succeeded once the latest "
        "value it reported of any of them is >= its threshold, as Ray's "
        "stop={'accuracy': 0.98} (Ray's rule is >= whatever the objective's mode: to stop "
        "on a low loss, report its negative). training_iteration here is the step.",
        json_schema_extra={"maxProperties": MAX_STOP_METRICS, "x-kubernetes-validations": [{
            "rule": f"self.all(k, size(k) <= {MAX_NAME_LENGTH} && "
                    f"k.matches('{METRIC_NAME_PATTERN}'))",
            "message": f"stop.metrics names must match {METRIC_NAME_PATTERN} (at most "
                       f"{MAX_NAME_LENGTH} characters): {METRIC_WHY}"}]},
    )

    @model_validator(mode="after")
    def _not_empty(self) -> StopSpec:
        if self.training_iteration is None and not self.metrics:
            raise ValueError("stop needs trainingIteration or at least one entry in metrics; "
                             "remove stop to let trials run to their end")
        return self

    def thresholds(self) -> dict[str, float]:
        """Every condition as Ray's stop dict: {name: threshold}."""
        out = dict(self.metrics or {})
        if self.training_iteration is not None:
            out[TRAINING_ITERATION] = min(float(self.training_iteration),
                                          out.get(TRAINING_ITERATION, float("inf")))
        return out


def stop_reason(stop: StopSpec | None, step: int | None,
                metrics: Mapping[str, Any]) -> str | None:
    """Why a trial whose latest report is (`step`, `metrics`) is done, or None.

    Ray's `Trial.should_stop` on the result {**metrics, training_iteration: step}: the
    first condition, in the order written, whose value is reported and >= its threshold.
    """
    if stop is None:
        return None
    result: dict[str, Any] = dict(metrics)
    if step is not None:
        result[TRAINING_ITERATION] = step
    for name, threshold in stop.thresholds().items():
        value = result.get(name)
        if value is None:
            continue
        try:
            reached = float(value) >= threshold
        except (TypeError, ValueError):
            continue
        if reached:
            shown = f"{int(threshold)}" if name == TRAINING_ITERATION else f"{threshold:g}"
            return f"stop condition {name} >= {shown} met ({name}={float(value):g})"
    return None


__all__ = ["MAX_STOP_METRICS", "TRAINING_ITERATION", "StopSpec", "stop_reason"]
