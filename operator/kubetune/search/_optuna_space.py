"""Ray's search-space domains as Optuna distributions, as Ray's OptunaSearch maps them.

The mapping copies ``OptunaSearch.convert_search_space`` (ray/tune/search/optuna):
uniform, quniform and loguniform become a FloatDistribution with ``step`` or
``log``; randint and lograndint an IntDistribution whose upper bound is Ray's
exclusive one made inclusive (high - 1); qrandint an IntDistribution with ``step``
and its upper bound kept, as Ray keeps it for every q; choice a
CategoricalDistribution; nested spaces are flattened to ``"a/b"`` names; constants
pass through. Two departures, both kept on purpose: qloguniform keeps its step
(Ray drops it with a warning; here the log-uniform suggestion is rounded to a
multiple of q, as tune.qloguniform's own draws are), and a choice among values
Optuna cannot hold as categories (lists, mappings) is modelled over the indices
of its values. What Ray refuses is refused with the reason and the alternative.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from kubetune.search.domains import (
    Choice,
    Constant,
    Grid,
    LogRandInt,
    LogUniform,
    Normal,
    Parameter,
    QRandInt,
    Quantized,
    RandInt,
    SearchSpace,
    SearchSpaceError,
    Uniform,
    _snap,
)

PATH_SEPARATOR = "/"
"""Ray's separator of a nested parameter's flattened name (optimizer/lr)."""

_PRIMITIVE = (type(None), bool, int, float, str)


def optuna_name(path: tuple[str, ...]) -> str:
    """A parameter's name in the Optuna study: its key path joined by "/", as Ray names it."""
    return PATH_SEPARATOR.join(path)


@dataclass(frozen=True)
class OptunaParameter:
    """One searched parameter: its Optuna distribution and how a value crosses over."""

    path: tuple[str, ...]
    distribution: BaseDistribution
    choices: tuple[Any, ...] | None = None
    """A choice over indices: the user's values, which the study knows by position."""
    log_step: float | None = None
    """qloguniform's q, applied to the suggestion (Optuna cannot step a log distribution)."""

    def to_config(self, value: Any) -> Any:
        """The value the trial gets for the study's value."""
        if self.choices is not None:
            return copy.deepcopy(self.choices[int(value)])
        if self.log_step is not None:
            return _snap(round(float(value) / self.log_step), self.log_step)
        return value

    def to_study(self, value: Any) -> Any | None:
        """The study's value for a value a trial ran with; None when the distribution lacks it."""
        dist = self.distribution
        if isinstance(dist, CategoricalDistribution):
            candidates = self.choices if self.choices is not None else dist.choices
            for position, choice in enumerate(candidates):
                if type(choice) is type(value) and choice == value:
                    return position if self.choices is not None else choice
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        if isinstance(dist, IntDistribution):
            if not isinstance(value, int) and not float(value).is_integer():
                return None
            number = int(value)
            aligned = (number - dist.low) % dist.step == 0
            return number if dist.low <= number <= dist.high and aligned else None
        assert isinstance(dist, FloatDistribution)
        real = float(value)
        if not math.isfinite(real):
            return None
        if self.log_step is not None:
            # A rounded suggestion may sit just outside the bounds; the model needs it inside.
            return min(max(real, dist.low), dist.high)
        return real if dist.low <= real <= dist.high else None


