"""spec.searchAlgorithm: how each trial's config is chosen, Ray's generators or Optuna's samplers.

random and grid are Ray's BasicVariantGenerator (a config is a function of the
seed and the trial index). tpe, gp, cmaes and qmc are Optuna's samplers, asked
once per trial of a study rebuilt from the trials before it
(kubetune.search.optuna); cmaes' optimizer state is persisted on the TuneTrials.
The options are Optuna's, in camelCase; each is refused at apply time on a
sampler that does not take it, and so are search-space entries a model-based
sampler cannot search (grid, randn, qrandn, qlograndint with q > 1).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final, Literal

from pydantic import ConfigDict, Field, JsonValue, model_validator

from kubetune.api.common import SpecModel
from kubetune.api.domain_rules import NUMERIC_DOMAINS
from kubetune.api.searchspace import SearchDomain

MODEL_BASED: Final = ("tpe", "gp", "cmaes", "qmc")
"""Types searched by one of Optuna's samplers."""

GP_MAX_TRIALS: Final = 201
"""gp's limit on numSamples: its ask grows cubically with the trials it models (seconds at
100, minutes at 5,000 on two cores) and runs in the operator's reconcile loop."""

CMAES_MAX_DIMENSIONS: Final = 32
"""cmaes' limit on numeric parameters: its optimizer, persisted on a TuneTrial each
generation, holds d x d matrices (33 KB of hex at 32 dimensions, 112 KB at 64)."""

MAX_POINTS: Final = 1000
"""pointsToEvaluate entries at most."""

OPTION_TYPES: Final[Mapping[str, tuple[str, ...]]] = {
    "nStartupTrials": ("tpe", "gp", "cmaes"),
    "nEiCandidates": ("tpe",),
    "multivariate": ("tpe",),
    "group": ("tpe",),
    "constantLiar": ("tpe",),
    "deterministicObjective": ("gp",),
    "sigma0": ("cmaes",),
    "popsize": ("cmaes",),
    "withMargin": ("cmaes",),
    "useSeparableCma": ("cmaes",),
    "qmcType": ("qmc",),
    "scramble": ("qmc",),
    "pointsToEvaluate": MODEL_BASED,
    "stoppedTrialsAs": MODEL_BASED,
}
"""Each option and the types that take it."""


