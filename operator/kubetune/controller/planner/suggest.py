"""New trials' configs: Ray's generators, or an Optuna sampler told the trials so far.

random and grid configs are a function of (seed, index). For tpe, gp, cmaes and qmc,
trial i's config is asked of a study rebuilt from the experiment's TuneTrials
before it, as this tick sees them (its own decisions included): Succeeded with
its final objective, Pruned with its rung values, Failed, and everything else
running, trials created earlier in the same tick included. The config is then
persisted on the TuneTrial at creation, and never asked again; so is what the
sampler wrote on the asked trial (cmaes' optimizer state, spec.samplerState), which
the trial's record carries back into every later study.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kubetune.api import TrialState, TuneExperimentSpec
from kubetune.controller.planner.actions import Plan
from kubetune.controller.planner.views import ExperimentView, TrialView
from kubetune.search import BasicVariantSampler, parse_space

if TYPE_CHECKING:
    from kubetune.search.optuna import HistoryRecord, OptunaSuggester

_SUGGESTERS: OrderedDict[tuple[str, str, str], OptunaSuggester] = OrderedDict()
"""The last experiments' suggesters, each keeping the study trials it built last tick.

Only a cache: a suggester's answer is the same as a fresh one's (its cache is
reused only where the study it builds is provably the one a rebuild gives), so
the plan stays a function of what is read.
"""
_KEPT_SUGGESTERS = 32
_LOCK = threading.Lock()


def _finite(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


class TrialConfigs:
    """The config of each new trial index, for one experiment at one tick."""

    def __init__(self, exp: ExperimentView, trials: Sequence[TrialView],
                 states: Mapping[str, str], plan: Plan) -> None:
        spec = exp.spec
        self.basic = BasicVariantSampler(parse_space(spec.search_space_raw()),
                                         seed=spec.search_algorithm.seed,
                                         num_samples=spec.num_samples)
        self.total = self.basic.total_trials
        self._suggester = suggester_for(exp) if spec.search_algorithm.model_based else None
        self._spec, self._trials, self._states, self._plan = spec, trials, states, plan
        self._built: list[HistoryRecord] | None = None
        self._sampler_states: dict[int, dict[str, Any]] = {}

    @property
    def _history(self) -> list[HistoryRecord]:
        """The study's records of the trials read this tick, built when first needed."""
        if self._built is None:
            self._built = [history_record(self._spec, t, self._states.get(t.name, t.state),
                                          self._plan.trial_status.get(t.name))
                           for t in self._trials]
        return self._built

    @property
    def model_based(self) -> bool:
        return self._suggester is not None

    def config(self, index: int) -> dict[str, Any]:
        """Trial `index`'s config; a model-based one counts it as running from now on."""
        if self._suggester is None:
            return self.basic.config(index)
        params, state = self._suggester.ask(index, self._history)
        self._sampler_states[index] = state
        self._add_running(index, params, state)
        return params

    def state(self, index: int) -> dict[str, Any]:
        """What the sampler wrote on trial `index` when asked this tick ({} if none)."""
        return self._sampler_states.get(index, {})

    def _add_running(self, index: int, params: Mapping[str, Any],
                     state: Mapping[str, Any] | None = None) -> None:
        from kubetune.search.optuna import HistoryRecord

        self._history.append(HistoryRecord(index, params, "running",
                                           sampler_state=dict(state or {})))

    def keep(self, index: int, params: Mapping[str, Any]) -> None:
        """A trial created again with its old config: the model sees it running."""
        if self._suggester is not None:
            self._built = [r for r in self._history if r.index != index]
            self._add_running(index, params)


RECORDED_CONFIG_BYTES = 256 * 1024
"""The most JSON of configs status.trialConfigs holds (the object stays far below etcd's limit)."""


def configs_to_record(exp: ExperimentView, trials: Sequence[TrialView],
                      created: Sequence[tuple[int, Mapping[str, Any]]]) -> dict[str, Any]:
    """The configs status.trialConfigs lacks, of the trials that exist or are created now.

    A trial whose creation was not followed by its record (an operator killed between the
    two) is recorded at the next tick, from its TuneTrial. Empty for random and grid, whose
    configs are f(seed, index).
    """
    if not exp.spec.search_algorithm.model_based:
        return {}
    stored: Mapping[str, Any] = exp.status.get("trialConfigs") or {}
    size = len(json.dumps(stored, separators=(",", ":")))
    out: dict[str, Any] = {}
    pending = [(t.index, t.params) for t in trials] + list(created)
    for index, params in sorted(pending, key=lambda item: item[0]):
        key = str(index)
        if key in stored or key in out:
            continue
        size += len(key) + 4 + len(json.dumps(params, separators=(",", ":")))
        if size > RECORDED_CONFIG_BYTES:
            break
        out[key] = dict(params)
    return out


def history_record(spec: TuneExperimentSpec, trial: TrialView, state: str,
                   patch: Any | None) -> HistoryRecord:
    """How the study is told one TuneTrial, from its stored status and this tick's patch."""
    from kubetune.search.optuna import HistoryRecord

    status: Mapping[str, Any] = trial.status
    kept = dict(trial.sampler_state)
    if patch is not None:
        status = {**status, **patch.merge_patch()}
    rungs = {int(r["milestone"]): v for r in status.get("rungs") or []
             if (v := _finite(r.get("value"))) is not None}
    if state == TrialState.SUCCEEDED.value:
        value = _finite((status.get("metrics") or {}).get(spec.objective.metric))
        if value is None:
            value = _finite(status.get("objective"))
        return HistoryRecord(trial.index, trial.params, "complete", value, rungs, kept)
    if state == TrialState.PRUNED.value:
        pruned = status.get("prunedAt") or {}
        value = _finite(pruned.get("value"))
        if value is not None and not rungs:
            rungs = {int(pruned.get("milestone") or pruned.get("step") or 0): value}
        if value is None and rungs:
            value = rungs[max(rungs)]
        return HistoryRecord(trial.index, trial.params, "pruned", value, rungs, kept)
    if state == TrialState.FAILED.value:
        return HistoryRecord(trial.index, trial.params, "failed", sampler_state=kept)
    return HistoryRecord(trial.index, trial.params, "running", sampler_state=kept)


def suggester_for(exp: ExperimentView) -> OptunaSuggester:
    """The experiment's OptunaSuggester, the one of its last tick when its spec is the same."""
    from kubetune.search.optuna import DEFAULT_STOPPED_AS, OptunaSuggester

    spec = exp.spec
    search = spec.search_algorithm
    key = (exp.namespace, exp.name, json.dumps(
        [search.model_dump(mode="json", by_alias=True), spec.search_space_raw(),
         spec.objective.mode], sort_keys=True))
    with _LOCK:
        suggester = _SUGGESTERS.get(key)
    if suggester is None:
        suggester = OptunaSuggester(
            search.type, parse_space(spec.search_space_raw()), spec.objective.mode,
            search.seed, search.sampler_options(),
            points_to_evaluate=search.points_to_evaluate or (),
            stopped_as=search.stopped_trials_as or DEFAULT_STOPPED_AS)
    with _LOCK:  # experiments tick in kopf's threads
        suggester = _SUGGESTERS.setdefault(key, suggester)
        _SUGGESTERS.move_to_end(key)
        while len(_SUGGESTERS) > _KEPT_SUGGESTERS:
            _SUGGESTERS.popitem(last=False)
    return suggester
