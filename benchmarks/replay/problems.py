"""Search problems: the curve set behind a search space, for methods that choose configurations.

The ASHA comparison replays a fixed stream of configurations (curves.py). A
model-based searcher chooses each configuration from what it has seen, so the
curve must be known for any point of the search space:

- mfh6-moderate: MFHartmann6 at the configuration itself. The low-fidelity
  noise of trial i is drawn from (seed, i), so trial i meets the same noise
  whichever method runs it (common random numbers).
- digits-mlp: the recorded curve of the nearest recorded configuration (a
  tabular benchmark with nearest-neighbour lookup). Every hyperparameter is
  scaled to [0, 1] (lr on a log scale, batch size, hidden size and layers by
  their rank, optimizer 0/1) and the distance is Euclidean.

Both keep the curve tables' targets (the best 1% of final values).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.replay.curves import MFHartmannSource, RecordedSource, RecordedTable, _mfh_target
from benchmarks.replay.methods import ASHAConfig

Array = npt.NDArray[np.float64]

BATCH_SIZES = (32, 64, 128, 256)
HIDDEN_SIZES = (16, 32, 64, 128, 256)


@dataclass(frozen=True)
class SearchProblem:
    name: str
    mode: str
    max_t: int
    asha: ASHAConfig
    space: dict[str, Any]
    """The searchSpace as a TuneExperiment spec writes it."""

    def ray_space(self) -> dict[str, Any]:
        """The same space in Ray Tune's domains."""
        raise NotImplementedError

    @property
    def target(self) -> float:
        raise NotImplementedError

    @property
    def reference_step_seconds(self) -> float:
        """The median step time over the space (the realistic setting rescales by it)."""
        return 1.0

    def curve(self, seed: int, index: int, config: dict[str, Any]) -> tuple[Array, Array]:
        """Trial ``index``'s value after each step and each step's seconds, for ``config``."""
        raise NotImplementedError

    def final(self, config: dict[str, Any]) -> float:
        """The noise-free value ``config`` would reach at max_t (how good the suggestion is)."""
        raise NotImplementedError

    def meets_target(self, value: float) -> bool:
        return value <= self.target if self.mode == "min" else value >= self.target


@dataclass(frozen=True)
class HartmannProblem(SearchProblem):
    source: MFHartmannSource = field(default_factory=lambda: MFHartmannSource.make(6, "moderate", 81))

    @classmethod
    def make(cls) -> HartmannProblem:
        source = MFHartmannSource.make(6, "moderate", 81)
        space = {f"x{j}": {"uniform": [0.0, 1.0]} for j in range(source.function.dims)}
        return cls(source.name, "min", 81, ASHAConfig(81, 1, 3), space, source)

    def ray_space(self) -> dict[str, Any]:
        from ray import tune

        return {name: tune.uniform(0.0, 1.0) for name in self.space}

    @property
    def target(self) -> float:
        return _mfh_target(self.source)

    def point(self, config: dict[str, Any]) -> Array:
        return np.array([[float(config[name]) for name in self.space]])

    def final(self, config: dict[str, Any]) -> float:
        return float(self.source.function.final(self.point(config))[0])

    def curve(self, seed: int, index: int, config: dict[str, Any]) -> tuple[Array, Array]:
        rng = np.random.default_rng([seed, index, 13])
        values = self.source.function.curves(self.point(config), rng)[0]
        return values, np.ones_like(values)


def _rank(value: Any, levels: tuple[int, ...]) -> float:
    return levels.index(int(value)) / (len(levels) - 1)


def digits_features(params: dict[str, Any]) -> list[float]:
    """A digits configuration as a point of [0, 1]^7 (the recorded table's params are strings)."""
    return [
        (math.log(float(params["lr"])) - math.log(1e-4)) / (math.log(1.0) - math.log(1e-4)),
        1.0 if params["optimizer"] == "adam" else 0.0,
        (float(params["momentum"]) - 0.5) / 0.49,
        _rank(params["batch_size"], BATCH_SIZES),
        _rank(params["hidden_size"], HIDDEN_SIZES),
        (int(params["layers"]) - 1) / 2,
        float(params["dropout"]) / 0.5,
    ]


@dataclass(frozen=True)
class DigitsProblem(SearchProblem):
    source: RecordedSource | None = None

    @classmethod
    def make(cls) -> DigitsProblem:
        source = RecordedSource.digits()
        # The space benchmarks/record_digits_curves.py drew its configurations from.
        space = {
            "lr": {"loguniform": [1e-4, 1.0]},
            "optimizer": {"choice": ["sgd", "adam"]},
            "momentum": {"uniform": [0.5, 0.99]},
            "batch_size": {"choice": list(BATCH_SIZES)},
            "hidden_size": {"choice": list(HIDDEN_SIZES)},
            "layers": {"randint": [1, 4]},
            "dropout": {"uniform": [0.0, 0.5]},
        }
        return cls(source.name, "max", source.max_t, ASHAConfig(source.max_t, 1, 3), space, source)

    def ray_space(self) -> dict[str, Any]:
        from ray import tune

        return {
            "lr": tune.loguniform(1e-4, 1.0),
            "optimizer": tune.choice(["sgd", "adam"]),
            "momentum": tune.uniform(0.5, 0.99),
            "batch_size": tune.choice(list(BATCH_SIZES)),
            "hidden_size": tune.choice(list(HIDDEN_SIZES)),
            "layers": tune.randint(1, 4),
            "dropout": tune.uniform(0.0, 0.5),
        }

    @property
    def table(self) -> RecordedTable:
        assert self.source is not None and self.source.table is not None
        return self.source.table

    @cached_property
    def _features(self) -> Array:
        return np.array([digits_features(p) for p in self.table.params])

    @property
    def target(self) -> float:
        assert self.source is not None
        return self.source.target()

    @property
    def reference_step_seconds(self) -> float:
        return float(np.median(self.table.seconds))

    def row(self, config: dict[str, Any]) -> int:
        """The recorded configuration nearest to ``config``."""
        d = self._features - np.array(digits_features(config))[None, :]
        return int(np.argmin(np.einsum("ij,ij->i", d, d)))

    def final(self, config: dict[str, Any]) -> float:
        return float(self.table.values[self.row(config), -1])

    def curve(self, seed: int, index: int, config: dict[str, Any]) -> tuple[Array, Array]:
        row = self.row(config)
        return self.table.values[row], self.table.seconds[row]

    def __hash__(self) -> int:
        return hash(self.name)


def problems() -> dict[str, SearchProblem]:
    return {p.name: p for p in (HartmannProblem.make(), DigitsProblem.make())}