def _quoted(types: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{t}'" for t in types) + "]"


def _option_rules() -> list[JsonValue]:
    rules: list[JsonValue] = [
        {
            "rule": f"!has(self.{option}) || self.type in {_quoted(types)}",
            "message": f"{option} is an option of searchAlgorithm.type {' or '.join(types)} only",
            "fieldPath": f".{option}",
        }
        for option, types in OPTION_TYPES.items()
    ]
    return [*rules, {
        "rule": "!has(self.withMargin) || !has(self.useSeparableCma) || !self.withMargin || "
        "!self.useSeparableCma",
        "message": "withMargin and useSeparableCma cannot both be true (Optuna's CmaEsSampler "
        "has no separable CMA-ES with margin)",
        "fieldPath": ".withMargin",
    }]


class SearchAlgorithm(SpecModel):
    """How trial configs are chosen from the search space."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": _option_rules()})

    type: Literal["random", "grid", "tpe", "gp", "cmaes", "qmc"] = Field(
        default="random",
        description="random or grid follow Ray's BasicVariantGenerator: grid entries are "
        "expanded exhaustively and every other entry is drawn at random (grid also requires at "
        "least one grid entry). tpe, gp, cmaes and qmc are Optuna's TPESampler, GPSampler, "
        "CmaEsSampler and QMCSampler (Ray's OptunaSearch): each new trial's config is asked of "
        "a study rebuilt from the experiment's earlier trials, so it follows the results so "
        "far; they search every entry but grid, randn, qrandn and qlograndint with q > 1. gp "
        f"needs torch in the operator's image and at most {GP_MAX_TRIALS} trials. cmaes "
        f"searches at most {CMAES_MAX_DIMENSIONS} numeric parameters and draws choice entries "
        "at random, independently (CMA-ES models numbers only); its optimizer state is "
        "persisted on each TuneTrial's spec.samplerState.",
    )
    seed: int = Field(
        default=0,
        ge=0,
        description="Seed of the draws. random and grid: a trial's config depends only on "
        "(seed, trial index). tpe, gp, cmaes and qmc: on (seed, trial index, the earlier trials' "
        "configs, states and values), each trial's sampler being seeded from (seed, index); "
        "qmc reads its sequence (scrambled with this seed) at the trial's index. Either way it "
        "is the same after an operator restart.",
    )
    n_startup_trials: int | None = Field(
        default=None, ge=0, le=100_000,
        description="tpe, gp and cmaes: trials drawn at random before the model is used "
        "(Optuna's n_startup_trials; default 10 for tpe and gp, 1 for cmaes).",
    )
    n_ei_candidates: int | None = Field(
        default=None, ge=1, le=10_000,
        description="tpe: candidates scored by expected improvement per suggestion "
        "(Optuna's n_ei_candidates; default 24).",
    )
    multivariate: bool | None = Field(
        default=None,
        description="tpe: model the parameters jointly (Optuna's multivariate; default true, "
        "as Optuna 5 has it).",
    )
    group: bool | None = Field(
        default=None,
        description="tpe: with multivariate, model parameters that appear together as groups "
        "(Optuna's group; default false).",
    )
    constant_liar: bool | None = Field(
        default=None,
        description="tpe: count running trials as bad results, so concurrent trials spread out "
        "(Optuna's constant_liar; default true).",
    )
    deterministic_objective: bool | None = Field(
        default=None,
        description="gp: the objective has no noise (Optuna's deterministic_objective; default "
        "false).",
    )
    sigma0: float | None = Field(
        default=None, gt=0, le=1,
        description="cmaes: the initial step size, in the search space scaled to [0, 1] per "
        "parameter (Optuna's sigma0; default 1/6).",
    )
    popsize: int | None = Field(
        default=None, ge=2, le=1000,
        description="cmaes: trials per generation (Optuna's popsize; default "
        "4 + floor(3 ln(numeric parameters))).",
    )
    with_margin: bool | None = Field(
        default=None,
        description="cmaes: CMA-ES with margin, which keeps integer and stepped parameters "
        "from collapsing to one value (Optuna's with_margin; default false).",
    )
    use_separable_cma: bool | None = Field(
        default=None,
        description="cmaes: a diagonal covariance, faster to learn on separable objectives "
        "(Optuna's use_separable_cma; default false; not with withMargin).",
    )
    qmc_type: Literal["sobol", "halton"] | None = Field(
        default=None, description="qmc: the sequence, sobol (default) or halton."
    )
    scramble: bool | None = Field(
        default=None,
        description="qmc: scramble the sequence with the seed (Optuna's scramble; default "
        "false).",
    )
    points_to_evaluate: list[dict[str, JsonValue]] | None = Field(
        default=None,
        max_length=MAX_POINTS,
        description="tpe, gp, cmaes, qmc: configs tried first, as Ray's points_to_evaluate (trial i "
        "runs point i); each maps parameter names to values, nested as the config is, and "
        "parameters a point leaves out are suggested.",
    )
    stopped_trials_as: Literal["pruned", "complete"] | None = Field(
        default=None,
        description="tpe, gp, cmaes, qmc: how a trial the scheduler stopped early is told to "
        "the "
        "model. pruned (Optuna's way): pruned, with its rung values as intermediate values, "
        "ranked below complete trials that went further. complete (Ray's OptunaSearch): "
        "complete, with its value where it stopped, ranked with full-length trials. Default "
        "pruned.",
    )

    @model_validator(mode="after")
    def _options_of_the_type(self) -> SearchAlgorithm:
        for option, types in OPTION_TYPES.items():
            attribute = _ATTRIBUTE[option]
            if getattr(self, attribute) is not None and self.type not in types:
                raise ValueError(f"{option} is an option of searchAlgorithm.type "
                                 f"{' or '.join(types)} only, not {self.type}")
        if self.with_margin and self.use_separable_cma:
            raise ValueError("withMargin and useSeparableCma cannot both be set (Optuna's "
                             "CmaEsSampler has no separable CMA-ES with margin)")
        return self

    @property
    def model_based(self) -> bool:
        """Whether one of Optuna's samplers chooses the configs."""
        return self.type in MODEL_BASED

    def sampler_options(self) -> dict[str, Any]:
        """The sampler's options that are set, by their CRD names (nStartupTrials, ...)."""
        out = {}
        for option in OPTION_TYPES:
            if option in ("pointsToEvaluate", "stoppedTrialsAs"):
                continue
            value = getattr(self, _ATTRIBUTE[option])
            if value is not None:
                out[option] = value
        return out


_ATTRIBUTE: Final = {
    name: field for field, info in SearchAlgorithm.model_fields.items()
    for name in (info.alias or field,)
}


def _entries(space: Mapping[str, SearchDomain],
             prefix: str = "") -> Iterator[tuple[str, SearchDomain]]:
    for name, domain in space.items():
        if domain.space is not None:
            yield from _entries(domain.space, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", domain


def _refusal(kind: str, domain: SearchDomain, sampler: str) -> str | None:
    if kind == "grid":
        return (f"a grid entry cannot be searched by searchAlgorithm.type {sampler} (Ray's "
                "OptunaSearch refuses grid_search too): use choice to let the sampler pick among "
                "the values, or searchAlgorithm.type grid to run every value")
    if kind in ("randn", "qrandn"):
        return (f"{kind} cannot be searched by searchAlgorithm.type {sampler}: Optuna has no "
                "normal distribution (Ray's OptunaSearch refuses it too); use uniform over a "
                "range, or searchAlgorithm.type random")
    if kind == "qlograndint" and len(domain.arguments) > 2 and domain.arguments[2] != 1:
        return (f"qlograndint cannot be searched by searchAlgorithm.type {sampler}: Optuna "
                "steps no log-scaled integer (Ray's OptunaSearch fails on it too); use "
                "lograndint, qrandint, or searchAlgorithm.type random")
    return None


def _point_paths(point: Mapping[str, Any], space: Mapping[str, SearchDomain],
                 prefix: str = "") -> Iterator[str]:
    """Names in a point that are no parameter of the search space."""
    for name, value in point.items():
        domain = space.get(name)
        if domain is None:
            yield f"{prefix}{name}"
        elif domain.space is not None and isinstance(value, Mapping):
            yield from _point_paths(value, domain.space, f"{prefix}{name}.")


def search_problem(algorithm: SearchAlgorithm, space: Mapping[str, SearchDomain],
                   num_trials: int) -> str | None:
    """Why this search space and trial count cannot be searched by the algorithm, or None."""
    if not algorithm.model_based:
        return None
    for path, domain in _entries(space):
        problem = _refusal(domain.kind, domain, algorithm.type)
        if problem:
            return f"searchSpace.{path}: {problem}"
    for k, point in enumerate(algorithm.points_to_evaluate or []):
        unknown = next(_point_paths(point, space), None)
        if unknown is not None:
            return (f"searchAlgorithm.pointsToEvaluate[{k}]: {unknown} is no parameter of "
                    "searchSpace; a point names parameters as the config does")
    numeric = sum(1 for _, domain in _entries(space) if domain.kind in NUMERIC_DOMAINS)
    if algorithm.type == "cmaes" and numeric > CMAES_MAX_DIMENSIONS:
        return (f"searchAlgorithm.type cmaes searches at most {CMAES_MAX_DIMENSIONS} numeric "
                f"parameters, not {numeric}: its optimizer, persisted on a TuneTrial every "
                "generation, grows with their square; use tpe")
    if algorithm.type == "gp" and num_trials > GP_MAX_TRIALS:
        return (f"searchAlgorithm.type gp runs at most {GP_MAX_TRIALS} trials, not {num_trials}: "
                "its ask grows cubically with the trials it models (seconds at 100, minutes at "
                "5,000) and runs in the operator's reconcile loop; use tpe for longer searches")
    return None


def search_rules() -> list[JsonValue]:
    """On the spec: what the apiserver can check of a model-based search (top-level entries).

    Nested entries, points and grid entries are checked by the operator (SpecValid) and the
    Tuner: CEL cannot name a field whose schema is any JSON value (grid, choice).
    """
    model_based = f"has(self.searchAlgorithm) && self.searchAlgorithm.type in {_quoted(MODEL_BASED)}"
    entry = "self.searchSpace[k]"
    return [
        {
            "rule": f"!({model_based}) || self.searchSpace.all(k, !has({entry}.randn) && "
            f"!has({entry}.qrandn))",
            "message": "searchAlgorithm.type tpe, gp, cmaes and qmc cannot search randn or qrandn "
            "(Optuna has no normal distribution): use uniform over a range, or type random",
            "fieldPath": ".searchSpace",
        },
        {
            "rule": f"!({model_based}) || self.searchSpace.all(k, !has({entry}.qlograndint) || "
            f"size({entry}.qlograndint) < 3 || {entry}.qlograndint[2] == 1)",
            "message": "searchAlgorithm.type tpe, gp, cmaes and qmc cannot search qlograndint with "
            "q > 1 (Optuna steps no log-scaled integer): use lograndint or qrandint, or type "
            "random",
            "fieldPath": ".searchSpace",
        },
        {
            "rule": "!has(self.searchAlgorithm) || self.searchAlgorithm.type != 'gp' || "
            f"!has(self.numSamples) || self.numSamples <= {GP_MAX_TRIALS}",
            "message": f"searchAlgorithm.type gp runs at most {GP_MAX_TRIALS} trials (its ask "
            "grows cubically with the trials it models and runs in the reconcile loop): lower "
            "numSamples or use tpe",
            "fieldPath": ".numSamples",
        },
    ]


__all__ = [
    "CMAES_MAX_DIMENSIONS",
    "GP_MAX_TRIALS",
    "MODEL_BASED",
    "OPTION_TYPES",
    "SearchAlgorithm",
    "search_problem",
    "search_rules",
]
