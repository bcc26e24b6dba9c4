"""Ray Tune's search-space functions, written as a TuneExperiment's searchSpace.

    from kubetune import tune

    param_space = {
        "lr": tune.loguniform(1e-4, 1e-1),
        "hidden_size": tune.choice([64, 128, 256]),
        "batch_size": tune.grid_search([32, 64]),
        "epochs": 9,
    }
    tune.search_space(param_space)
    # {"lr": {"loguniform": [0.0001, 0.1]}, "hidden_size": {"choice": [64, 128, 256]},
    #  "batch_size": {"grid": [32, 64]}, "epochs": {"value": 9}}

The functions take Ray's arguments in Ray's order, so a `param_space` written
for `ray.tune.Tuner` works unchanged. Sampling happens in the operator, not
here: a domain is only a description, and the config of trial *i* is a pure
function of (seed, i) there. `kubetune.tune` re-exports these together with
`Tuner`, `TuneConfig` and the schedulers, as in `from ray import tune`.

`Domain` is the one user-side type of a hyperparameter's domain: Ray's call
(its name and arguments, shown as `tune.loguniform(0.0001, 0.1)`), checked with
Ray's argument names. It is not a second schema: the schema is the CRD's
`kubetune.api.SearchDomain`, which `Domain.to_spec()` is written in and
`Domain.to_model()` parses into, and every manifest the Tuner builds is
validated by the api before it is sent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubetune.api import SearchDomain

__all__ = [
    "Domain",
    "choice",
    "grid_search",
    "lograndint",
    "loguniform",
    "qlograndint",
    "qloguniform",
    "qrandint",
    "qrandn",
    "quniform",
    "randint",
    "randn",
    "sample_from",
    "search_space",
    "uniform",
]


@dataclass(frozen=True)
class Domain:
    """One hyperparameter's domain: the searchSpace key (`loguniform`) and its arguments."""

    kind: str
    args: tuple[Any, ...]

    def to_spec(self) -> dict[str, list[Any]]:
        """The searchSpace entry, e.g. {"loguniform": [1e-05, 0.1]}."""
        return {self.kind: list(self.args)}

    def to_model(self) -> SearchDomain:
        """The entry as the api's model, validated by the CRD's rules (pydantic's
        ValidationError, a ValueError, names the rule a bad entry breaks)."""
        from kubetune.api import SearchDomain

        return SearchDomain.model_validate(self.to_spec())

    def __repr__(self) -> str:
        return f"tune.{_RAY_NAMES.get(self.kind, self.kind)}({', '.join(map(repr, self.args))})"


_RAY_NAMES = {"grid": "grid_search"}


