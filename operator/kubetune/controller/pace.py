"""How often an experiment's status is written when only its trial counts changed.

A status patch that changes anything else (phase, best trial, rungs, conditions) goes
out at once; one that changes only `status.trials` (the counts per state, which move
at every trial start and end) waits until `COUNTS_SECONDS` have passed since that
experiment's last status write. Nothing decided reads the counts back (the planner
recounts them from the TuneTrials every tick), so a skipped write loses nothing: the
next write carries the counts of its tick, and the experiment's final status is never
a counts-only change.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

COUNTS_SECONDS = 5.0


class StatusPace:
    """The last status write of each experiment (by uid), and whether the next one is due."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 seconds: float = COUNTS_SECONDS) -> None:
        self._clock = clock
        self._seconds = seconds
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}

    def due(self, uid: str, counts_only: bool) -> bool:
        """Whether a status write that changes something (only the counts when
        `counts_only`) goes out now; when it does, it is recorded as written."""
        now = self._clock()
        with self._lock:
            last = self._last.get(uid)
            if counts_only and last is not None and now - last < self._seconds:
                return False
            self._last[uid] = now
            return True

    def forget(self, uid: str) -> None:
        """Drop a deleted experiment's record."""
        with self._lock:
            self._last.pop(uid, None)
