"""Trial configs as a pure function of (seed, index), in Ray's BasicVariantGenerator order.

The operator may restart at any moment and must rebuild the same trials, so no
sampler keeps state between calls: trial ``index`` gets grid point
``index % grid_size`` (grid parameters sorted by key path, the first varying
fastest, exactly as Ray enumerates them) and fresh random draws seeded from
``(seed, index, parameter path)``. A parameter's draws therefore also survive
adding or removing other parameters.
"""

from __future__ import annotations

import copy
import json
import math
import random
from typing import Any

from kubetune.api.experiment import TuneExperimentSpec
from kubetune.api.searchspace import env_name
from kubetune.search.domains import Grid, SearchSpace, space_from_spec


def parameter_stream(seed: int, index: int, path: tuple[str, ...]) -> random.Random:
    """The random stream of one parameter of one trial.

    Seeding random.Random with a str hashes it with SHA-512, the same in every
    process and Python version (unlike hash(), which is salted per process).
    """
    return random.Random(f"{seed}:{index}:{'.'.join(path)}")


class BasicVariantSampler:
    """Ray's BasicVariantGenerator as random access: config(i) for any trial index i."""

    def __init__(self, space: SearchSpace, seed: int, num_samples: int) -> None:
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.space = space
        self.seed = seed
        self.num_samples = num_samples
        self._grid = space.grid_parameters()
        self.grid_size = math.prod(len(grid.values) for _, grid in self._grid)
        self.total_trials = num_samples * self.grid_size

    @classmethod
    def from_spec(cls, spec: TuneExperimentSpec) -> BasicVariantSampler:
        """The sampler of an experiment: its searchSpace, searchAlgorithm.seed and numSamples."""
        return cls(space_from_spec(spec.search_space), spec.search_algorithm.seed, spec.num_samples)

    def grid_point(self, index: int) -> dict[tuple[str, ...], Any]:
        """The grid values of trial ``index``, by parameter path."""
        point = index % self.grid_size
        values: dict[tuple[str, ...], Any] = {}
        for path, grid in self._grid:
            point, digit = divmod(point, len(grid.values))
            values[path] = grid.values[digit]
        return values

    def config(self, index: int) -> dict[str, Any]:
        """The config of trial ``index`` (0 <= index < total_trials); the same on every call."""
        if not 0 <= index < self.total_trials:
            raise IndexError(
                f"trial index {index} is outside 0..{self.total_trials - 1} "
                f"({self.num_samples} samples x {self.grid_size} grid points)"
            )
        return self._resolve(self.space, (), self.grid_point(index), index)

    def _resolve(
        self,
        space: SearchSpace,
        prefix: tuple[str, ...],
        grid_values: dict[tuple[str, ...], Any],
        index: int,
    ) -> dict[str, Any]:
        config: dict[str, Any] = {}
        for name, parameter in space.parameters.items():
            path = (*prefix, name)
            if isinstance(parameter, SearchSpace):
                config[name] = self._resolve(parameter, path, grid_values, index)
            elif isinstance(parameter, Grid):
                config[name] = copy.deepcopy(grid_values[path])
            else:
                config[name] = parameter.sample(parameter_stream(self.seed, index, path))
        return config


def _leaves(value: Any, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], Any]]:
    if isinstance(value, dict) and value:
        return [leaf for key, inner in value.items() for leaf in _leaves(inner, (*path, str(key)))]
    return [(path, value)]


def flatten_params(config: dict[str, Any]) -> dict[str, str]:
    """A config as environment-variable style names and string values.

    Nested keys are joined by "_", upper-cased, other characters become "_"
    (optimizer.momentum -> OPTIMIZER_MOMENTUM). Strings pass unchanged; other
    values are JSON (0.001, true, null, [1, 2]). Two keys that map to the same
    name raise ValueError; validated search spaces never produce them.
    """
    flat: dict[str, str] = {}
    origin: dict[str, tuple[str, ...]] = {}
    for path, value in _leaves(config, ()):
        if not path:
            continue
        name = env_name(path)
        if name in origin:
            raise ValueError(
                f"{'.'.join(origin[name])} and {'.'.join(path)} both flatten to {name}"
            )
        origin[name] = path
        flat[name] = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return flat
