"""The search space of a TuneExperiment: Ray Tune's domains written as YAML.

Each parameter is a one-key mapping that names the Ray function and lists its
arguments: ``lr: {loguniform: [1.0e-5, 1.0e-1]}`` is ``tune.loguniform(1e-5, 1e-1)``.
Everything Ray would refuse (or trip over when sampling) is refused here, when
the experiment is applied, with the parameter's path in the message, instead of
when the hundredth trial is sampled. ``kubetune.search`` turns these validated
entries into samplers.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    JsonValue,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    WithJsonSchema,
    model_serializer,
    model_validator,
)

from kubetune.api.common import SpecModel
from kubetune.api.domain_rules import (
    DOMAIN_KINDS,
    NUMERIC_DOMAINS,
    numeric_domain_problem,
)
from kubetune.api.limits import MAX_NAME_LENGTH, PARAMETER_NAME_PATTERN

MAX_PARAMETERS = 128
"""Parameters per (nested) space; bounds the apiserver's validation cost."""

MAX_VALUES = 1024
"""Values in one choice or grid list."""

PARAMETER_NAME = re.compile(PARAMETER_NAME_PATTERN)


def env_name(path: Sequence[str]) -> str:
    """The environment-variable form of a parameter path: optimizer.momentum -> OPTIMIZER_MOMENTUM."""
    return re.sub(r"[^A-Za-z0-9]", "_", "_".join(path)).upper()


def _check_names(space: dict[str, SearchDomain]) -> dict[str, SearchDomain]:
    if not space:
        raise ValueError("needs at least one parameter, such as lr: {loguniform: [1.0e-4, 1.0e-1]}")
    if len(space) > MAX_PARAMETERS:
        raise ValueError(f"has {len(space)} parameters; at most {MAX_PARAMETERS} are allowed")
    for name in space:
        if not PARAMETER_NAME.fullmatch(name):
            raise ValueError(
                f"parameter name {name!r} must start with a letter or _ and hold only "
                "letters, digits, _ and -"
            )
        if len(name) > MAX_NAME_LENGTH:
            raise ValueError(
                f"parameter name {name[:40]!r}... is {len(name)} characters; at most "
                f"{MAX_NAME_LENGTH}"
            )
    return space


