"""Which arguments each of Ray Tune's numeric domains takes, and the rules they must meet.

One table (NUMERIC_DOMAINS) and one check (numeric_domain_problem) serve the
model's validation, the CEL rules published in the CRD and the samplers'
grid arithmetic (grid_index), so all three refuse exactly what Ray refuses.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DomainShape:
    """How a numeric domain's argument list reads, and which rules it obeys."""

    usage: str
    arities: tuple[int, ...]
    integer: bool = False
    bounded: bool = True  # [low, high, ...]; otherwise [mean, sd, ...]
    log: bool = False
    q_index: int | None = None
    base_index: int | None = None


NUMERIC_DOMAINS: dict[str, DomainShape] = {
    "uniform": DomainShape("[low, high]", (2,)),
    "quniform": DomainShape("[low, high, q]", (3,), q_index=2),
    "loguniform": DomainShape("[low, high] or [low, high, base]", (2, 3), log=True, base_index=2),
    "qloguniform": DomainShape(
        "[low, high, q] or [low, high, q, base]", (3, 4), log=True, q_index=2, base_index=3
    ),
    "randn": DomainShape("[], [mean] or [mean, sd]", (0, 1, 2), bounded=False),
    "qrandn": DomainShape("[mean, sd, q]", (3,), bounded=False, q_index=2),
    "randint": DomainShape("[low, high]", (2,), integer=True),
    "qrandint": DomainShape("[low, high] or [low, high, q]", (2, 3), integer=True, q_index=2),
    "lograndint": DomainShape(
        "[low, high] or [low, high, base]", (2, 3), integer=True, log=True, base_index=2
    ),
    "qlograndint": DomainShape(
        "[low, high, q] or [low, high, q, base]",
        (3, 4),
        integer=True,
        log=True,
        q_index=2,
        base_index=3,
    ),
}
VALUE_DOMAINS = ("choice", "grid", "value", "space")
DOMAIN_KINDS: tuple[str, ...] = (*NUMERIC_DOMAINS, *VALUE_DOMAINS)


def is_multiple(value: float, q: float) -> bool:
    """Whether value lies on q's grid, with Ray's tolerance (math.isclose)."""
    scaled = value / q
    return math.isclose(scaled, round(scaled))


def grid_index(bound: float, q: float, *, upper: bool) -> int:
    """bound's index on the grid of multiples of q, rounded inwards (as Ray does)."""
    scaled = bound / q
    nearest = round(scaled)
    if math.isclose(scaled, nearest):
        return nearest
    return math.floor(scaled) if upper else math.ceil(scaled)


def _show(args: Sequence[Any]) -> str:
    # Whole floats print as integers: the user wrote [0, 1], strict float parsing made [0.0, 1.0].
    return json.dumps([_plain(a) for a in args])


def _plain(number: Any) -> Any:
    if isinstance(number, float) and number.is_integer() and abs(number) < 1e15:
        return int(number)
    return number


def numeric_domain_problem(kind: str, args: Sequence[float]) -> str | None:
    """What is wrong with a numeric domain's arguments, or None when Ray would accept them."""
    shape = NUMERIC_DOMAINS[kind]
    got = _show(args)
    if len(args) not in shape.arities:
        return f"{kind} takes {shape.usage}, got {got}"
    q = args[shape.q_index] if shape.q_index is not None and len(args) > shape.q_index else None
    base = (
        args[shape.base_index]
        if shape.base_index is not None and len(args) > shape.base_index
        else None
    )
    if shape.bounded:
        low, high = args[0], args[1]
        if shape.log and not 0 < low < high:
            return f"{kind} needs 0 < low < high, got {got}"
        if not low < high:
            return f"{kind} needs low < high, got {got}"
    elif len(args) > 1 and not args[1] > 0:
        return f"{kind} needs sd > 0, got {got}"
    if q is not None and not q > 0:
        return f"{kind} needs q > 0, got {got}"
    if base is not None and not base > 1:
        return f"{kind} needs a logarithm base > 1, got {got}"
    if q is not None and shape.bounded:
        if shape.integer:
            first = grid_index(low, q, upper=False)
            last = grid_index(high, q, upper=True)
            if last < first:
                return f"{kind} has no multiple of q={q} between low and high, got {got}"
        else:
            for name, bound in (("low", low), ("high", high)):
                if not is_multiple(bound, q):
                    return (
                        f"{kind} needs low and high to be multiples of q (as Ray does); "
                        f"{name}={bound} is not a multiple of q={q}, got {got}"
                    )
    return None
