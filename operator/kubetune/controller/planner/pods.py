"""What a trial pod's state means for the trial: a failure, a disruption, a wait, a warning.

Pure readings of a PodView (and of the tick's time, passed in as RFC 3339 text):
why an attempt failed, in words that name the cause (OOMKilled with the memory
limit, the image that cannot be pulled); whether a pod that waits on its image or
its container's config has waited past `trialStartTimeoutSeconds`; and the
experiment's conditions about its pods (`TrialsUnschedulable`, `TrialsReporting`),
so that what only the pods show is readable on the experiment.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubetune.api import Condition
from kubetune.controller.planner.views import START_ERRORS, PodView, parse_termination_message

PERMANENT_START_ERRORS = frozenset({"InvalidImageName", "ErrImageNeverPull"})
"""Waiting reasons that no wait can cure: the attempt fails at once."""

IMAGE_ERRORS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                          "ErrImageNeverPull"})


def seconds_between(earlier: str, later: str) -> float:
    """Seconds from one RFC 3339 time to another (negative if `later` is earlier)."""
    return (_parse(later) - _parse(earlier)).total_seconds()


def _parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def start_failure(pod: PodView, now: str, timeout_seconds: int) -> str | None:
    """Why the pod's attempt fails without ever starting, or None while it may still start.

    An image that cannot be pulled or a container config that cannot be built fails the
    attempt once the pod has waited `timeout_seconds` (an image name that can never be
    valid fails it at once); the message names the image and the kubelet's words.
    """
    reason = pod.waiting_reason
    if reason not in START_ERRORS or pod.done:
        return None
    if reason not in PERMANENT_START_ERRORS:
        since = pod.waiting_since
        if since is None or seconds_between(since, now) < timeout_seconds:
            return None
    detail = f": {pod.waiting_message}" if pod.waiting_message else ""
    if reason in IMAGE_ERRORS:
        what = f'image "{pod.image}" cannot be pulled ({reason}{detail})'
    else:
        what = f'the container of image "{pod.image}" cannot be created ({reason}{detail})'
    waited = "" if reason in PERMANENT_START_ERRORS else f" after {timeout_seconds}s"
    return f"{what}{waited}"


def failure(pod: PodView) -> tuple[str, str]:
    """(reason, why) of a failed attempt: a CamelCase reason for the trial and the words."""
    if pod.reason == "OOMKilled":
        limit = (f"its memory limit {pod.memory_limit}" if pod.memory_limit
                 else "the node's memory (the container sets no memory limit)")
        return "OOMKilled", (f"OOMKilled: the container used more than {limit}; raise "
                             "resources.limits.memory in spec.trialTemplate or use less memory")
    why = f"exit code {pod.exit_code}" if pod.exit_code is not None else (pod.reason or "failed")
    if pod.message and not parse_termination_message(pod.message):
        why += f": {pod.message.strip().splitlines()[-1][:200]}"
    return "Failed", why


MakeCondition = Callable[[str, bool, str, str, str, Sequence[Mapping[str, Any]]], Condition]
"""status.condition's signature: (type, ok, reason, message, now, previous conditions)."""


@dataclass
class PodHealth:
    """What the tick saw of its pods that belongs on the experiment, gathered per trial."""

    unschedulable: list[tuple[str, str]] = field(default_factory=list)
    """(pod, scheduler message) of each pod the scheduler cannot place."""
    silent: list[tuple[str, float]] = field(default_factory=list)
    """(trial, seconds without a report) of each running trial past the report timeout."""

    def conditions(self, report_timeout: int, now: str, previous: Sequence[Mapping[str, Any]],
                   make: MakeCondition) -> list[Condition]:
        """The TrialsUnschedulable and TrialsReporting conditions; `make` is status.condition."""
        if self.unschedulable:
            pod, message = self.unschedulable[0]
            unschedulable = make(
                "TrialsUnschedulable", True, "Unschedulable",
                f"{len(self.unschedulable)} trial pod(s) cannot be scheduled; the experiment "
                f"waits for capacity. {pod}: {message}", now, previous)
        else:
            unschedulable = make("TrialsUnschedulable", False, "Scheduled",
                                 "every trial pod was scheduled", now, previous)
        if self.silent:
            names = ", ".join(f"{t} ({s:.0f}s)" for t, s in self.silent[:5])
            more = f" and {len(self.silent) - 5} more" if len(self.silent) > 5 else ""
            reporting = make(
                "TrialsReporting", False, "NotReporting",
                f"{len(self.silent)} running trial(s) reported no metric within "
                f"trialReportTimeoutSeconds={report_timeout}: {names}{more}; check their logs",
                now, previous)
        else:
            reporting = make("TrialsReporting", True, "Reporting",
                             "every running trial reports within trialReportTimeoutSeconds",
                             now, previous)
        return [unschedulable, reporting]


def became_true(ctype: str, conditions: Sequence[Condition],
                previous: Sequence[Mapping[str, Any]]) -> Condition | None:
    """The condition of `ctype` if it is True now and was not before (to post its Event once)."""
    now_true = next((c for c in conditions if c.type == ctype and c.status == "True"), None)
    if now_true is None:
        return None
    before = next((c for c in previous if c.get("type") == ctype), None)
    return None if before is not None and before.get("status") == "True" else now_true