def _json_leaf_paths(value: Any, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    if isinstance(value, dict) and value:
        for key, inner in value.items():
            yield from _json_leaf_paths(inner, (*path, str(key)))
    else:
        yield path


def leaf_paths(
    space: Mapping[str, SearchDomain], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    """Every key path a sampled config can hold, objects inside constants and choices included."""
    for name, domain in space.items():
        path = (*prefix, name)
        if domain.space is not None:
            yield from leaf_paths(domain.space, path)
        elif domain.kind in ("choice", "grid"):
            for candidate in domain.arguments:
                yield from _json_leaf_paths(candidate, path)
        else:
            yield from _json_leaf_paths(domain.value if domain.kind == "value" else None, path)


def _check_top_level(space: dict[str, SearchDomain]) -> dict[str, SearchDomain]:
    _check_names(space)
    seen: dict[str, tuple[str, ...]] = {}
    for path in leaf_paths(space):
        name = env_name(path)
        other = seen.setdefault(name, path)
        if other != path:
            raise ValueError(
                f"parameters {'.'.join(other)} and {'.'.join(path)} would both reach the trial "
                f"as KUBETUNE_PARAM_{name}; rename one of them"
            )
    return space


_FloatArg = Annotated[float, Field(strict=True, allow_inf_nan=False)]
_IntArg = Annotated[int, Field(strict=True)]


def _numeric_field(kind: str, description: str) -> Any:
    shape = NUMERIC_DOMAINS[kind]
    return Field(
        default=None,
        description=description,
        json_schema_extra={"minItems": min(shape.arities), "maxItems": max(shape.arities)},
    )


def _cel_rule(kind: str, size: int, check: str, message: str) -> dict[str, str]:
    return {
        "rule": f"!has(self.{kind}) || size(self.{kind}) < {size} || {check}",
        "message": f"{kind} {NUMERIC_DOMAINS[kind].usage}: {message}",
        "fieldPath": f".{kind}",
    }


def _cel_rules() -> list[dict[str, str]]:
    """x-kubernetes-validations mirroring numeric_domain_problem, for `kubectl apply` feedback."""
    rules: list[dict[str, str]] = []
    for kind, shape in NUMERIC_DOMAINS.items():
        zero, one = ("0", "1") if shape.integer else ("0.0", "1.0")
        arg = f"self.{kind}"
        if shape.bounded:
            rules.append(_cel_rule(kind, 2, f"{arg}[0] < {arg}[1]", "low must be < high"))
            if shape.log:
                rules.append(_cel_rule(kind, 1, f"{arg}[0] > {zero}", "low must be > 0"))
        else:
            rules.append(_cel_rule(kind, 2, f"{arg}[1] > {zero}", "sd must be > 0"))
        if shape.q_index is not None:
            i = shape.q_index
            rules.append(_cel_rule(kind, i + 1, f"{arg}[{i}] > {zero}", "q must be > 0"))
        if shape.base_index is not None:
            i = shape.base_index
            rules.append(_cel_rule(kind, i + 1, f"{arg}[{i}] > {one}", "base must be > 1"))
    return rules


_SPACE_SCHEMA = {"x-kubernetes-preserve-unknown-fields": True}
"""Untyped on purpose: the apiserver compares such a node whole (a deep equality), so the
CRD's immutability rule sees a renamed nested parameter; an object node would compare only
the keys both sides have. The models check that it is a mapping of entries."""


class SearchDomain(SpecModel):
    """One hyperparameter, as exactly one of Ray Tune's domains, for example
    {loguniform: [1.0e-5, 1.0e-1]}, {choice: [64, 128, 256]} or {grid: [32, 64]}.
    Arguments are listed in Ray's order."""

    model_config = ConfigDict(
        json_schema_extra={
            "minProperties": 1,
            "maxProperties": 1,
            "x-kubernetes-validations": _cel_rules(),  # type: ignore[dict-item]
        }
    )

    uniform: list[_FloatArg] | None = _numeric_field(
        "uniform",
        "tune.uniform(low, high): a float drawn uniformly between low and high. Write [low, high].",
    )
    quniform: list[_FloatArg] | None = _numeric_field(
        "quniform",
        "tune.quniform(low, high, q): uniform, then rounded to a multiple of q (round(v/q)*q), "
        "so high can be drawn. low and high must be multiples of q. Write [low, high, q].",
    )
    loguniform: list[_FloatArg] | None = _numeric_field(
        "loguniform",
        "tune.loguniform(low, high): a float whose logarithm is uniform, for values spanning "
        "orders of magnitude such as learning rates. Needs 0 < low < high. Write [low, high] or "
        "[low, high, base]; base (default 10) is accepted as in Ray and does not change the "
        "distribution.",
    )
    qloguniform: list[_FloatArg] | None = _numeric_field(
        "qloguniform",
        "tune.qloguniform(low, high, q): log-uniform, then rounded to a multiple of q. Needs "
        "0 < low < high, both multiples of q. Write [low, high, q] or [low, high, q, base].",
    )
    randn: list[_FloatArg] | None = _numeric_field(
        "randn",
        "tune.randn(mean, sd): a float from a normal distribution. Write [] (mean 0, sd 1), "
        "[mean] or [mean, sd] with sd > 0.",
    )
    qrandn: list[_FloatArg] | None = _numeric_field(
        "qrandn",
        "tune.qrandn(mean, sd, q): normal, then rounded to a multiple of q. Write [mean, sd, q].",
    )
    randint: list[_IntArg] | None = _numeric_field(
        "randint",
        "tune.randint(low, high): an integer drawn uniformly from low (included) to high "
        "(excluded), as in Ray. Write [low, high].",
    )
    qrandint: list[_IntArg] | None = _numeric_field(
        "qrandint",
        "tune.qrandint(low, high, q): a multiple of q drawn uniformly between low and high. As in "
        "Ray, high is included when q > 1 and excluded when q is 1 (the default). Write "
        "[low, high] or [low, high, q].",
    )
    lograndint: list[_IntArg] | None = _numeric_field(
        "lograndint",
        "tune.lograndint(low, high): an integer drawn log-uniformly from low (included) to high "
        "(excluded). Needs 0 < low < high. Write [low, high] or [low, high, base].",
    )
    qlograndint: list[_IntArg] | None = _numeric_field(
        "qlograndint",
        "tune.qlograndint(low, high, q): a multiple of q drawn log-uniformly between low and "
        "high; as in Ray, high is included when q > 1 and excluded when q is 1. Needs "
        "0 < low < high. Write [low, high, q] or [low, high, q, base].",
    )
    choice: list[JsonValue] | None = Field(
        default=None,
        description="tune.choice([...]): one of the listed values (any JSON values), each "
        "equally likely.",
        json_schema_extra={"minItems": 1, "maxItems": MAX_VALUES},
    )
    grid: list[JsonValue] | None = Field(
        default=None,
        description="tune.grid_search([...]): every listed value is tried. With several grid "
        "parameters every combination is tried, numSamples times over.",
        json_schema_extra={"minItems": 1, "maxItems": MAX_VALUES},
    )
    value: JsonValue = Field(
        default=None,
        description="A constant passed unchanged to every trial (any JSON value).",
    )
    space: Annotated[
        Annotated[dict[str, SearchDomain], AfterValidator(_check_names)] | None,
        WithJsonSchema(_SPACE_SCHEMA),
    ] = Field(
        default=None,
        description="A nested search space: names mapped to entries like this one. "
        "optimizer: {space: {name: {choice: [sgd, adam]}, momentum: {uniform: [0.5, 0.99]}}} "
        "gives each trial a config with optimizer.name and optimizer.momentum.",
    )

    @model_validator(mode="before")
    @classmethod
    def _exactly_one_domain(cls, data: Any) -> Any:
        if isinstance(data, SearchDomain):
            return data
        if not isinstance(data, Mapping):
            raise ValueError(
                "must be a mapping with one domain key, such as {uniform: [0, 1]}; "
                f"for a constant write {{value: {json.dumps(data, default=str)}}}"
            )
        keys = [str(k) for k in data]
        for key in keys:
            if key not in DOMAIN_KINDS:
                close = difflib.get_close_matches(key, DOMAIN_KINDS, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(
                    f"unknown domain {key!r}{hint}; expected one of {', '.join(DOMAIN_KINDS)}"
                )
        if not keys:
            raise ValueError("is empty; give one domain, such as {uniform: [0, 1]}")
        for key, value in data.items():
            if value is None and key != "value":
                usage = NUMERIC_DOMAINS[key].usage if key in NUMERIC_DOMAINS else "its arguments"
                raise ValueError(f"{key} needs {usage}, got null")
        if len(keys) > 1:
            raise ValueError(
                f"has {len(keys)} domains ({', '.join(keys)}); a parameter takes exactly one"
            )
        return data

    @model_validator(mode="after")
    def _check_arguments(self) -> SearchDomain:
        kind = self.kind
        if kind in NUMERIC_DOMAINS:
            problem = numeric_domain_problem(kind, self.arguments)
            if problem:
                raise ValueError(problem)
        elif kind in ("choice", "grid"):
            if not self.arguments:
                raise ValueError(f"{kind} needs at least one value, got []")
            if len(self.arguments) > MAX_VALUES:
                raise ValueError(f"{kind} takes at most {MAX_VALUES} values")
        return self

    @model_serializer(mode="wrap")
    def _keep_null_constant(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if self.kind == "value" and "value" not in data:
            data["value"] = None  # {value: null} is a constant, not a missing domain
        return data

    @property
    def kind(self) -> str:
        """Which domain this entry is: uniform, choice, space, ..."""
        return next(iter(self.model_fields_set))

    @property
    def arguments(self) -> Any:
        """The entry's value: the argument list, the constant, or the nested space."""
        return getattr(self, self.kind)


SearchSpaceSpec = Annotated[dict[str, SearchDomain], AfterValidator(_check_top_level)]


_NUMBER_BYTES = 24
"""The longest JSON a sampled number can take (repr of a float: -2.2250738585072014e-308)."""


def grid_points(space: Mapping[str, SearchDomain]) -> int:
    """How many grid points the space expands to: the product of every grid's length."""
    points = 1
    for domain in space.values():
        if domain.kind == "grid":
            points *= len(domain.arguments)
        elif domain.space is not None:
            points *= grid_points(domain.space)
    return points


def worst_config_bytes(space: Mapping[str, SearchDomain]) -> int:
    """The most bytes a trial's config can take as JSON (as KUBETUNE_CONFIG writes it)."""
    size = 2  # {}
    for i, (name, domain) in enumerate(space.items()):
        size += (2 if i else 0) + len(json.dumps(name)) + 2  # ", " and "name":
        if domain.space is not None:
            size += worst_config_bytes(domain.space)
        elif domain.kind in ("choice", "grid"):
            size += max(len(json.dumps(v, sort_keys=True)) for v in domain.arguments)
        elif domain.kind == "value":
            size += len(json.dumps(domain.value, sort_keys=True))
        else:
            size += _NUMBER_BYTES
    return size
