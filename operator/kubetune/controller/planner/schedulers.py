"""Each experiment's scheduler, kept from one tick to the next.

Restoring every trial into a fresh scheduler costs a tick time in proportion to all
the records ever written. A kept scheduler is brought back to what the TuneTrials
hold instead: trials that are gone are forgotten, and each trial is restored from
its records, which for a trial whose records did not change only resets its
verdicts. The decisions stay a function of what is persisted, whatever the kept
scheduler held, since restore over any state equals restore into a fresh one.

Only schedulers whose restore is known to keep that promise cheaply are kept
(ASHA, with any number of brackets); every other kind is built fresh each tick.
A scheduler is taken out while its tick runs and put back when the tick is done,
so a tick that raised, or one running beside it, never sees its half-done state.
"""

from __future__ import annotations

import threading

from kubetune.api import TuneExperimentSpec
from kubetune.schedulers import AsyncHyperBandScheduler, TrialScheduler

_KEPT: tuple[type[TrialScheduler], ...] = (AsyncHyperBandScheduler,)
"""Scheduler classes (exactly these, not subclasses) that are worth keeping."""


def scheduler_settings(spec: TuneExperimentSpec) -> str:
    """What a scheduler is built from; a kept one built from other settings is dropped."""
    return spec.scheduler.model_dump_json() + spec.objective.model_dump_json()


class SchedulerCache:
    """The schedulers of the experiments one operator reconciles, by (namespace, name)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: dict[tuple[str, str], tuple[str, TrialScheduler]] = {}

    def take(self, namespace: str, name: str, settings: str) -> TrialScheduler | None:
        """Take out the experiment's scheduler if one built from `settings` is kept."""
        with self._lock:
            kept = self._kept.pop((namespace, name), None)
        if kept is None or kept[0] != settings:
            return None
        return kept[1]

    def put(self, namespace: str, name: str, settings: str, scheduler: TrialScheduler) -> None:
        """Keep the scheduler a tick is done with; kinds not worth keeping are not kept."""
        if type(scheduler) not in _KEPT:
            return
        with self._lock:
            self._kept[namespace, name] = (settings, scheduler)

    def forget_experiment(self, namespace: str, name: str) -> None:
        """Drop a deleted experiment's scheduler."""
        with self._lock:
            self._kept.pop((namespace, name), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._kept)
