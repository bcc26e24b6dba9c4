"""Checks of the constructor arguments every scheduler shares, with messages that name the rule."""

from __future__ import annotations


def check_int(name: str, value: object, *, minimum: int) -> int:
    """`value` if it is an integer (not a bool) >= minimum, else ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum} (got {value!r})")
    return value


def check_budget(max_t: int, grace_period: int) -> None:
    """Validate the (max_t, grace_period) pair every early-stopping rule shares."""
    check_int("max_t", max_t, minimum=1)
    check_int("grace_period", grace_period, minimum=1)
    if grace_period > max_t:
        raise ValueError(
            f"grace_period must be <= max_t (got grace_period={grace_period}, max_t={max_t})"
        )
