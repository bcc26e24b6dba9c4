"""What the planner reads: the experiment, its trials, their pods and their metrics.

Each view holds only the parts of an API object (or of a Prometheus snapshot) a
decision depends on, read from the raw JSON the gateway lists: a 2,000-trial
experiment is parsed in milliseconds, and a test builds a view in one line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from kubetune.api import RungRecord, TrialState, TuneExperimentSpec, parse_rung_records
from kubetune.contract import (
    ATTEMPT_LABEL,
    ENV_CONFIG,
    TRIAL_LABEL,
    TerminationMessage,
    decode_termination_message,
)

T = TypeVar("T")


@dataclass(frozen=True)
class PodView:
    """The parts of a trial Pod the planner reads.

    The trial runs in the pod's main (first) container: its state decides the trial's,
    whatever a sidecar does, while the pod's phase decides whether it still holds a GPU.
    """

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
    main_terminated: bool = False
    """The main container has exited, even if a sidecar keeps the pod Running."""
    owner_uid: str = ""
    """The uid of the TuneTrial that owns the pod; "" when unknown."""
    waiting_reason: str = ""
    """Why a container cannot start yet (ErrImagePull, CreateContainerConfigError, ...)."""
    waiting_message: str = ""
    image: str = ""
    """The image of the container that is waiting, else of the main container."""
    memory_limit: str = ""
    """The main container's memory limit as written in the pod (512Mi), "" when none."""
    unschedulable: str = ""
    """The scheduler's message while the pod cannot be scheduled, else ""."""
    disruption: str = ""
    """Why the pod was disrupted (its DisruptionTarget condition or eviction reason), else ""."""
    waiting_since: str | None = None
    """When the kubelet took the pod (its startTime), the start of any wait for its image."""
    running_since: str | None = None
    """When the main container started running (RFC 3339), None unless it runs."""
    config: Mapping[str, Any] | None = None
    """The config the pod was given (its main container's KUBETUNE_CONFIG), None if unreadable."""

    @property
    def finished(self) -> bool:
        """Every container has exited (Succeeded or Failed); the pod holds no GPU any more."""
        return self.phase in ("Succeeded", "Failed")

    @property
    def done(self) -> bool:
        """The trial's container has exited: the attempt is over, whatever sidecars still run."""
        return self.finished or self.main_terminated

    @property
    def failed(self) -> bool:
        """The attempt ended in failure: the pod failed, or its main container exited non-zero."""
        if self.main_terminated:
            return self.exit_code != 0
        return self.phase == "Failed"

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> PodView:
        """Read a Pod as the API lists it (raw JSON)."""
        meta, status = body["metadata"], body.get("status") or {}
        spec = body.get("spec") or {}
        labels = meta.get("labels") or {}
        containers = spec.get("containers") or [{}]
        main_name = containers[0].get("name")
        statuses = list(status.get("containerStatuses") or [])
        # The kubelet lists container statuses by name, not in spec order.
        main = next((cs for cs in statuses if cs.get("name") == main_name),
                    statuses[0] if statuses else {})
        state = main.get("state") or {}
        terminated: Mapping[str, Any] = state.get("terminated") or {}
        waiting: Mapping[str, Any] = {}
        image = containers[0].get("image", "")
        for cs in [*(status.get("initContainerStatuses") or []), main, *statuses]:
            w = (cs.get("state") or {}).get("waiting") or {}
            if w.get("reason") in START_ERRORS:
                waiting, image = w, cs.get("image") or _spec_image(spec, cs.get("name")) or image
                break
        limits = (containers[0].get("resources") or {}).get("limits") or {}
        owner = next((o.get("uid", "") for o in meta.get("ownerReferences") or []
                      if o.get("kind") == "TuneTrial"), "")
        return cls(
            name=meta["name"], trial=labels.get(TRIAL_LABEL, ""),
            attempt=int(labels.get(ATTEMPT_LABEL, "1")),
            phase=status.get("phase", "Pending"), deleting=bool(meta.get("deletionTimestamp")),
            exit_code=terminated.get("exitCode"),
            reason=terminated.get("reason", "") or status.get("reason", ""),
            message=terminated.get("message", "") or status.get("message", ""),
            main_terminated=bool(terminated),
            owner_uid=owner,
            waiting_reason=str(waiting.get("reason", "")),
            waiting_message=str(waiting.get("message", "")),
            image=str(image),
            memory_limit=str(limits.get("memory", "")),
            unschedulable=_unschedulable(status),
            disruption=_disruption(status),
            waiting_since=status.get("startTime") or meta.get("creationTimestamp"),
            running_since=(state.get("running") or {}).get("startedAt"),
            config=_pod_config(containers[0]),
        )


