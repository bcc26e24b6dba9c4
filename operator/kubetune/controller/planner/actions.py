"""What the planner decides: the actions of one tick, for the reconciler to apply.

A Plan is data, not calls: objects to create, statuses to write, pods to delete,
Events to post. The statuses are the API's own models, so what the operator
writes is what the CRD schema says; each is written as a merge patch
(`StatusModel.merge_patch`): the fields set here are written, a field set to
None is cleared, and a field never set keeps its stored value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from kubetune.api import TuneExperimentStatus, TuneTrialStatus


@dataclass(frozen=True)
class NewTrial:
    """A TuneTrial to create: the index of a config not yet run, and that config."""

    index: int
    params: dict[str, Any]
    sampler_state: dict[str, Any] = field(default_factory=dict)
    """What the sampler wrote on the trial when asked (cmaes), written with the config."""


@dataclass(frozen=True)
class NewPod:
    """A pod to create for a trial: its first attempt or a retry."""

    trial: str
    index: int
    attempt: int
    params: Mapping[str, Any]
    milestones: list[int]
    """Steps at which the scheduler judges the trial; the pod exports its value there."""
    start_checkpoint: str = ""
    """PBT: the donor's checkpoint this attempt starts from, relative to the experiment's
    checkpoint directory ("" for none)."""
    checkpoint_segment: int = 0
    """PBT: the trial's exploits so far; each one starts a checkpoint directory of its own."""


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the experiment or on one of its trials."""

    kind: Literal["TuneExperiment", "TuneTrial"]
    name: str
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass
class Plan:
    """Everything one tick does for one experiment, in the order it is applied."""

    new_trials: list[NewTrial] = field(default_factory=list)
    new_pods: list[NewPod] = field(default_factory=list)
    trial_status: dict[str, TuneTrialStatus] = field(default_factory=dict)
    """Per trial name, the status fields to write (only those set are written)."""
    delete_pods: list[tuple[str, int]] = field(default_factory=list)
    """(pod name, grace period in seconds)."""
    experiment_status: TuneExperimentStatus | None = None
    events: list[Event] = field(default_factory=list)
    more_to_create: bool = False
    """Slots are free that this tick left to the next one (plan.CREATES_PER_TICK): tick again
    at once rather than after the usual wait."""

    def patch_trial(self, name: str, **fields: Any) -> TuneTrialStatus:
        """Add fields (TuneTrialStatus's names) to the trial's status patch; later ones win."""
        earlier = self.trial_status.get(name)
        if earlier is not None:
            fields = {**{f: getattr(earlier, f) for f in earlier.model_fields_set}, **fields}
        status = self.trial_status[name] = TuneTrialStatus(**fields)
        return status

    @property
    def deleting(self) -> set[str]:
        """The pods this plan deletes."""
        return {name for name, _ in self.delete_pods}

    def event(self, kind: Literal["TuneExperiment", "TuneTrial"], name: str,
              type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        """Post an Event once the tick's writes are done."""
        self.events.append(Event(kind, name, type_, reason, message))
