"""What went wrong in a tick, and what the experiment shows for it.

Every exception out of one experiment's tick comes to `classify`, which says
whether it is permanent or transient:

- permanent: the spec can never work, so retrying changes nothing. An invalid
  spec; the apiserver refusing a trial's Pod or TuneTrial as invalid (400/422)
  or by admission (403 from Pod Security or a ValidatingAdmissionPolicy); an
  object too large to store (413, or etcd's "request is too large"); a status
  the CRD schema refuses. The experiment ends Failed with the apiserver's message.
- transient: the API or the network is unwell, or a bug of ours (an unexpected
  exception). The tick is retried with backoff; the experiment shows a
  `ReconcileError` condition and an Event, rate-limited by `ErrorHistory`.

Decisions only: the writes are reconcile.py's. Part of the operator pod.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from urllib3.exceptions import HTTPError

from kubetune.api import Condition, ExperimentPhase, SpecError, TuneExperimentStatus
from kubetune.controller.gateway import ApiCallError
from kubetune.controller.planner.status import condition, failure_conditions

RECONCILE_ERROR = "ReconcileError"
"""The condition (and Event reason) of a transient error, while it lasts."""

REPORT_EVERY_SECONDS = 60.0
"""A transient error that stays the same is reported again at most this often."""

_RBAC = re.compile(r"\bcannot \w+ resource\b")
"""An RBAC denial names the verb and resource the operator lacks; admission does not."""

_HINTS = {
    "Forbidden": "change spec.trialTemplate so that the namespace's admission policies "
                 "accept it, then create the experiment again",
    "TooLarge": "objects are limited to about 1.5 MiB: make spec.trialTemplate or the "
                "search space's values smaller, then create the experiment again",
    "Invalid": "create the experiment again with a spec that avoids it",
}


@dataclass(frozen=True)
class Failure:
    """One error of a tick, as the experiment will show it."""

    permanent: bool
    """The spec can never work: the experiment fails rather than retrying."""
    reason: str
    """A CamelCase word for the condition, the Event and the errors counter."""
    message: str
    """What happened and, for a user's error, how to fix it."""


def _too_large(e: ApiCallError) -> bool:
    text = e.message.lower()
    return e.status == 413 or e.reason == "RequestEntityTooLarge" or (
        e.status == 500 and ("too large" in text or "entity too large" in text))


def _refused(e: ApiCallError) -> str:
    what = {"tunetrials": "TuneTrial", "pods": "trial pod",
            "tuneexperiments/status": "the status of", "tunetrials/status": "the status of trial"}
    return f"the apiserver refused {what.get(e.resource, e.resource)} {e.name} ({e.verb}): {e.message}"


def _classify_api(e: ApiCallError) -> Failure:
    if _too_large(e):
        return Failure(True, "TooLarge", f"{_refused(e)}; {_HINTS['TooLarge']}")
    if e.status == 403:
        text = e.message.lower()
        if _RBAC.search(e.message):
            return Failure(False, "Forbidden", f"the operator is not allowed to {e.verb} "
                           f"{e.resource}: {e.message}; check the operator's RBAC")
        if "quota" in text:  # exceeded, or not computed yet: both pass as pods finish
            return Failure(False, "QuotaExceeded", f"{_refused(e)}; waiting for quota")
        if "being terminated" in text:
            return Failure(False, "NamespaceTerminating", _refused(e))
        if e.verb in ("create", "dry-run create"):
            return Failure(True, "Forbidden", f"{_refused(e)}; {_HINTS['Forbidden']}")
    if e.status in (400, 422) and e.verb != "delete":
        return Failure(True, "Invalid", f"{_refused(e)}; {_HINTS['Invalid']}")
    if e.status == 429:
        return Failure(False, "TooManyRequests", f"the apiserver throttled {e.verb} "
                       f"{e.resource}: {e.message}")
    if e.status == 0 or e.status >= 500:
        return Failure(False, "APIUnavailable", f"the apiserver failed {e.verb} {e.resource} "
                       f"{e.name}: {e.status} {e.message}")
    return Failure(False, "APIError", f"{e.verb} {e.resource} {e.name} answered "
                   f"{e.status} {e.reason}: {e.message}")


