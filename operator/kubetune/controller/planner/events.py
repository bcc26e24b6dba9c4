"""Where a tick's Events go: one per decision kind, on the experiment, naming the trials.

A tick that creates 16 trials or prunes 30 used to post 16 or 30 Events, one on each
TuneTrial: a large share of the operator's writes, and a `kubectl describe tx` that
showed none of its decisions. `aggregate` turns the planner's Events of one tick into
what is posted:

- The experiment's own Events (ExperimentSucceeded, CapacityLimited, ...) are posted as
  they are.
- Normal Events about trials (TrialCreated, TrialPruned, TrialStopped, TrialExploited)
  become one Event per reason on the TuneExperiment, of type Normal, whose message names
  each trial with its own words: "exp-3: trial 3 with {...}; exp-4: trial 4 with {...}".
  A tick with a single one posts it there too, in the same shape: where a decision's
  Event is then does not depend on how many other decisions its tick made, and
  `kubectl describe tx NAME` lists every decision of the experiment, in order, in one
  place. A trial's own record of its fate is its status (state, reason, message), which
  `kubectl describe tunetrial` shows and which, unlike an Event, does not expire.
- Warning Events about trials (TrialFailed with its log tail, TrialRetried,
  TrialDisrupted, TrialNotReporting) are rare and each carries words of its own: one
  alone stays on its TuneTrial, where whoever inspects the failing trial looks. Several
  trials with the same Warning reason in one tick (a node lost, a template every pod
  refuses) are one incident: one Event on the experiment names them all, as above.

The Normal ones are merged over ticks as well, before they reach `aggregate`
(controller/pace.py `DecisionEvents`).

Messages stay within MAX_MESSAGE_BYTES (kopf cuts longer ones in the middle): as many
trials as fit, in the planner's order, then "and N more"; the trials not named keep
their decision in their status. `decisions` reads an aggregated message back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from kubetune.controller.planner.actions import Event

MAX_MESSAGE_BYTES = 1024
"""kopf's limit on an Event message (kopf/_cogs/clients/events.py MAX_MESSAGE_LENGTH)."""

SEPARATOR = "; "
_MORE = re.compile(r"; and \d+ more$")


def normal_decision(ev: Event) -> bool:
    """A Normal Event about a trial: one of the decisions posted on the experiment."""
    return ev.kind == "TuneTrial" and ev.type == "Normal"


def aggregate(events: Sequence[Event], experiment: str) -> list[Event]:
    """The Events to post for a tick's `events` of the experiment named `experiment`.

    Groups keep the order of their first Event; trials within a group, the planner's.
    """
    groups: dict[tuple[str, str], list[Event]] = {}
    order: list[Event | tuple[str, str]] = []
    for ev in events:
        if ev.kind == "TuneExperiment":
            order.append(ev)
            continue
        key = (ev.type, ev.reason)
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(ev)
    posted: list[Event] = []
    for item in order:
        if isinstance(item, Event):
            posted.append(item)
            continue
        group = groups[item]
        first = group[0]
        if first.type == "Warning" and len(group) == 1:
            posted.append(first)
        else:
            posted.append(Event("TuneExperiment", experiment, first.type, first.reason,
                                decision_message([(e.name, e.message) for e in group])))
    return posted


def decision_message(entries: Sequence[tuple[str, str]],
                     limit: int = MAX_MESSAGE_BYTES) -> str:
    """ "trial: words; trial: words; and N more", at most `limit` bytes in UTF-8.

    Entries are listed in order while they fit; a first entry too long alone is cut.
    """
    shown: list[str] = []
    for i, (trial, words) in enumerate(entries):
        part = f"{trial}: {words}"
        candidate = SEPARATOR.join([*shown, part]) + _more(len(entries) - i - 1)
        if _size(candidate) <= limit:
            shown.append(part)
            continue
        if not shown:
            room = limit - _size(_more(len(entries) - 1))
            shown.append(_cut(part, room))
        break
    return SEPARATOR.join(shown) + _more(len(entries) - len(shown))


def decisions(message: str, experiment: str) -> dict[str, str]:
    """The trials an aggregated Event of `experiment` names, each with its words."""
    body = _MORE.sub("", message)
    names = re.compile(rf"(?:^|{SEPARATOR}){re.escape(experiment)}-(\d+): ")
    found = list(names.finditer(body))
    named: dict[str, str] = {}
    for i, m in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else len(body)
        named[f"{experiment}-{m.group(1)}"] = body[m.end():end]
    return named


def _more(rest: int) -> str:
    return f"{SEPARATOR}and {rest} more" if rest else ""


def _size(text: str) -> int:
    return len(text.encode())


def _cut(text: str, room: int) -> str:
    """`text` cut to at most `room` bytes, ending in an ellipsis when cut."""
    if _size(text) <= room:
        return text
    ellipsis = "…"
    return text.encode()[:max(0, room - _size(ellipsis))].decode(errors="ignore") + ellipsis
