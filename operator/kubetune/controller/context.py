"""What the operator keeps between ticks, in kopf's memo: its clients, its settings and
the per-experiment state its ticks share (never module globals)."""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kubetune.controller.creations import Creations
from kubetune.controller.gateway import Gateway
from kubetune.controller.metrics import OperatorMetrics
from kubetune.controller.pace import DecisionEvents, StatusPace
from kubetune.controller.planner import SchedulerCache
from kubetune.controller.prometheus import PrometheusSource
from kubetune.controller.settings import OperatorSettings
from kubetune.controller.view import TrialViews, Writes


@dataclass
class OperatorContext:
    """Per-operator state, kept in kopf's memo (never in module globals)."""

    settings: OperatorSettings
    gateway: Gateway
    prometheus: PrometheusSource
    metrics: OperatorMetrics
    writes: Writes = field(default_factory=Writes)
    """The operator's writes the watch-fed view has not confirmed yet (view.py)."""
    writers: Executor | None = None
    """Where a tick's writes run, one chain per trial, decisions first (concurrent.py);
    None: in turn."""
    creations: Creations | None = None
    """Each experiment's creations in flight (creations.py); None: a tick waits for its own."""
    pace: StatusPace = field(default_factory=StatusPace)
    """When a status write that changes only the experiment's progress is due (pace.py)."""
    decision_events: DecisionEvents = field(default_factory=DecisionEvents)
    """The Normal trial-decision Events held back to be merged (pace.py)."""
    schedulers: SchedulerCache = field(default_factory=SchedulerCache)
    """Each running experiment's scheduler, kept between its ticks (planner/schedulers.py)."""
    trial_views: TrialViews = field(default_factory=TrialViews)
    """Each running experiment's parsed TuneTrials, kept between its ticks (view.py)."""


def now() -> str:
    """The current time as the statuses write it (RFC 3339, UTC, seconds)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
