"""The operator's Events about one trial, wherever they were posted.

A Warning alone in its tick is posted on its TuneTrial; every Normal decision, and a
Warning several trials got in one tick, on the TuneExperiment, naming each trial with
its words (kubetune/controller/planner/events.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubernetes import client

from kubetune.controller.planner.events import decisions

OPERATOR = "kubetune-operator"


@dataclass(frozen=True)
class TrialEvent:
    """One Event about one trial: `on` is the kind it was posted on."""

    trial: str
    on: str
    type: str
    reason: str
    words: str


def operator_events(api_client: client.ApiClient, namespace: str) -> list[Any]:
    items = client.CoreV1Api(api_client).list_namespaced_event(namespace).items
    return [e for e in items if e.reporting_component == OPERATOR]


def about_trials(events: list[Any]) -> list[TrialEvent]:
    """Every trial named by `events`, once per Event that names it."""
    found: list[TrialEvent] = []
    for e in events:
        kind, name = e.involved_object.kind, e.involved_object.name
        if kind == "TuneTrial":
            found.append(TrialEvent(name, kind, e.type, e.reason, e.message or ""))
        elif kind == "TuneExperiment":
            found.extend(TrialEvent(trial, kind, e.type, e.reason, words)
                         for trial, words in decisions(e.message or "", name).items())
    return found


def about(api_client: client.ApiClient, namespace: str, name: str,
          reason: str | None = None) -> list[TrialEvent]:
    """The operator's Events (of `reason`, if given) posted on the object `name`, and those
    on an experiment that name the trial `name`."""
    posted = operator_events(api_client, namespace)
    found = [TrialEvent(name, e.involved_object.kind, e.type, e.reason, e.message or "")
             for e in posted if e.involved_object.name == name]
    found += [t for t in about_trials(posted) if t.trial == name and t.on == "TuneExperiment"]
    return [t for t in found if reason in (None, t.reason)]