@dataclass(frozen=True)
class OptunaSpace:
    """A search space as Optuna sees it: searched parameters by name, constants by path."""

    parameters: Mapping[str, OptunaParameter]
    constants: Mapping[tuple[str, ...], Any] = field(default_factory=dict)
    space: SearchSpace = field(default_factory=SearchSpace)

    @property
    def distributions(self) -> dict[str, BaseDistribution]:
        """The study's distributions by flattened name, in the search space's order."""
        return {name: p.distribution for name, p in self.parameters.items()}

    def study_params(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The searched parameters of a config, as the study holds them (unknown ones left out)."""
        params: dict[str, Any] = {}
        for name, parameter in self.parameters.items():
            found, value = _lookup(config, parameter.path)
            if not found:
                continue
            study_value = parameter.to_study(value)
            dist = parameter.distribution
            # Optuna's own membership test (a stepped float's grid included) has the last word.
            if study_value is not None and dist._contains(dist.to_internal_repr(study_value)):
                params[name] = study_value
        return params

    def config(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The nested config of the study's params, constants filled in, in the user's order."""
        return self._resolve(self.space, (), params)

    def _resolve(self, space: SearchSpace, prefix: tuple[str, ...],
                 params: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, inner in space.parameters.items():
            path = (*prefix, key)
            if isinstance(inner, SearchSpace):
                out[key] = self._resolve(inner, path, params)
            elif path in self.constants:
                out[key] = copy.deepcopy(self.constants[path])
            else:
                name = optuna_name(path)
                out[key] = self.parameters[name].to_config(params[name])
        return out


def _lookup(config: Mapping[str, Any], path: tuple[str, ...]) -> tuple[bool, Any]:
    node: Any = config
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return False, None
        node = node[key]
    return True, node


def _refusal(path: tuple[str, ...], parameter: Parameter, sampler: str) -> str | None:
    """Why the model-based sampler cannot search this parameter, or None."""
    if isinstance(parameter, Grid):
        return (f"a grid entry cannot be searched by searchAlgorithm.type {sampler} (Ray's "
                "OptunaSearch refuses grid_search too): use choice to let the sampler pick among "
                "the values, or searchAlgorithm.type grid to run every value")
    inner = parameter.inner if isinstance(parameter, Quantized) else parameter
    if isinstance(inner, Normal):
        name = "qrandn" if isinstance(parameter, Quantized) else "randn"
        return (f"{name} cannot be searched by searchAlgorithm.type {sampler}: Optuna has no "
                "normal distribution (Ray's OptunaSearch refuses it too); use uniform over a "
                "range, or searchAlgorithm.type random")
    if isinstance(parameter, QRandInt) and parameter.log and parameter.q != 1:
        return (f"qlograndint cannot be searched by searchAlgorithm.type {sampler}: Optuna "
                "steps no log-scaled integer (Ray's OptunaSearch fails on it too); use "
                "lograndint, qrandint, or searchAlgorithm.type random")
    return None


def _distribution(parameter: Parameter) -> OptunaParameter | None:
    """The Optuna side of one parameter (path filled in by the caller); None for a constant."""
    dummy: tuple[str, ...] = ()
    if isinstance(parameter, Uniform):
        return OptunaParameter(dummy, FloatDistribution(parameter.low, parameter.high))
    if isinstance(parameter, LogUniform):
        return OptunaParameter(dummy, FloatDistribution(parameter.low, parameter.high, log=True))
    if isinstance(parameter, Quantized) and isinstance(parameter.inner, Uniform):
        dist = FloatDistribution(parameter.inner.low, parameter.inner.high, step=parameter.q)
        return OptunaParameter(dummy, dist)
    if isinstance(parameter, Quantized) and isinstance(parameter.inner, LogUniform):
        dist = FloatDistribution(parameter.inner.low, parameter.inner.high, log=True)
        return OptunaParameter(dummy, dist, log_step=parameter.q)
    if isinstance(parameter, RandInt):
        return OptunaParameter(dummy, IntDistribution(parameter.low, parameter.high - 1))
    if isinstance(parameter, LogRandInt):
        return OptunaParameter(dummy, IntDistribution(parameter.low, parameter.high - 1, log=True))
    if isinstance(parameter, QRandInt):
        if parameter.log:
            return OptunaParameter(dummy, IntDistribution(parameter.low, parameter.high - 1,
                                                          log=True))
        # Ray keeps a quantized integer's upper bound, q == 1 included.
        return OptunaParameter(dummy, IntDistribution(parameter.low, parameter.high,
                                                      step=parameter.q))
    if isinstance(parameter, Choice):
        if all(isinstance(v, _PRIMITIVE) for v in parameter.values):
            return OptunaParameter(dummy, CategoricalDistribution(parameter.values))
        indices = tuple(range(len(parameter.values)))
        return OptunaParameter(dummy, CategoricalDistribution(indices), choices=parameter.values)
    if isinstance(parameter, Constant):
        return None
    raise AssertionError(f"no Optuna distribution for {parameter!r}")


def convert_space(space: SearchSpace, sampler: str) -> OptunaSpace:
    """The Optuna view of a search space; SearchSpaceError names a parameter it cannot search."""
    parameters: dict[str, OptunaParameter] = {}
    constants: dict[tuple[str, ...], Any] = {}
    for path, parameter in space.walk():
        problem = _refusal(path, parameter, sampler)
        if problem:
            raise SearchSpaceError(".".join(path), problem)
        converted = _distribution(parameter)
        if converted is None:
            assert isinstance(parameter, Constant)
            constants[path] = parameter.value
            continue
        parameters[optuna_name(path)] = OptunaParameter(
            path, converted.distribution, converted.choices, converted.log_step)
    return OptunaSpace(parameters, constants, space)


def refused_parameter(space: SearchSpace, sampler: str) -> tuple[str, str] | None:
    """(parameter path, reason) of the first parameter the sampler cannot search, or None."""
    for path, parameter in space.walk():
        problem = _refusal(path, parameter, sampler)
        if problem:
            return ".".join(path), problem
    return None
