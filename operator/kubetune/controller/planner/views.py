"""What the planner reads: the experiment, its trials, their pods and their metrics.

Each view holds only the parts of an API object (or of a Prometheus snapshot) a
decision depends on, read from the raw JSON the gateway lists: a 2,000-trial
experiment is parsed in milliseconds, and a test builds a view in one line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubetune.api import RungRecord, TrialState, TuneExperimentSpec, parse_rung_records
from kubetune.contract import (
    ATTEMPT_LABEL,
    TRIAL_LABEL,
    TerminationMessage,
    decode_termination_message,
)


@dataclass(frozen=True)
class PodView:
    """The parts of a trial Pod the planner reads."""

    name: str
    trial: str
    """The TuneTrial the pod runs (its trial label)."""
    attempt: int
    """1 for the trial's first pod, one more for each retry (its attempt label)."""
    phase: str
    deleting: bool = False
    """A deletion is under way; the pod still holds its GPU until it is gone."""
    exit_code: int | None = None
    reason: str = ""
    message: str = ""
    """The container's termination message: the trial's final report, or an error's tail."""

    @property
    def finished(self) -> bool:
        """The pod's container has exited (Succeeded or Failed); it holds no GPU any more."""
        return self.phase in ("Succeeded", "Failed")

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> PodView:
        """Read a Pod as the API lists it (raw JSON)."""
        meta, status = body["metadata"], body.get("status") or {}
        labels = meta.get("labels") or {}
        terminated: Mapping[str, Any] = {}
        for cs in status.get("containerStatuses") or []:
            terminated = (cs.get("state") or {}).get("terminated") or {}
            break
        return cls(
            name=meta["name"], trial=labels.get(TRIAL_LABEL, ""),
            attempt=int(labels.get(ATTEMPT_LABEL, "1")),
            phase=status.get("phase", "Pending"), deleting=bool(meta.get("deletionTimestamp")),
            exit_code=terminated.get("exitCode"),
            reason=terminated.get("reason", "") or status.get("reason", ""),
            message=terminated.get("message", "") or status.get("message", ""),
        )


@dataclass(frozen=True)
class TrialView:
    """A TuneTrial as the planner reads it: its index, its config and its stored status."""

    name: str
    index: int
    params: Mapping[str, Any]
    status: Mapping[str, Any]
    """The status as the apiserver stores it (camelCase JSON, null fields dropped)."""

    @property
    def state(self) -> str:
        """The trial's TrialState value; Pending until the operator first wrote one."""
        return str(self.status.get("state") or TrialState.PENDING.value)

    @property
    def records(self) -> list[RungRecord]:
        """The rung records persisted in status.rungs, from which the scheduler is rebuilt."""
        return parse_rung_records(self.status.get("rungs") or [])

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> TrialView:
        """Read a TuneTrial as the API lists it (raw JSON)."""
        spec = body.get("spec") or {}
        return cls(name=body["metadata"]["name"], index=int(spec.get("index", 0)),
                   params=spec.get("params") or {}, status=body.get("status") or {})


@dataclass(frozen=True)
class ExperimentView:
    """The TuneExperiment being reconciled: its validated spec and its stored status."""

    name: str
    namespace: str
    generation: int
    spec: TuneExperimentSpec
    status: Mapping[str, Any]
    """The status as the apiserver stores it (camelCase JSON)."""


@dataclass
class TrialMetrics:
    """What Prometheus holds for one trial right now (one entry of a snapshot)."""

    step: int | None = None
    """The latest step the trial reported; None before its first report."""
    metrics: dict[str, float] = field(default_factory=dict)
    """The latest value of each metric, NaN and infinities as Prometheus renders them."""
    rungs: dict[int, tuple[int, float]] = field(default_factory=dict)
    """milestone -> (step at which it was observed, value) of the objective metric."""
    finished: bool = False
    """The trial said it is done (its finished gauge is 1)."""


def parse_termination_message(message: str) -> TerminationMessage | None:
    """The trial's final report as written by kubetune.trial, or None if absent/garbled."""
    if not message:
        return None
    try:
        return decode_termination_message(message)
    except ValueError:
        return None
