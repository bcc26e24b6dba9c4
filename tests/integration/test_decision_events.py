"""Decision Events on the real control plane: one per reason and tick on the experiment,
naming each trial; none of the Normal ones on a TuneTrial (kubetune/controller/planner/events.py)."""

from __future__ import annotations

import time
from collections import Counter

from tests.integration.test_operator import create, trials, wait_phase
from tests.support.events import about_trials, operator_events
from tests.support.operator import OperatorProcess, scripted_experiment

QUALITIES = [0.9, 0.2, 0.8, 0.1, 0.7, 0.3, 0.6, 0.4]


def test_a_ticks_trials_are_created_and_pruned_under_one_event_each_on_the_experiment(
        api_client, namespace, operator: OperatorProcess) -> None:
    create(api_client, namespace, scripted_experiment("batch", QUALITIES, concurrency=4))
    exp = wait_phase(api_client, namespace, "batch", ("Succeeded", "Failed"), timeout=180)
    assert exp["status"]["phase"] == "Succeeded", exp["status"]
    time.sleep(2)  # kopf posts Events from a queue, a moment after the last write
    posted = operator_events(api_client, namespace)
    ts = trials(api_client, namespace)
    assert len(ts) == len(QUALITIES)

    assert not [(e.involved_object.name, e.reason) for e in posted
                if e.involved_object.kind == "TuneTrial" and e.type == "Normal"], \
        "Normal decisions are posted on the experiment"
    created_events = [e for e in posted if e.reason == "TrialCreated"]
    assert all(e.involved_object.kind == "TuneExperiment" and e.involved_object.name == "batch"
               and e.type == "Normal" for e in created_events)
    # The first tick creates four trials at once: one Event names them all.
    assert len(created_events) < len(ts)
    named = Counter(t.trial for t in about_trials(posted) if t.reason == "TrialCreated")
    assert named == Counter(set(ts)), "every trial is named in exactly one TrialCreated Event"
    words = {t.trial: t.words for t in about_trials(posted) if t.reason == "TrialCreated"}
    for name, t in ts.items():
        assert words[name].startswith(f"trial {t['spec']['index']} with "), words[name]

    pruned = {n for n, t in ts.items() if t["status"]["state"] == "Pruned"}
    assert pruned, "ASHA prunes some of these curves"
    said = {t.trial: t.words for t in about_trials(posted) if t.reason == "TrialPruned"}
    assert set(said) == pruned
    assert all(said[n] == ts[n]["status"]["message"] for n in pruned), \
        "each pruned trial's words are its decision, as its status says"
    assert all(len(e.message.encode()) <= 1024 for e in posted)
