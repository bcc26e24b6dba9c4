"""Model-based search through Optuna's samplers, rebuilt from the trials' history each time.

A long-lived Optuna sampler is not restart-safe: its RNG advances with every ask,
and GP and QMC keep state in the sampler or the study. So trial i's config is
asked of a study built fresh, in memory, from trials 0..i-1 in index order
(finished ones with their values, stopped ones as ``stopped_as`` says, running
ones as RUNNING so the constant liar sees them), with a sampler seeded from
(seed, i) and, for QMC, the low-discrepancy sequence read at point i. CMA-ES keeps
its optimizer on the trials it asked: what it wrote on trial i is returned with
the config, persisted with it, and set back on trial i's rebuilt study trial
(_optuna_cmaes). The config is a pure function of (seed, i, the history), in any
process.

Stopped trials are a real choice: Ray's OptunaSearch tells an ASHA-stopped trial
COMPLETE with its value at the stopping rung (so low- and full-budget values are
ranked together); Optuna's own way is PRUNED with its intermediate values (TPE
then ranks it below every complete trial that went further).
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, Literal

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler, GPSampler, QMCSampler, RandomSampler, TPESampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial
from optuna.trial import TrialState as OptunaState

from kubetune.api.common import SpecError
from kubetune.api.search_algorithm import GP_MAX_TRIALS, OPTION_TYPES
from kubetune.search._optuna_cmaes import (
    CMAES_MAX_DIMENSIONS,
    build_cmaes,
    captured_state,
    restored_state,
)
from kubetune.search._optuna_history import StudyCache, frozen_trial, rebuild_study
from kubetune.search._optuna_space import OptunaSpace, convert_space, optuna_name
from kubetune.search.domains import SearchSpace, parse_space

SAMPLERS: Final = ("tpe", "gp", "cmaes", "qmc", "random")
"""Optuna samplers a TuneExperiment may name (searchAlgorithm.type)."""

StoppedAs = Literal["pruned", "complete"]
DEFAULT_STOPPED_AS: Final[StoppedAs] = "pruned"
"""How a trial the scheduler stopped is told to the study unless the experiment says."""

GP_MAX_HISTORY: Final = GP_MAX_TRIALS - 1
"""GP's ask grows cubically with the trials it models (seconds at 100, minutes at 5,000
on two cores), and it runs inside the reconcile tick: past this many trials gp is refused."""

OPTIONS: Final[Mapping[str, tuple[str, ...]]] = {
    sampler: tuple(option for option, types in OPTION_TYPES.items()
                   if sampler in types and option not in ("pointsToEvaluate", "stoppedTrialsAs"))
    for sampler in SAMPLERS
}
"""The options each sampler takes (camelCase, as the CRD names them)."""
optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class HistoryRecord:
    """One earlier trial as the study is told it."""

    index: int
    config: Mapping[str, Any]
    """The nested config, as the trial got it."""
    state: Literal["complete", "pruned", "running", "failed"]
    value: float | None = None
    """The final value, or the value where the scheduler stopped it; None if none is known."""
    intermediate: Mapping[int, float] = field(default_factory=dict)
    """Step -> value (the rung values), for pruned trials."""
    sampler_state: Mapping[str, Any] = field(default_factory=dict)
    """What the sampler wrote on the trial when it was asked (cmaes: its generation and, on
    the trial whose ask told a generation, the pickled optimizer), as persisted."""


def trial_seed(seed: int, index: int) -> int:
    """The sampler seed of trial `index`: the same in every process (no salted hash)."""
    digest = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def gp_available() -> bool:
    """Whether torch, which Optuna's GPSampler needs, is importable here."""
    return importlib.util.find_spec("torch") is not None


