"""TuneConfig(search_alg=...): Ray's searcher names, turned into spec.searchAlgorithm.

Imported on the user's side. The search itself runs in the operator (a study
rebuilt from the TuneTrials for every new trial), so a searcher here is only a
description: kubetune.OptunaSearch takes the arguments of Ray's OptunaSearch
that make sense across processes (sampler by name, seed, points_to_evaluate) and
Optuna's sampler options. A Ray searcher object passed by mistake gets a
one-line pointer to ours.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from kubetune.client.errors import TuneError

SAMPLER_TYPES = ("tpe", "gp", "cmaes", "qmc")
NAMES = ("random", "grid", *SAMPLER_TYPES)
_ALIASES = {"variant_generator": "random", "basic_variant": "random", "optuna": "tpe"}
"""Ray's tune.create_searcher names, and "optuna" (OptunaSearch's default sampler is TPE)."""


@dataclass(frozen=True)
class OptunaSearch:
    """Ray's OptunaSearch, run by the operator: one of Optuna's samplers, by name.

    sampler: "tpe" (Ray's default), "gp", "cmaes" or "qmc". seed and points_to_evaluate as
    in Ray. The rest are the sampler's options as Optuna names them
    (n_startup_trials, multivariate, constant_liar, sigma0, popsize, with_margin,
    use_separable_cma, ...); stopped_trials_as says
    how trials the scheduler stopped are told to the model ("pruned", Optuna's
    way, or "complete", Ray's).
    """

    sampler: Literal["tpe", "gp", "cmaes", "qmc"] = "tpe"
    seed: int | None = None
    points_to_evaluate: Sequence[Mapping[str, Any]] | None = None
    n_startup_trials: int | None = None
    n_ei_candidates: int | None = None
    multivariate: bool | None = None
    group: bool | None = None
    constant_liar: bool | None = None
    deterministic_objective: bool | None = None
    sigma0: float | None = None
    popsize: int | None = None
    with_margin: bool | None = None
    use_separable_cma: bool | None = None
    qmc_type: Literal["sobol", "halton"] | None = None
    scramble: bool | None = None
    stopped_trials_as: Literal["pruned", "complete"] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.sampler, str) or self.sampler not in SAMPLER_TYPES:
            raise TuneError(
                f"OptunaSearch(sampler=...) takes a sampler's name, one of "
                f"{', '.join(SAMPLER_TYPES)}, not {self.sampler!r}: the operator builds the "
                "sampler afresh for every trial, so an Optuna sampler object cannot be sent")

    def to_spec(self) -> dict[str, Any]:
        """spec.searchAlgorithm, camelCase, with only the options that are set."""
        spec: dict[str, Any] = {"type": self.sampler}
        options = {
            "seed": self.seed, "nStartupTrials": self.n_startup_trials,
            "nEiCandidates": self.n_ei_candidates, "multivariate": self.multivariate,
            "group": self.group, "constantLiar": self.constant_liar,
            "deterministicObjective": self.deterministic_objective, "sigma0": self.sigma0,
            "popsize": self.popsize, "withMargin": self.with_margin,
            "useSeparableCma": self.use_separable_cma, "qmcType": self.qmc_type,
            "scramble": self.scramble, "stoppedTrialsAs": self.stopped_trials_as,
        }
        spec.update({k: v for k, v in options.items() if v is not None})
        if self.points_to_evaluate is not None:
            spec["pointsToEvaluate"] = [dict(p) for p in self.points_to_evaluate]
        return spec


def _ray_pointer(search_alg: Any) -> str:
    cls = type(search_alg)
    name = f"{cls.__module__}.{cls.__qualname__}"
    if cls.__name__ == "ConcurrencyLimiter":
        return (f"search_alg got Ray's {name}: set TuneConfig(max_concurrent_trials=...) and pass "
                "kubetune.OptunaSearch(...) or a searcher name")
    return (f"search_alg got Ray's {name}, which runs in Ray's driver: use "
            "kubetune.OptunaSearch(sampler='tpe', seed=..., points_to_evaluate=...) or "
            f"search_alg='tpe' (the names are {', '.join(NAMES)}); the operator runs the search")


def search_algorithm_spec(search_alg: Any, seed: int | None) -> dict[str, Any]:
    """spec.searchAlgorithm for TuneConfig's search_alg and seed ({} when both are unset)."""
    if isinstance(search_alg, OptunaSearch):
        spec = search_alg.to_spec()
        if seed is not None and search_alg.seed is not None and seed != search_alg.seed:
            raise TuneError(f"TuneConfig(seed={seed}) and OptunaSearch(seed={search_alg.seed}) "
                            "differ; set one of them")
        if seed is not None:
            spec.setdefault("seed", seed)
        return spec
    spec = {}
    if search_alg is not None:
        if not isinstance(search_alg, str):
            if type(search_alg).__module__.split(".")[0] in ("ray", "optuna"):
                raise TuneError(_ray_pointer(search_alg) if type(search_alg).__module__
                                .startswith("ray") else
                                f"search_alg got an Optuna {type(search_alg).__name__}: use "
                                "kubetune.OptunaSearch(sampler='tpe', ...) with the sampler's name")
            raise TuneError(f"search_alg is a name ({', '.join(NAMES)}) or kubetune.OptunaSearch"
                            f"(...), not {type(search_alg).__name__}")
        name = _ALIASES.get(search_alg, search_alg)
        if name not in NAMES:
            raise TuneError(f"search_alg {search_alg!r} is not offered; use one of "
                            f"{', '.join(NAMES)} or kubetune.OptunaSearch(...)")
        spec["type"] = name
    if seed is not None:
        spec["seed"] = seed
    return spec


__all__ = ["OptunaSearch", "search_algorithm_spec"]
