"""An in-memory Optuna study of a trial history, built fast and the same as a plain rebuild.

A plain rebuild (``create_trial`` for every record, then ``Study.add_trials``)
validates and deep-copies every trial: about 0.2 s at 1,000 trials and 0.9 s at
5,000, paid for each new trial. Most records are unchanged from one tick to the
next, so each record's FrozenTrial is kept, keyed by everything the study reads
of it, and a new study's storage is filled with shallow copies of the kept ones
that carry the numbers and ids ``add_trials`` would give them. Trials carry a
fixed timestamp instead of the clock, so the two ways give equal studies (a
unit test compares them trial by trial, and the configs asked of them).
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.storages import InMemoryStorage
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial
from optuna.trial import TrialState as OptunaState

_EPOCH = datetime.datetime(2000, 1, 1)
"""Every rebuilt trial's start and end time: the study's contents must not depend on the clock."""


def frozen_trial(state: OptunaState, value: float | None, params: Mapping[str, Any],
                 distributions: Mapping[str, BaseDistribution],
                 intermediate: Mapping[int, float],
                 system_attrs: Mapping[str, Any] | None = None) -> FrozenTrial:
    """A validated FrozenTrial of one earlier trial (its params a subset of `distributions`).

    `system_attrs`: what the sampler wrote on the trial when it was asked (cmaes' state).
    """
    finite = {int(step): float(v) for step, v in intermediate.items() if v == v}
    trial = FrozenTrial(
        number=-1, trial_id=-1, state=state, value=value, datetime_start=_EPOCH,
        datetime_complete=_EPOCH if state.is_finished() else None, params=dict(params),
        distributions={name: distributions[name] for name in params}, user_attrs={},
        system_attrs=dict(system_attrs or {}), intermediate_values=finite)
    trial._validate()
    return trial


def _new_study(direction: StudyDirection, sampler: BaseSampler) -> Study:
    return optuna.create_study(storage=InMemoryStorage(), sampler=sampler, direction=direction)


def rebuild_study(trials: Sequence[FrozenTrial], direction: StudyDirection,
                  sampler: BaseSampler) -> Study:
    """The plain rebuild, through Optuna's public API (what the fast path must equal)."""
    study = _new_study(direction, sampler)
    study.add_trials(trials)
    return study


def _fill(study: Study, trials: Sequence[FrozenTrial],
          direction: StudyDirection) -> list[FrozenTrial]:
    """InMemoryStorage.create_new_trial for each trial, without its deep copy.

    A trial already numbered and identified as this position gives it (as it does in
    every fresh storage) is stored as it is, any other a shallow copy renumbered. The
    kept trials are never changed once stored (the storage only changes trials still
    RUNNING through set_trial_*, which nothing calls on these, and the studies they sit
    in are used one at a time), so sharing them between studies is safe. The best trial
    is found in one pass by _update_cache's rule (the first strictly better one wins).
    Returns the stored trials.
    """
    storage = study._storage
    assert isinstance(storage, InMemoryStorage)
    study_id = study._study_id
    info = storage._studies[study_id]
    index_of = storage._trial_id_to_study_id_and_number
    best_id, best_value = None, 0.0
    maximize = direction == StudyDirection.MAXIMIZE
    for trial in trials:
        trial_id = storage._max_trial_id + 1
        storage._max_trial_id = trial_id
        number = len(info.trials)
        if trial.number != number or trial._trial_id != trial_id:
            trial = copy.copy(trial)
            trial.number = number
            trial._trial_id = trial_id
        index_of[trial_id] = (study_id, number)
        info.trials.append(trial)
        if trial.state == OptunaState.COMPLETE:
            value = trial.value
            assert value is not None
            if best_id is None or (value > best_value if maximize else value < best_value):
                best_id, best_value = trial_id, value
    info.best_trial_id = best_id
    return info.trials


class StudyCache:
    """The FrozenTrials of the last history seen, reused for the records that did not change."""

    def __init__(self) -> None:
        self._kept: dict[Hashable, FrozenTrial] = {}

    def study(self, keys: Sequence[Hashable], build: Sequence[Callable[[], FrozenTrial]],
              direction: StudyDirection, sampler: BaseSampler) -> Study:
        """A fresh study holding one trial per key, in order; `build[i]` makes trial i if new."""
        trials = []
        for key, make in zip(keys, build, strict=True):
            trial = self._kept.get(key)
            trials.append(make() if trial is None else trial)
        study = _new_study(direction, sampler)
        stored = _fill(study, trials, direction)
        self._kept = dict(zip(keys, stored, strict=True))
        return study
