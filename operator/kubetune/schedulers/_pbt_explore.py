"""The random parts of Population Based Training, as Ray's pbt.py writes them, on a seeded stream.

Ray draws from the unseeded global `random` module, so the same run never
repeats. Here every draw comes from `decision_stream(seed, trial, time)`, a
`random.Random` seeded by a string (hashed with SHA-512, the same in every
process), so an exploit decision is a pure function of what is persisted and
an operator restart repeats it exactly. The draws are made in Ray's order:
the donor (`choice(upper)`), then per mutated key in the mutations' order one
`random()` against resample_probability, then `choice` of a list value, a
`shift`, a resampled domain value or a perturbation factor.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeAlias, runtime_checkable


@runtime_checkable
class Resampler(Protocol):
    """A search-space domain: draws one value from the stream it is given."""

    def sample(self, rng: random.Random) -> Any: ...


Mutation: TypeAlias = "Sequence[Any] | Resampler | Mapping[str, Mutation]"
"""What Ray's hyperparam_mutations holds per key: a value list, a domain, or a nested dict."""


def decision_stream(seed: int, trial: str, time: float) -> random.Random:
    """The stream of every draw trial `trial` makes at its perturbation check at `time`."""
    return random.Random(f"pbt:{seed}:{trial}:{time!r}")


def fill_stream(seed: int, trial: str) -> random.Random:
    """The stream that fills mutated keys missing from a trial's initial config."""
    return random.Random(f"pbt-fill:{seed}:{trial}")


def _is_list(mutation: object) -> bool:
    return isinstance(mutation, (list, tuple))


def explore(
    config: Mapping[str, Any],
    mutations: Mapping[str, Mutation],
    resample_probability: float,
    perturbation_factors: Sequence[float],
    rng: random.Random,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Ray's `_explore`: the donor's config perturbed, and what was done to each key.

    A list value is resampled with probability `resample_probability` (or when the
    current value is not in the list), else moved one index left or right,
    clamped at the ends. A domain value is resampled with that probability, else
    multiplied by one of `perturbation_factors`; a bool stays a bool and an int
    is rounded back to an int.
    """
    operations: dict[str, Any] = {}
    new_config = copy.deepcopy(dict(config))
    for key, mutation in mutations.items():
        if isinstance(mutation, Mapping):
            nested, nested_ops = explore(
                config[key], mutation, resample_probability, perturbation_factors, rng
            )
            new_config[key] = nested
            operations[key] = nested_ops
        elif _is_list(mutation):
            values = list(mutation)  # type: ignore[arg-type]
            if rng.random() < resample_probability or config[key] not in values:
                new_config[key] = copy.deepcopy(rng.choice(values))
                operations[key] = "resample"
            else:
                shift = rng.choice([-1, 1])
                old_index = values.index(config[key])
                new_index = min(max(old_index + shift, 0), len(values) - 1)
                new_config[key] = copy.deepcopy(values[new_index])
                noop = " (noop)" if old_index == new_index else ""
                operations[key] = f"shift {'left' if shift == -1 else 'right'}{noop}"
        elif isinstance(mutation, Resampler):
            if rng.random() < resample_probability:
                new_config[key] = mutation.sample(rng)
                operations[key] = "resample"
            else:
                factor = rng.choice(list(perturbation_factors))
                new_config[key] = config[key] * factor
                operations[key] = f"* {factor}"
            if isinstance(config[key], bool):
                new_config[key] = bool(new_config[key])
            elif isinstance(config[key], int):
                new_config[key] = round(new_config[key])
        else:
            raise ValueError(
                f"hyperparam_mutations[{key!r}] must be a list of values, a search-space "
                f"domain or a nested mapping (got {type(mutation).__name__})"
            )
    return new_config, operations


def fill_config(
    config: Mapping[str, Any], mutations: Mapping[str, Mutation], rng: random.Random
) -> dict[str, Any]:
    """Ray's `_fill_config`: mutated keys the config lacks, drawn from their mutation."""
    filled = copy.deepcopy(dict(config))
    for key, mutation in mutations.items():
        if key in filled:
            continue
        if isinstance(mutation, Mapping):
            filled[key] = fill_config({}, mutation, rng)
        elif _is_list(mutation):
            filled[key] = copy.deepcopy(rng.choice(list(mutation)))  # type: ignore[arg-type]
        elif isinstance(mutation, Resampler):
            filled[key] = mutation.sample(rng)
    return filled


def quantiles(
    scores: Sequence[tuple[str, float]], quantile_fraction: float
) -> tuple[list[str], list[str]]:
    """Ray's `_quantiles`: the (lower, upper) quantile of trials by score, in maximise space.

    `scores` lists the trials that take part, in the order they were added. The
    sort is stable, so ties keep that order. The quantile size is
    ceil(n * quantile_fraction), capped at floor(n / 2); fewer than 2 trials give
    two empty quantiles.
    """
    ranked = [trial for trial, _ in sorted(scores, key=lambda item: item[1])]
    if len(ranked) <= 1:
        return [], []
    size = math.ceil(len(ranked) * quantile_fraction)
    if size > len(ranked) / 2:
        size = len(ranked) // 2
    return ranked[:size], ranked[len(ranked) - size :]
