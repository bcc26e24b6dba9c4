"""The operator's in-memory view of TuneTrials, trial Pods and worker Jobs, fed by watches.

Three kopf indices (registered in handlers.py) keep every TuneTrial, every Pod and every
Job (a multi-worker trial's attempt) that carries kubetune's experiment label, keyed by
(namespace, experiment). kopf fills them from one LIST per kind when it starts, then from
the watch streams, and relists after a watch that cannot resume; it runs no other handler
before every index is filled, so the first tick after a (re)start sees everything that
was persisted. A tick reads this view instead of listing: in the steady state the
operator sends no LIST to the apiserver (whole-trial admission, which lists the
cluster's nodes, pods and Jobs when a multi-worker attempt is due to start, is no read
of the view).

The view lags the operator's own writes by one watch event. `Writes` keeps what the
apiserver answered to each of them (read-your-writes by resourceVersion) until the
watch delivers that version or a later one, so the tick after a create or a prune sees
the object as written. Nothing decided depends on this record: it is an optimisation
the deterministic names and AlreadyExists adoption make safe to lose (a restart loses it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubetune.contract import EXPERIMENT_LABEL
from kubetune.controller.planner.views import TrialView

TRIALS = "kubetune_trials"
"""The id of the TuneTrial index, and the handler argument kopf passes it as."""
PODS = "kubetune_pods"
"""The id of the trial Pod index, and the handler argument kopf passes it as."""
JOBS = "kubetune_jobs"
"""The id of the worker Job index, and the handler argument kopf passes it as."""

PENDING_SECONDS = 60.0
"""How long a write the watch has not confirmed is kept (an object deleted by someone
else right after the operator wrote it is never confirmed)."""

Key = tuple[str, str]


def experiment_key(body: Mapping[str, Any]) -> Key | None:
    """(namespace, experiment) of a trial Pod or TuneTrial, from its experiment label; None
    for an object without one."""
    meta = body.get("metadata") or {}
    experiment = (meta.get("labels") or {}).get(EXPERIMENT_LABEL)
    return (meta.get("namespace", ""), experiment) if experiment else None


def entry(body: Mapping[str, Any]) -> dict[Key, dict[str, Any]]:
    """The index entry of one watched object: its body, under (namespace, experiment)."""
    key = experiment_key(body)
    return {} if key is None else {key: dict(body)}


def snapshot(index: Mapping[Key, Iterable[Any]] | None, key: Key) -> list[dict[str, Any]]:
    """The bodies in `index` under `key`, copied (call it on kopf's event loop, where the
    index changes, so no watch event lands halfway through)."""
    if index is None:
        return []
    store = index.get(key)
    return [] if store is None else list(store)


@dataclass
class Observed:
    """What one tick reads: the experiment's TuneTrials, Pods and worker Jobs."""

    trials: list[dict[str, Any]]
    pods: list[dict[str, Any]]
    jobs: list[dict[str, Any]] = field(default_factory=list)
    """Only a multi-worker experiment has any (an Indexed Job per attempt)."""
    creating: frozenset[str] | None = None
    """The trials an earlier tick's creations, still in flight, are about (creations.py),
    taken before the reads: this tick decides only. None: nothing in flight."""


def _version(body: Mapping[str, Any]) -> int | None:
    try:
        return int(body["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return None


@dataclass
class _Pending:
    body: dict[str, Any]
    version: int
    created: bool
    at: float


class Writes:
    """The objects the operator wrote that the watch may not have delivered yet."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 keep_seconds: float = PENDING_SECONDS) -> None:
        self._clock = clock
        self._keep = keep_seconds
        self._lock = threading.Lock()  # ticks of different experiments run in threads
        self._pending: dict[tuple[str, str, str], _Pending] = {}

    def record(self, kind: str, answer: Mapping[str, Any], *, created: bool) -> None:
        """Remember the apiserver's answer to a write of a `kind` object ("trials", "pods",
        "jobs")."""
        version = _version(answer)
        meta = answer.get("metadata") or {}
        if version is None or answer.get("kind") == "Status" or not meta.get("name"):
            return
        key = (kind, meta.get("namespace", ""), meta["name"])
        with self._lock:
            prev = self._pending.get(key)
            self._pending[key] = _Pending(dict(answer), version, created or bool(
                prev and prev.created), self._clock())

    def merge(self, kind: str, key: Key, seen: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`seen` (the view's bodies of `kind` under `key`) with the writes not confirmed yet."""
        namespace, experiment = key
        by_name = {b["metadata"]["name"]: b for b in seen}
        now = self._clock()
        with self._lock:
            for (k, ns, name), pending in list(self._pending.items()):
                labels = pending.body["metadata"].get("labels") or {}
                if k != kind or ns != namespace or labels.get(EXPERIMENT_LABEL) != experiment:
                    continue
                current = by_name.get(name)
                version = _version(current) if current is not None else None
                confirmed = current is not None and (version is None or version >= pending.version)
                gone = current is None and not pending.created  # deleted since it was written
                if confirmed or gone or now - pending.at > self._keep:
                    del self._pending[(k, ns, name)]
                    continue
                by_name[name] = pending.body
        return list(by_name.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)


class TrialViews:
    """Each experiment's TrialViews, kept between its ticks: a TuneTrial is parsed once per
    resourceVersion (a version names one content), so a tick at 10,000 trials parses only
    the few that changed since the last one, and the scheduler restores the others from
    the very records it was given before (schedulers/asha.py). The views are what
    `TrialView.from_body` gives, whether kept or not."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # ticks of different experiments run in threads
        self._kept: dict[Key, dict[str, tuple[str, TrialView]]] = {}

    def read(self, key: Key, bodies: Iterable[Mapping[str, Any]]) -> list[TrialView]:
        """The views of `bodies` (the experiment's TuneTrials this tick); the views of the
        trials not among them are dropped."""
        with self._lock:
            before = self._kept.pop(key, {})
        kept: dict[str, tuple[str, TrialView]] = {}
        views = []
        for body in bodies:
            meta = body["metadata"]
            uid, version = str(meta.get("uid") or ""), str(meta.get("resourceVersion") or "")
            hit = before.get(uid)
            if hit is None or not version or hit[0] != version:
                hit = (version, TrialView.from_body(body))
            if uid and version:
                kept[uid] = hit
            views.append(hit[1])
        with self._lock:
            self._kept[key] = kept
        return views

    def forget_experiment(self, key: Key) -> None:
        """Drop the views of an experiment that ended or was deleted."""
        with self._lock:
            self._kept.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._kept.values())


def observe(writes: Writes, key: Key, trials: list[dict[str, Any]],
            pods: list[dict[str, Any]], jobs: list[dict[str, Any]],
            creating: frozenset[str] | None = None) -> Observed:
    """A tick's reads: the view's snapshot under `key` with the operator's own writes.

    `creating` is read before the writes are merged: a batch of creations that ended
    before has recorded every answer (Writes.record), so the view holds what it made."""
    return Observed(trials=writes.merge("trials", key, trials),
                    pods=writes.merge("pods", key, pods),
                    jobs=writes.merge("jobs", key, jobs), creating=creating)