def _number(name: str, value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value


def _integer(name: str, value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return value


def _bounded(kind: str, lower: Any, upper: Any, *rest: Any, integer: bool = False,
             log: bool = False) -> Domain:
    check = _integer if integer else _number
    low, high = check(f"{kind}: lower", lower), check(f"{kind}: upper", upper)
    if not low < high:
        raise ValueError(f"{kind} needs lower < upper, got lower={low!r}, upper={high!r}")
    if log and low <= 0:
        raise ValueError(f"{kind} needs 0 < lower (a logarithm is taken), got lower={low!r}")
    return Domain(kind, (low, high, *rest))


def uniform(lower: float, upper: float) -> Domain:
    """A float drawn uniformly from [lower, upper]."""
    return _bounded("uniform", lower, upper)


def quniform(lower: float, upper: float, q: float) -> Domain:
    """uniform, rounded to a multiple of q."""
    return _bounded("quniform", lower, upper, _number("quniform: q", q))


def loguniform(lower: float, upper: float, base: float = 10) -> Domain:
    """A float whose logarithm is uniform: learning rates, weight decays."""
    extra = () if base == 10 else (_number("loguniform: base", base),)
    return _bounded("loguniform", lower, upper, *extra, log=True)


def qloguniform(lower: float, upper: float, q: float, base: float = 10) -> Domain:
    """loguniform, rounded to a multiple of q."""
    extra = () if base == 10 else (_number("qloguniform: base", base),)
    return _bounded("qloguniform", lower, upper, _number("qloguniform: q", q), *extra, log=True)


def randn(mean: float = 0.0, sd: float = 1.0) -> Domain:
    """A float from a normal distribution."""
    return Domain("randn", (_number("randn: mean", mean), _number("randn: sd", sd)))


def qrandn(mean: float, sd: float, q: float) -> Domain:
    """randn, rounded to a multiple of q."""
    return Domain("qrandn", (_number("qrandn: mean", mean), _number("qrandn: sd", sd),
                             _number("qrandn: q", q)))


def randint(lower: int, upper: int) -> Domain:
    """An integer from lower (included) to upper (excluded), as in Ray."""
    return _bounded("randint", lower, upper, integer=True)


def qrandint(lower: int, upper: int, q: int = 1) -> Domain:
    """A multiple of q between lower and upper (upper included when q > 1, as in Ray)."""
    return _bounded("qrandint", lower, upper, _integer("qrandint: q", q), integer=True)


def lograndint(lower: int, upper: int, base: float = 10) -> Domain:
    """An integer drawn log-uniformly from lower (included) to upper (excluded)."""
    extra = () if base == 10 else (_number("lograndint: base", base),)
    return _bounded("lograndint", lower, upper, *extra, integer=True, log=True)


def qlograndint(lower: int, upper: int, q: int, base: float = 10) -> Domain:
    """A multiple of q drawn log-uniformly between lower and upper."""
    extra = () if base == 10 else (_number("qlograndint: base", base),)
    return _bounded("qlograndint", lower, upper, _integer("qlograndint: q", q), *extra,
                    integer=True, log=True)


def choice(categories: Sequence[Any]) -> Domain:
    """One of the categories, each equally likely (any JSON values)."""
    values = _json_list("choice", categories)
    return Domain("choice", tuple(values))


def grid_search(values: Sequence[Any]) -> Domain:
    """Every value is tried (numSamples times each), as Ray's grid_search."""
    return Domain("grid", tuple(_json_list("grid_search", values)))


def sample_from(func: Callable[..., Any]) -> Domain:
    """Not available: trial configs are drawn by the operator, which cannot run your function."""
    raise TypeError(
        "tune.sample_from() cannot be sent to the cluster: configs are drawn by the operator. "
        "Use one of the listed domains, or draw the value inside the trial from trial.config()"
    )


def _json_list(kind: str, values: Any) -> list[Any]:
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Sequence):
        raise ValueError(f"{kind} takes a list of values, got {values!r}")
    if not values:
        raise ValueError(f"{kind} needs at least one value")
    return [_plain(f"{kind}[{i}]", v) for i, v in enumerate(values)]


def _plain(where: str, value: Any) -> Any:
    """A JSON-able copy of a constant (tuples become lists; numpy scalars become numbers)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value!r} cannot be stored in a Kubernetes object (JSON)")
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(f"{where}.{k}", v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(f"{where}[{i}]", v) for i, v in enumerate(value)]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return _plain(where, item())
    if isinstance(value, Domain):
        raise ValueError(f"{where}: a domain cannot be nested inside choice/grid_search values")
    raise ValueError(f"{where}: {type(value).__name__} {value!r} is not a JSON value")


def _entry(name: str, value: Any) -> dict[str, Any]:
    if type(value).__module__.startswith("ray."):  # ray.tune.loguniform(...) by habit
        from kubetune.client import ray_compat

        value = ray_compat.domain(name, value)
    if isinstance(value, Domain):
        return value.to_spec()
    if callable(value):
        raise TypeError(f"{name}: functions cannot be sent to the cluster; "
                        "use a tune domain or a constant")
    if isinstance(value, Mapping):
        if set(value) == {"grid_search"}:  # Ray's own grid_search() returns this mapping
            return grid_search(value["grid_search"]).to_spec()
        if any(_has_domain(v) for v in value.values()):
            return {"space": {str(k): _entry(f"{name}.{k}", v) for k, v in value.items()}}
    return {"value": _plain(name, value)}


def _has_domain(value: Any) -> bool:
    if isinstance(value, Domain) or type(value).__module__.startswith("ray."):
        return True
    if isinstance(value, Mapping):
        return set(value) == {"grid_search"} or any(_has_domain(v) for v in value.values())
    return False


def search_space(param_space: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A Ray `param_space` as a TuneExperiment's spec.searchSpace.

    Domains become their entries, constants become {value: ...}, and nested
    mappings that hold domains become {space: {...}}, so trial configs have the
    same shape as in Ray.
    """
    if not isinstance(param_space, Mapping) or not param_space:
        raise ValueError("param_space must be a non-empty mapping of names to domains or values")
    return {str(name): _entry(str(name), value) for name, value in param_space.items()}
