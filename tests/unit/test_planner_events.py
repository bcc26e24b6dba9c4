"""A tick's Events about trials are posted as one per decision kind on the experiment."""

from __future__ import annotations

import json

from kubetune.controller.planner import Event, plan_tick
from kubetune.controller.planner.events import (
    MAX_MESSAGE_BYTES,
    aggregate,
    decision_message,
    decisions,
)
from tests.unit.test_planner import NOW, experiment, pod, snapshot, trial


def trial_event(index: int, reason: str = "TrialCreated", type_: str = "Normal",
                words: str | None = None) -> Event:
    return Event("TuneTrial", f"exp-{index}", type_,  # type: ignore[arg-type]
                 reason, words if words is not None else f"trial {index} with {{}}")


def test_a_tick_creating_sixteen_trials_posts_one_event_on_the_experiment_naming_each():
    events = [trial_event(i, words=f"trial {i} with {{\"lr\": 0.{i}}}") for i in range(16)]
    posted = aggregate(events, "exp")
    assert len(posted) == 1
    ev = posted[0]
    assert (ev.kind, ev.name, ev.type, ev.reason) == ("TuneExperiment", "exp", "Normal",
                                                      "TrialCreated")
    assert decisions(ev.message, "exp") == {f"exp-{i}": f"trial {i} with {{\"lr\": 0.{i}}}"
                                            for i in range(16)}
    assert len(ev.message.encode()) <= MAX_MESSAGE_BYTES


def test_a_single_normal_event_goes_on_the_experiment_in_the_same_shape():
    posted = aggregate([trial_event(7, "TrialPruned", words="below the cutoff")], "exp")
    assert [(e.kind, e.name, e.reason) for e in posted] == [("TuneExperiment", "exp",
                                                             "TrialPruned")]
    assert posted[0].message == "exp-7: below the cutoff"
    assert decisions(posted[0].message, "exp") == {"exp-7": "below the cutoff"}


def test_a_single_warning_stays_on_its_trial_unchanged():
    failed = trial_event(3, "TrialFailed", "Warning", "failed after 2 attempt(s): exit code 3")
    assert aggregate([failed], "exp") == [failed]


def test_several_trials_with_one_warning_reason_are_one_warning_on_the_experiment():
    events = [trial_event(1, "TrialFailed", "Warning", "exit code 3; log: boom"),
              trial_event(2, "TrialRetried", "Warning", "attempt 1 failed"),
              trial_event(4, "TrialFailed", "Warning", "OOMKilled")]
    posted = aggregate(events, "exp")
    assert [(e.kind, e.name, e.type, e.reason) for e in posted] == [
        ("TuneExperiment", "exp", "Warning", "TrialFailed"),
        ("TuneTrial", "exp-2", "Warning", "TrialRetried")]
    assert decisions(posted[0].message, "exp") == {"exp-1": "exit code 3; log: boom",
                                                   "exp-4": "OOMKilled"}


def test_the_experiments_own_events_pass_unchanged_and_groups_keep_their_order():
    own = Event("TuneExperiment", "exp", "Normal", "ExperimentSucceeded", "best exp-2")
    events = [trial_event(0, "TrialPruned"), own, trial_event(1), trial_event(2, "TrialPruned")]
    posted = aggregate(events, "exp")
    assert [e.reason for e in posted] == ["TrialPruned", "ExperimentSucceeded", "TrialCreated"]
    assert posted[1] is own
    assert set(decisions(posted[0].message, "exp")) == {"exp-0", "exp-2"}
    assert aggregate([], "exp") == []


def test_a_long_list_stays_under_the_limit_and_counts_the_trials_it_leaves_out():
    entries = [(f"exp-{i}", f"trial {i} with {{\"lr\": 0.000{i}, \"units\": 256}}")
               for i in range(100)]
    message = decision_message(entries)
    assert len(message.encode()) <= MAX_MESSAGE_BYTES
    named = decisions(message, "exp")
    assert list(named) == [f"exp-{i}" for i in range(len(named))], "listed in order"
    assert 10 < len(named) < 100
    assert message.endswith(f"; and {100 - len(named)} more")
    # As many as fit: one more entry would not have.
    assert len((message.rsplit("; and", 1)[0] + "; " + f"{entries[len(named)][0]}: "
                f"{entries[len(named)][1]}; and {99 - len(named)} more").encode()) \
        > MAX_MESSAGE_BYTES


def test_a_first_entry_too_long_alone_is_cut_to_fit_without_splitting_a_character():
    message = decision_message([("exp-0", "é" * 2000), ("exp-1", "short")])
    assert len(message.encode()) <= MAX_MESSAGE_BYTES
    assert message.startswith("exp-0: éé") and message.endswith("…; and 1 more")
    assert list(decisions(message, "exp")) == ["exp-0"]


def test_decisions_tell_apart_trials_whose_names_share_a_prefix():
    message = decision_message([("exp-1", "a"), ("exp-10", "b"), ("exp-100", "c")])
    assert decisions(message, "exp") == {"exp-1": "a", "exp-10": "b", "exp-100": "c"}
    assert decisions(message, "ex") == {}, "another experiment's trials are not named"


def test_a_planned_tick_posts_one_created_and_one_pruned_event():
    recorded = [{"milestone": 1, "value": 0.9, "step": 1, "cutoff": None, "decision": "continue"}]
    first = plan_tick(experiment(), [], [], None, NOW)
    created = [e for e in aggregate(first.events, "exp") if e.reason == "TrialCreated"]
    assert len(created) == 1
    assert {name: json.loads(words.split(" with ", 1)[1])
            for name, words in decisions(created[0].message, "exp").items()} == \
        {f"exp-{t.index}": t.params for t in first.new_trials}
    trials = [trial(0, rungs=recorded), trial(1), trial(2)]
    later = plan_tick(experiment(), trials, [pod(0), pod(1), pod(2)],
                      snapshot(exp_1={1: 0.2}, exp_2={1: 0.1}), NOW)
    pruned = [e for e in aggregate(later.events, "exp") if e.reason == "TrialPruned"]
    assert len(pruned) == 1 and set(decisions(pruned[0].message, "exp")) == {"exp-1", "exp-2"}
