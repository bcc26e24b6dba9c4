"""Ray Tune's search-space domains as small samplers with Ray's semantics.

A user who knows ``tune.qrandint`` must get the same values from kubetune, so
each domain copies Ray's rules: quantization is ``round(v / q) * q`` within
bounds snapped inwards to the grid of q, randint and lograndint exclude high,
the quantized integer domains include it when q > 1, and a log-uniform draw is
the same whatever the logarithm's base.

Draws use only ``random.Random.random()``, the one stream Python promises to
keep stable across versions, and do their own transforms (Box-Muller for the
normal). That keeps a trial's config a pure function of (seed, index) in any
process, on any Python, whatever numpy is installed.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from pydantic import TypeAdapter, ValidationError

from kubetune.api.common import SpecError, describe_validation_error, format_loc
from kubetune.api.domain_rules import grid_index
from kubetune.api.searchspace import SearchDomain, SearchSpaceSpec


class SearchSpaceError(SpecError):
    """A search space that cannot be sampled: which parameter, and what is wrong.

    A SpecError like every other user-fixable mistake, so whoever reports spec
    errors (the operator's status, the CLI) reports this one too; its field is the
    parameter's path inside the search space (optimizer.momentum).
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(path, message)

    @property
    def path(self) -> str:
        """The parameter's dotted path inside the search space, "" for the whole space."""
        return self.field


class Domain(Protocol):
    """A parameter that is drawn at random: one value per call, from the given stream."""

    def sample(self, rng: random.Random) -> Any: ...


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    log_low = math.log(low)
    return math.exp(log_low + (math.log(high) - log_low) * rng.random())


def _snap(k: float, q: float) -> float:
    """k * q without binary noise: 3 * 0.1 is 0.3, not 0.30000000000000004."""
    exponent = Decimal(repr(q)).as_tuple().exponent
    digits = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    return round(k * q, digits) if digits else float(k * q)


@dataclass(frozen=True)
class Uniform:
    """tune.uniform(low, high)."""

    low: float
    high: float

    def sample(self, rng: random.Random) -> float:
        return self.low + (self.high - self.low) * rng.random()


@dataclass(frozen=True)
class LogUniform:
    """tune.loguniform(low, high); base is kept for display, it does not change the draw."""

    low: float
    high: float
    base: float = 10.0

    def sample(self, rng: random.Random) -> float:
        # exp(log(high)) can land an ulp outside the bounds.
        return min(max(_log_uniform(rng, self.low, self.high), self.low), self.high)


@dataclass(frozen=True)
class Normal:
    """tune.randn(mean, sd)."""

    mean: float = 0.0
    sd: float = 1.0

    def sample(self, rng: random.Random) -> float:
        u1, u2 = rng.random(), rng.random()
        z = math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(2.0 * math.pi * u2)
        return self.mean + self.sd * z


@dataclass(frozen=True)
class Quantized:
    """tune.quniform / qloguniform / qrandn: the inner draw rounded to a multiple of q."""

    inner: Uniform | LogUniform | Normal
    q: float

    def sample(self, rng: random.Random) -> float:
        return _snap(round(self.inner.sample(rng) / self.q), self.q)


@dataclass(frozen=True)
class RandInt:
    """tune.randint(low, high): low included, high excluded."""

    low: int
    high: int

    def sample(self, rng: random.Random) -> int:
        return self.low + min(int(rng.random() * (self.high - self.low)), self.high - self.low - 1)


@dataclass(frozen=True)
class LogRandInt:
    """tune.lograndint(low, high): floor of a log-uniform draw; high excluded."""

    low: int
    high: int
    base: float = 10.0

    def sample(self, rng: random.Random) -> int:
        drawn = math.floor(_log_uniform(rng, self.low, self.high))
        return min(max(drawn, self.low), self.high - 1)


@dataclass(frozen=True)
class QRandInt:
    """tune.qrandint / qlograndint: a multiple of q, drawn over the grid indices as Ray does.

    The indices run from ceil(low/q) to floor(high/q), the last one included
    unless q == 1 (Ray's samplers are high-exclusive, and Ray only widens the
    index range for q > 1).
    """

    low: int
    high: int
    q: int = 1
    log: bool = False
    base: float = 10.0

    def sample(self, rng: random.Random) -> int:
        first = grid_index(self.low, self.q, upper=False)
        stop = grid_index(self.high, self.q, upper=True) + (0 if self.q == 1 else 1)
        index_domain = LogRandInt(first, stop) if self.log else RandInt(first, stop)
        return index_domain.sample(rng) * self.q


@dataclass(frozen=True)
class Choice:
    """tune.choice(values): each value equally likely."""

    values: tuple[Any, ...]

    def sample(self, rng: random.Random) -> Any:
        n = len(self.values)
        return copy.deepcopy(self.values[min(int(rng.random() * n), n - 1)])


@dataclass(frozen=True)
class Grid:
    """tune.grid_search(values): not drawn; the sampler walks every value."""

    values: tuple[Any, ...]


@dataclass(frozen=True)
class Constant:
    """A fixed value, passed unchanged to every trial."""

    value: Any

    def sample(self, rng: random.Random) -> Any:
        return copy.deepcopy(self.value)


Parameter = (
    Uniform
    | LogUniform
    | Normal
    | Quantized
    | RandInt
    | LogRandInt
    | QRandInt
    | Choice
    | Grid
    | Constant
)


@dataclass(frozen=True)
class SearchSpace:
    """Parameters by name, in the user's order; a nested SearchSpace makes a nested config."""

    parameters: Mapping[str, Parameter | SearchSpace] = field(default_factory=dict)

    def walk(self, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Parameter]]:
        """Every leaf parameter with its key path, depth first in the user's order."""
        for name, parameter in self.parameters.items():
            if isinstance(parameter, SearchSpace):
                yield from parameter.walk((*prefix, name))
            else:
                yield (*prefix, name), parameter

    def grid_parameters(self) -> list[tuple[tuple[str, ...], Grid]]:
        """The grid parameters in Ray's order: sorted by key path."""
        grids = [(path, p) for path, p in self.walk() if isinstance(p, Grid)]
        return sorted(grids, key=lambda item: item[0])


