"""Pieces every kubetune resource model shares.

The pydantic models are the CRD schema, so the conventions they share live in
one place: camelCase JSON names, strict specs (a typo in a user's manifest is an
error, not a silently ignored field), lenient statuses (an older operator must
still read a status written by a newer one), and one translation from pydantic's
errors to a single readable message the operator can put on the resource.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

GROUP: Final = "kubetune.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = "kubetune.io/v1alpha1"


class SpecModel(BaseModel):
    """Base of user-written objects: unknown fields are rejected, so typos surface."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
    )


class StatusModel(BaseModel):
    """Base of operator-written objects: unknown fields are ignored for forward compatibility."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def merge_patch(self) -> dict[str, Any]:
        """This object as a JSON merge patch (RFC 7386), in the API's camelCase JSON.

        Only the fields that were set go into the patch, so a field the writer does not
        touch keeps its stored value. A field set to None is written as null, which the
        patch reads as delete: None means "clear it", never "leave it". Lists are written
        whole (a merge patch replaces them), nulls inside them included; the apiserver
        prunes those as it stores the object.
        """
        return self.model_dump(by_alias=True, exclude_unset=True, mode="json")


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _non_finite_as_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    return value


FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
"""A float that JSON (and so the apiserver) can carry: no NaN, no infinity."""

ObservedFloat = Annotated[float | None, BeforeValidator(_finite_or_none)]
"""An observed value; NaN or infinity becomes None (absent), which JSON can carry."""

MetricValues = Annotated[dict[str, FiniteFloat | None], BeforeValidator(_non_finite_as_none)]
"""Latest value per metric name. A non-finite value becomes None, which a merge patch
writes as null: the metric's stale stored value is removed rather than kept."""


NON_FINITE_NAMES: Final = ("NaN", "Infinity", "-Infinity")
"""How a non-finite value is written where the API needs a string: JSON has no NaN."""

NonFiniteValues = Annotated[
    dict[str, Literal["NaN", "Infinity", "-Infinity"] | None],
    Field(json_schema_extra={"additionalProperties": {"type": "string",
                                                      "enum": list(NON_FINITE_NAMES)}}),
]
"""Per metric name, its latest value when that is not finite ("NaN", "Infinity" or
"-Infinity"). None (a null in the merge patch) removes a metric that is finite again."""


def _check_rfc3339(value: str) -> str:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"must be an RFC 3339 time like 2024-05-01T12:00:00Z, got {value!r}"
        ) from None
    if parsed.tzinfo is None:
        raise ValueError(f"must carry a time zone (end in Z), got {value!r}")
    return value


Timestamp = Annotated[
    str, AfterValidator(_check_rfc3339), Field(json_schema_extra={"format": "date-time"})
]
"""An RFC 3339 time string, as Kubernetes writes them."""


def to_rfc3339(moment: datetime) -> str:
    """Format an aware datetime the way Kubernetes does: UTC, seconds, trailing Z."""
    if moment.tzinfo is None:
        raise ValueError("to_rfc3339 needs an aware datetime (tzinfo set)")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(StatusModel):
    """One observation of the resource's state, in the standard Kubernetes shape."""

    type: str = Field(
        description="What the condition is about, in CamelCase (for example Running)."
    )
    status: ConditionStatus = Field(
        description="Whether the condition holds: True, False or Unknown."
    )
    reason: str | None = Field(
        default=None, description="A CamelCase word for why the condition last changed."
    )
    message: str | None = Field(
        default=None, description="What happened, in words, for the person reading it."
    )
    last_transition_time: Timestamp | None = Field(
        default=None, description="When the status last changed (RFC 3339)."
    )
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        description="The spec generation (metadata.generation) the condition was set from.",
    )


class SpecError(ValueError):
    """A user-fixable problem in a spec: which field, and what is wrong with it.

    str() reads ``spec.searchSpace.lr: loguniform needs 0 < low < high, got [0, 1]``,
    ready to put on the resource's status and in an Event.
    """

    def __init__(self, field: str, message: str, *, others: Sequence[tuple[str, str]] = ()) -> None:
        self.field = field
        self.message = message
        self.others = tuple(others)
        super().__init__(field, message)

    def __str__(self) -> str:
        text = f"{self.field}: {self.message}" if self.field else self.message
        if self.others:
            shown = "; ".join(f"{f}: {m}" for f, m in self.others[:3])
            more = len(self.others) - 3
            text += f" (also {shown}{f' and {more} more' if more > 0 else ''})"
        return text


def format_loc(prefix: str, loc: Iterable[int | str]) -> str:
    """Join a pydantic error location into a dotted path: spec.searchSpace.lr.uniform[0]."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else part
    return path


def _describe(error: Any) -> str:
    kind: str = error["type"]
    ctx: dict[str, Any] = error.get("ctx") or {}
    got = error.get("input")
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field; check its spelling and indentation"
    if kind == "literal_error" or kind == "enum":
        return f"must be one of {ctx.get('expected')}, got {got!r}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<="}.get(
            kind, "<"
        )
        limit = next(iter(ctx.values()), "?")
        return f"must be {bound} {limit}, got {got!r}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be an integer, got {got!r}"
    if kind in ("float_type", "float_parsing"):
        return f"must be a number, got {got!r}"
    if kind == "finite_number":
        return f"must be a finite number, got {got!r}"
    if kind in ("string_type", "str_type"):
        return f"must be a string, got {got!r}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping (an object), got {got!r}"
    if kind == "list_type":
        return f"must be a list, got {got!r}"
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length')} item(s), got {got!r}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')}, got {got!r}"
    return f"{error['msg'][:1].lower()}{error['msg'][1:]}, got {got!r}"


def describe_validation_error(err: ValidationError, prefix: str) -> list[tuple[str, str]]:
    """Turn pydantic's errors into (field path, message) pairs a user can act on."""
    return [(format_loc(prefix, e["loc"]), _describe(e)) for e in err.errors(include_url=False)]


def spec_error(err: ValidationError, prefix: str) -> SpecError:
    """One SpecError carrying the first problem, with the rest kept in ``others``."""
    problems = describe_validation_error(err, prefix)
    field, message = problems[0]
    return SpecError(field, message, others=problems[1:])