def classify(error: BaseException) -> Failure:
    """Whether `error` out of a tick is permanent, with its reason and message."""
    if isinstance(error, SpecError):
        return Failure(True, "InvalidSpec", f"invalid spec: {error}")
    if isinstance(error, ApiCallError):
        return _classify_api(error)
    if isinstance(error, (HTTPError, OSError)):  # urllib3's and the socket's: no answer at all
        return Failure(False, "APIUnreachable",
                       f"the apiserver is unreachable: {error.__class__.__name__}: {error}")
    return Failure(False, "InternalError", f"the operator failed on this experiment: "
                   f"{error.__class__.__name__}: {error}; see the operator's log")


@dataclass
class ErrorHistory:
    """One experiment's recent errors, in kopf's per-object memo (lost on restart, harmlessly)."""

    consecutive: int = 0
    """Ticks in a row that failed transiently."""
    reported: tuple[str, str] | None = None
    """The (reason, message) last put on the experiment."""
    reported_at: float = -math.inf
    """When it was (monotonic seconds)."""
    failed_generation: int | None = None
    """The generation that failed permanently: not reconciled again until it changes."""

    def failed(self, failure: Failure, clock: float, base: float, cap: float) -> tuple[float, bool]:
        """Record a transient failure: (seconds before the next try, whether to report it).

        The delay doubles from `base` with each failure in a row, up to `cap`; a failure
        is reported when it differs from the last one reported or `REPORT_EVERY_SECONDS`
        have passed since.
        """
        self.consecutive += 1
        delay = min(cap, base * 2 ** min(self.consecutive - 1, 16))
        key = (failure.reason, failure.message)
        report = key != self.reported or clock - self.reported_at >= REPORT_EVERY_SECONDS
        if report:
            self.reported, self.reported_at = key, clock
        return delay, report

    def first_report(self, failure: Failure, clock: float) -> bool:
        """Record a permanent failure: True the first time it is seen (post one Event)."""
        key = (failure.reason, failure.message)
        if key == self.reported:
            return False
        self.reported, self.reported_at = key, clock
        return True

    def succeeded(self) -> None:
        """A tick went through: the next error starts the backoff afresh."""
        self.consecutive = 0
        self.reported = None
        self.reported_at = -math.inf


def _others(previous: Sequence[Mapping[str, Any]], replaced: set[str]) -> list[Condition]:
    return [Condition.model_validate(c) for c in previous
            if c.get("type") not in replaced and c.get("type") and c.get("status")]


def failed_status(failure: Failure, generation: int, previous: Mapping[str, Any],
                  now: str) -> TuneExperimentStatus:
    """The status of an experiment that a permanent failure ends: Failed, and why."""
    stored = previous.get("conditions") or []
    conditions = failure_conditions(failure.reason, failure.message, now, stored, generation,
                                    spec_valid=failure.reason != "InvalidSpec")
    kept = _others(stored, {c.type for c in conditions} | {RECONCILE_ERROR})
    return TuneExperimentStatus(
        phase=ExperimentPhase.FAILED, message=failure.message, observed_generation=generation,
        conditions=[*conditions, *kept], completion_time=previous.get("completionTime") or now)


def retrying_status(failure: Failure, delay: float, generation: int,
                    previous: Mapping[str, Any], now: str) -> TuneExperimentStatus:
    """The status that shows a transient failure: a ReconcileError condition, and the message.

    The next tick that goes through writes the whole status again, which drops it.
    """
    stored = previous.get("conditions") or []
    error = condition(RECONCILE_ERROR, True, failure.reason,
                      f"{failure.message} (retrying in {delay:.0f}s)", now, stored, generation)
    return TuneExperimentStatus(message=f"retrying after an error: {failure.message}",
                                conditions=[*_others(stored, {RECONCILE_ERROR}), error])