def _numeric(kind: str, args: list[Any]) -> Parameter:
    if kind == "uniform":
        return Uniform(args[0], args[1])
    if kind == "quniform":
        return Quantized(Uniform(args[0], args[1]), args[2])
    if kind == "loguniform":
        return LogUniform(*args)
    if kind == "qloguniform":
        return Quantized(LogUniform(args[0], args[1], *args[3:]), args[2])
    if kind == "randn":
        return Normal(*args)
    if kind == "qrandn":
        return Quantized(Normal(args[0], args[1]), args[2])
    if kind == "randint":
        return RandInt(args[0], args[1])
    if kind == "qrandint":
        return QRandInt(*args)
    if kind == "lograndint":
        return LogRandInt(*args)
    if kind == "qlograndint":
        return QRandInt(
            args[0], args[1], args[2], log=True, base=args[3] if len(args) > 3 else 10.0
        )
    raise AssertionError(f"no sampler for domain {kind!r}")


def _parameter(domain: SearchDomain) -> Parameter | SearchSpace:
    kind = domain.kind
    if kind == "space":
        return space_from_spec(domain.arguments)
    if kind == "choice":
        return Choice(tuple(domain.arguments))
    if kind == "grid":
        return Grid(tuple(domain.arguments))
    if kind == "value":
        return Constant(domain.arguments)
    return _numeric(kind, list(domain.arguments))


def space_from_spec(domains: Mapping[str, SearchDomain]) -> SearchSpace:
    """The samplers of an already validated searchSpace (TuneExperimentSpec.search_space)."""
    return SearchSpace({name: _parameter(domain) for name, domain in domains.items()})


_SPACE_ADAPTER: TypeAdapter[dict[str, SearchDomain]] = TypeAdapter(SearchSpaceSpec)


def _parameter_path(loc: tuple[int | str, ...]) -> tuple[str, str]:
    """Split an error location into the parameter path and the place inside its entry."""
    parts = list(loc)
    path = [str(parts.pop(0))] if parts else []
    while len(parts) >= 2 and parts[0] == "space" and isinstance(parts[1], str):
        path.append(parts[1])
        del parts[:2]
    return ".".join(path), format_loc("", parts)


def parse_space(raw: Mapping[str, Any]) -> SearchSpace:
    """Validate a searchSpace mapping and build its samplers.

    Raises SearchSpaceError naming the parameter (optimizer.momentum) and the problem.
    """
    try:
        domains = _SPACE_ADAPTER.validate_python(raw)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        _, message = describe_validation_error(err, "")[0]
        path, inside = _parameter_path(first["loc"])
        raise SearchSpaceError(path, f"{inside}: {message}" if inside else message) from None
    return space_from_spec(domains)