START_ERRORS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                          "ErrImageNeverPull", "CreateContainerConfigError"})
"""Container waiting reasons that keep a pod from ever starting unless something is fixed."""

DISRUPTION_REASONS = frozenset({"Evicted", "Preempting", "NodeLost", "NodeShutdown",
                                "Terminated", "UnexpectedAdmissionError"})
"""Pod status reasons of a pod ended by its node or the cluster, not by the trial."""


def _pod_config(container: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for env in container.get("env") or []:
        if env.get("name") == ENV_CONFIG:
            try:
                config = json.loads(env.get("value") or "")
            except ValueError:
                return None
            return config if isinstance(config, dict) else None
    return None


def _spec_image(spec: Mapping[str, Any], name: str | None) -> str:
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        if c.get("name") == name:
            return str(c.get("image", ""))
    return ""


def _unschedulable(status: Mapping[str, Any]) -> str:
    for c in status.get("conditions") or []:
        if (c.get("type") == "PodScheduled" and c.get("status") == "False"
                and c.get("reason") == "Unschedulable"):
            return str(c.get("message") or "the scheduler found no node for it")
    return ""


def _disruption(status: Mapping[str, Any]) -> str:
    for c in status.get("conditions") or []:
        if c.get("type") == "DisruptionTarget" and c.get("status") == "True":
            reason, message = c.get("reason") or "Disrupted", c.get("message") or ""
            return f"{reason}: {message}" if message else str(reason)
    reason = status.get("reason") or ""
    if reason in DISRUPTION_REASONS:
        message = status.get("message") or ""
        return f"{reason}: {message}" if message else str(reason)
    return ""


@dataclass(frozen=True)
class TrialView:
    """A TuneTrial as the planner reads it: its index, its config and its stored status."""

    name: str
    index: int
    params: Mapping[str, Any]
    status: Mapping[str, Any]
    """The status as the apiserver stores it (camelCase JSON, null fields dropped)."""
    uid: str = ""
    """The TuneTrial's uid, which its pods' owner reference names; "" when unknown."""
    sampler_state: Mapping[str, Any] = field(default_factory=dict)
    """spec.samplerState: what the sampler wrote on the trial when asked (cmaes)."""

    # A view is read-only, so what it derives from its status is worked out once: a view
    # kept between ticks (controller/view.py TrialViews) is not parsed again, and hands the
    # scheduler the same records each tick. Not functools.cached_property: on Python 3.11
    # it takes one lock for every instance, which the ticks of 50 experiments queue on.
    @property
    def state(self) -> str:
        """The trial's TrialState value; Pending until the operator first wrote one."""
        return self._derived("_state", lambda: str(self.status.get("state")
                                                   or TrialState.PENDING.value))

    @property
    def records(self) -> list[RungRecord]:
        """The rung records persisted in status.rungs, from which the scheduler is rebuilt
        (the same list each time: do not change it)."""
        return self._derived("_records", lambda: parse_rung_records(self.status.get("rungs") or []))

    def _derived(self, name: str, compute: Callable[[], T]) -> T:
        cached = self.__dict__.get(name)
        if cached is None:
            cached = compute()
            object.__setattr__(self, name, cached)  # two threads at once: the same value
        return cast(T, cached)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> TrialView:
        """Read a TuneTrial as the API lists it (raw JSON)."""
        spec = body.get("spec") or {}
        meta = body["metadata"]
        return cls(name=meta["name"], index=int(spec.get("index", 0)),
                   params=spec.get("params") or {}, status=body.get("status") or {},
                   uid=str(meta.get("uid", "")),
                   sampler_state=spec.get("samplerState") or {})


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
    last_report: float | None = None
    """Unix time of the trial's latest report, by its own clock; None before the first."""
    attempt: int | None = None
    """The attempt whose series these are (the highest attempt label Prometheus holds for
    the trial); None when the series carry no attempt label."""


def parse_termination_message(message: str) -> TerminationMessage | None:
    """The trial's final report as written by kubetune.trial, or None if absent/garbled."""
    if not message:
        return None
    try:
        return decode_termination_message(message)
    except ValueError:
        return None
