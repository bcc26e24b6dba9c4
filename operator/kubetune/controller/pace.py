"""How often an experiment's progress is written: its status and its decision Events.

Status. A status patch that changes anything but progress (phase, best trial, a
condition's status or reason, observedGeneration, start or completion time) goes out at
once; one that changes only progress waits until `PROGRESS_SECONDS` have passed since
that experiment's last status write. Progress is what moves at every trial start, end
and rung value: `status.trials` (the counts per state), `status.rungs` (the rung
table's counts and cutoffs) and the running experiment's "N running, C/T trials created"
message (in `status.message` and the Complete/Failed conditions' messages). Nothing
decided reads these back (the planner recounts and recomputes them from the TuneTrials
every tick), so a skipped write loses nothing: the next write carries its tick's values,
and an experiment's final status is never a progress-only change.

Decision Events. The Normal Events about trials (TrialCreated, TrialPruned,
TrialStopped, TrialExploited) are merged over ticks as well as within one
(planner/events.py): a reason's trials wait in `DecisionEvents` until
`EVENT_SECONDS` have passed since that experiment last posted that reason, until they
fill a message, or until the experiment ends, and then go out as one Event naming them
all. The first decision of a reason after a quiet spell goes out at once, so a slow
experiment's Events are as prompt as before. Warnings and the experiment's own Events
never wait. Events are not decisions (each trial's status holds its own): the few held
back when the operator is killed are not posted.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kubetune.controller.planner.actions import Event
from kubetune.controller.planner.events import (
    MAX_MESSAGE_BYTES,
    decision_message,
    normal_decision,
)

PROGRESS_SECONDS = 10.0
EVENT_SECONDS = 30.0

_PROGRESS_MESSAGE = re.compile(r"\d+ running, \d+/\d+ trials created")
_PROGRESS_FIELDS = ("trials", "rungs")


class StatusPace:
    """The last status write of each experiment (by uid), and whether the next one is due."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 seconds: float = PROGRESS_SECONDS) -> None:
        self._clock = clock
        self._seconds = seconds
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}

    def due(self, uid: str, progress_only: bool) -> bool:
        """Whether a status write that changes something (only progress when
        `progress_only`) goes out now; when it does, it is recorded as written."""
        now = self._clock()
        with self._lock:
            last = self._last.get(uid)
            if progress_only and last is not None and now - last < self._seconds:
                return False
            self._last[uid] = now
            return True

    def forget(self, uid: str) -> None:
        """Drop a deleted experiment's record."""
        with self._lock:
            self._last.pop(uid, None)


def without_progress(status: Mapping[str, Any]) -> dict[str, Any]:
    """`status` (stored, or a merge patch) with its progress left out (see above)."""
    out = {k: v for k, v in status.items() if k not in _PROGRESS_FIELDS}
    if _is_progress(out.get("message")):
        out.pop("message")
    if isinstance(out.get("conditions"), list):
        out["conditions"] = [
            {k: v for k, v in c.items() if k != "message"}
            if isinstance(c, Mapping) and _is_progress(c.get("message")) else c
            for c in out["conditions"]]
    return out


def _is_progress(message: Any) -> bool:
    return isinstance(message, str) and _PROGRESS_MESSAGE.fullmatch(message) is not None


class DecisionEvents:
    """The Normal trial-decision Events each experiment (by uid) holds back, per reason."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 seconds: float = EVENT_SECONDS, limit: int = MAX_MESSAGE_BYTES) -> None:
        self._clock = clock
        self._seconds = seconds
        self._limit = limit
        self._lock = threading.Lock()
        self._held: dict[str, dict[str, list[Event]]] = {}
        self._last: dict[tuple[str, str], float] = {}

    def due(self, uid: str, events: Sequence[Event], *, ended: bool = False) -> list[Event]:
        """The Events to aggregate and post now, of this tick's `events` and those held.

        A reason's held trials come first, in the order they were decided, then the
        tick's own; everything held goes out when the experiment has `ended`.
        """
        now = self._clock()
        with self._lock:
            held = self._held.setdefault(uid, {})
            others: list[Event] = []
            for ev in events:
                if normal_decision(ev):
                    held.setdefault(ev.reason, []).append(ev)
                else:
                    others.append(ev)
            posted: list[Event] = []
            for reason in list(held):
                waiting = held[reason]
                last = self._last.get((uid, reason))
                if ended or last is None or now - last >= self._seconds or self._full(waiting):
                    posted.extend(waiting)
                    del held[reason]
                    self._last[(uid, reason)] = now
            if not held:
                del self._held[uid]
            return posted + others

    def _full(self, waiting: Sequence[Event]) -> bool:
        """Whether one Event naming `waiting` would fill a message (planner/events.py)."""
        message = decision_message([(e.name, e.message) for e in waiting], self._limit)
        return len(message.encode()) >= self._limit * 3 // 4 or message.endswith(" more")

    def forget(self, uid: str) -> None:
        """Drop a deleted experiment's held Events."""
        with self._lock:
            self._held.pop(uid, None)
            for key in [k for k in self._last if k[0] == uid]:
                del self._last[key]


def without_nulls(value: Any) -> Any:
    """`value` as the apiserver stores it: null fields are dropped."""
    if isinstance(value, Mapping):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def progress_only(stored: Mapping[str, Any], patch: Mapping[str, Any]) -> bool:
    """True when the status patch `patch` changes nothing in `stored` but its progress: the
    trial counts, the rung table, the running experiment's message (above)."""
    return not changes(without_progress(stored), without_progress(patch))


def changes(stored: Any, patch: Any) -> bool:
    """True when applying the merge patch `patch` would change `stored`."""
    if isinstance(patch, Mapping):
        if not isinstance(stored, Mapping):
            return True
        return any(changes(stored.get(k), v) for k, v in patch.items())
    return bool(without_nulls(stored) != without_nulls(patch))