class _IndexedQMC(QMCSampler):
    """QMCSampler reading its sequence at a given point over the whole space.

    Optuna keeps the point counter in the study and infers the space from the
    first trial; a study rebuilt for every trial would always read point 0.
    """

    def __init__(self, sample_id: int, space: Mapping[str, BaseDistribution],
                 **kwargs: Any) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            super().__init__(warn_asynchronous_seeding=False, warn_independent_sampling=False,
                             **kwargs)
        self._sample_id = sample_id
        self._space = dict(sorted(space.items()))

    def infer_relative_search_space(self, study: Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(self._space)

    def _find_sample_id(self, study: Study, search_space: dict[str, BaseDistribution]) -> int:
        return self._sample_id


def _option(options: Mapping[str, Any], name: str, default: Any) -> Any:
    value = options.get(name)
    return default if value is None else value


def _check_options(sampler: str, options: Mapping[str, Any]) -> None:
    if sampler not in SAMPLERS:
        raise SpecError("spec.searchAlgorithm.type",
                        f"{sampler!r} is not one of Optuna's samplers here: {', '.join(SAMPLERS)}")
    unknown = sorted(k for k, v in options.items() if v is not None and k not in OPTIONS[sampler])
    if unknown:
        allowed = ", ".join(OPTIONS[sampler]) or "none"
        raise SpecError(f"spec.searchAlgorithm.{unknown[0]}",
                        f"{sampler} takes no option {unknown[0]}; its options are: {allowed}")
    if sampler == "gp" and not gp_available():
        raise SpecError("spec.searchAlgorithm.type",
                        "gp needs torch (Optuna's GPSampler is built on it), which is not "
                        "installed where the operator runs: install kubetune[operator,gp] in the "
                        "operator's image, or use tpe")


def build_sampler(sampler: str, options: Mapping[str, Any], seed: int, index: int,
                  space: Mapping[str, BaseDistribution]) -> BaseSampler:
    """A fresh Optuna sampler for trial `index`, seeded from (seed, index)."""
    own = trial_seed(seed, index)
    if sampler == "tpe":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # multivariate and group are "experimental"
            return TPESampler(
                seed=own, n_startup_trials=_option(options, "nStartupTrials", 10),
                n_ei_candidates=_option(options, "nEiCandidates", 24),
                multivariate=_option(options, "multivariate", True),
                group=_option(options, "group", False),
                constant_liar=_option(options, "constantLiar", True),
                warn_independent_sampling=False)
    if sampler == "gp":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return GPSampler(seed=own, n_startup_trials=_option(options, "nStartupTrials", 10),
                             deterministic_objective=_option(options, "deterministicObjective",
                                                             False),
                             warn_independent_sampling=False)
    if sampler == "cmaes":
        return build_cmaes(options, own)
    if sampler == "qmc":
        # One sequence for the whole experiment (the experiment's seed), read at point index.
        return _IndexedQMC(index, space, qmc_type=_option(options, "qmcType", "sobol"),
                           scramble=_option(options, "scramble", False), seed=seed)
    return RandomSampler(seed=own)


class OptunaSuggester:
    """Trial configs from one of Optuna's samplers, as a pure function of (seed, index, history).

    `space` is a SearchSpace or the raw searchSpace mapping. `options` are the
    sampler's options as the CRD names them (nStartupTrials, multivariate,
    constantLiar, ...). Configs in `points_to_evaluate` are tried first (trial i
    gets point i; parameters a point leaves out, or gives a value outside their
    domain, are suggested).
    """

    def __init__(self, sampler: str, space: SearchSpace | Mapping[str, Any],
                 mode: Literal["min", "max"], seed: int,
                 options: Mapping[str, Any] | None = None,
                 points_to_evaluate: Sequence[Mapping[str, Any]] = (),
                 stopped_as: StoppedAs = DEFAULT_STOPPED_AS) -> None:
        options = dict(options or {})
        _check_options(sampler, options)
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be min or max, got {mode!r}")
        if stopped_as not in ("pruned", "complete"):
            raise ValueError(f"stopped_as must be pruned or complete, got {stopped_as!r}")
        parsed = space if isinstance(space, SearchSpace) else parse_space(space)
        self.sampler = sampler
        self.options = options
        self.seed = seed
        self.mode = mode
        self.stopped_as: StoppedAs = stopped_as
        self.space: OptunaSpace = convert_space(parsed, sampler)
        if sampler == "cmaes":
            _check_cmaes_space(self.space.distributions)
        self.points = [self.space.study_params(p) for p in points_to_evaluate]
        self.direction = StudyDirection.MINIMIZE if mode == "min" else StudyDirection.MAXIMIZE
        self._cache = StudyCache()

    def frozen(self, record: HistoryRecord) -> FrozenTrial:
        """The study's trial for one history record."""
        state, value = _study_state(record, self.stopped_as)
        return frozen_trial(state, value, self.space.study_params(record.config),
                            self.space.distributions, record.intermediate,
                            restored_state(self.sampler, record.sampler_state))

    def suggest(self, index: int, history: Sequence[HistoryRecord],
                reuse: bool = True) -> dict[str, Any]:
        """The config of trial `index`, from the trials before it (any order; later ones unused).

        See `ask`, which also returns the sampler's state to persist with the config.
        """
        return self.ask(index, history, reuse)[0]

    def ask(self, index: int, history: Sequence[HistoryRecord],
            reuse: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
        """(config, sampler state) of trial `index`, from the trials before it.

        The sampler state is what the sampler wrote on the asked trial that a later
        rebuild needs (cmaes only; {} for the others): persist it with the config and
        give it back as the trial's HistoryRecord.sampler_state.

        With `reuse`, the study trials of records unchanged since the previous call
        are reused (the study built is the one a rebuild gives, trial for trial);
        reuse=False rebuilds through Optuna's public API.
        """
        earlier = sorted((r for r in history if r.index < index), key=lambda r: r.index)
        if self.sampler == "gp" and len(earlier) > GP_MAX_HISTORY:
            raise SpecError("spec.searchAlgorithm.type",
                            f"gp models at most {GP_MAX_HISTORY} trials (its ask grows "
                            "cubically with them and runs in the operator's reconcile loop); "
                            "use tpe for longer searches")
        sampler = build_sampler(self.sampler, self.options, self.seed, index,
                                self.space.distributions)
        if reuse:
            study = self._cache.study([_record_key(r) for r in earlier],
                                      [partial(self.frozen, r) for r in earlier],
                                      self.direction, sampler)
        else:
            study = rebuild_study([self.frozen(r) for r in earlier], self.direction, sampler)
        if index < len(self.points):
            study.enqueue_trial(self.points[index], skip_if_exists=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trial = study.ask(fixed_distributions=self.space.distributions)
        state: dict[str, Any] = {}
        if self.sampler == "cmaes":
            assert isinstance(sampler, optuna.samplers.CmaEsSampler)
            state = captured_state(sampler, study._storage.get_trial_system_attrs(trial._trial_id))
        return self.space.config(trial.params), state


def _check_cmaes_space(distributions: Mapping[str, BaseDistribution]) -> None:
    numeric = [d for d in distributions.values()
               if not isinstance(d, CategoricalDistribution) and not d.single()]
    if len(numeric) > CMAES_MAX_DIMENSIONS:
        raise SpecError("spec.searchSpace",
                        f"cmaes searches at most {CMAES_MAX_DIMENSIONS} numeric parameters, not "
                        f"{len(numeric)}: its optimizer, persisted on every generation's "
                        "TuneTrial, grows with their square; use tpe")


def _study_state(record: HistoryRecord, stopped_as: StoppedAs) -> tuple[OptunaState, float | None]:
    value = record.value if record.value is not None and math.isfinite(record.value) else None
    if record.state == "running":
        return OptunaState.RUNNING, None
    if record.state == "failed":
        return OptunaState.FAIL, None
    if record.state == "pruned" and stopped_as == "pruned":
        return OptunaState.PRUNED, value
    return (OptunaState.COMPLETE, value) if value is not None else (OptunaState.FAIL, None)


def _record_key(record: HistoryRecord) -> tuple[Any, ...]:
    """What of a record the study depends on, hashable.

    The config by its repr: equal reprs of JSON values are equal values (1, 1.0 and
    True print apart, floats print exactly), and a config whose keys merely come in
    another order only misses the cache.
    """
    return (record.index, record.state, record.value, repr(record.config),
            tuple(sorted(record.intermediate.items())), repr(record.sampler_state))


__all__ = [
    "CMAES_MAX_DIMENSIONS",
    "DEFAULT_STOPPED_AS",
    "GP_MAX_HISTORY",
    "OPTIONS",
    "SAMPLERS",
    "HistoryRecord",
    "OptunaSuggester",
    "StoppedAs",
    "build_sampler",
    "gp_available",
    "optuna_name",
    "trial_seed",
]

