"""The reconcile decision for one experiment at one tick, as a pure function.

    plan_tick(experiment, trials, pods, snapshot, now) -> Plan

Everything the operator knows comes in (the experiment, its TuneTrials and Pods
as read from the API, one Prometheus snapshot or None when Prometheus could not
be read), and everything it will do comes out (objects to create, statuses to
write, pods to delete, events). The scheduler is rebuilt from the rung records
persisted on the TuneTrials at every tick, so an operator restarted at any
moment takes the same decisions. The one thing that may live between ticks is a
SchedulerCache (schedulers.py), which keeps a scheduler to restore cheaply and
never changes a decision.

Part of the operator pod, and pure: no kopf, no kubernetes client, no clock.
views.py is what comes in, actions.py what goes out, trial.py one trial's
state machine, pods.py what a pod's state means (a failure, a disruption, a
wait, a warning), status.py the experiment's status from the api models, and
plan.py the tick that ties them together.
"""

from kubetune.controller.planner.actions import Event, NewPod, NewTrial, Plan
from kubetune.controller.planner.plan import build_scheduler, plan_tick
from kubetune.controller.planner.schedulers import SchedulerCache
from kubetune.controller.planner.views import (
    ExperimentView,
    PodView,
    TrialMetrics,
    TrialView,
    parse_termination_message,
)

__all__ = [
    "Event",
    "ExperimentView",
    "NewPod",
    "NewTrial",
    "Plan",
    "PodView",
    "SchedulerCache",
    "TrialMetrics",
    "TrialView",
    "build_scheduler",
    "parse_termination_message",
    "plan_tick",
]
