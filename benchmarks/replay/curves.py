"""Curve sets: what each configuration of a search space would report, step by step.

A `CurvePool` is one seed's stream of configurations: row i is the i-th
configuration every method draws (common random numbers), with its value after
each step and the seconds each step takes. The target is the top 1% of final
values of the search space, not of the pool.
"""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from benchmarks.replay.mfhartmann import MFHartmann

Array = npt.NDArray[np.float64]

DIGITS_TABLE = Path(__file__).resolve().parents[1] / "data" / "digits_curves.csv.gz"
TARGET_QUANTILE = 0.01
"""The target: the best 1% of final values."""


@dataclass(frozen=True)
class CurvePool:
    name: str
    mode: str
    """'min' or 'max': the direction of the metric."""
    values: Array
    """n x max_t: the metric after steps 1..max_t."""
    step_seconds: Array
    """n x max_t: the time each step takes."""
    target: float
    """A trial whose final value reaches this (<= for min, >= for max) meets the target."""

    @property
    def max_t(self) -> int:
        return int(self.values.shape[1])

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def meets_target(self, value: float) -> bool:
        return value <= self.target if self.mode == "min" else value >= self.target

    def hindsight(self) -> CurvePool:
        """Every step reports the final value: a scheduler fed this ranks perfectly."""
        finals = np.repeat(self.values[:, -1:], self.max_t, axis=1)
        return replace(self, name=f"{self.name} (hindsight)", values=finals)


@dataclass(frozen=True)
class CurveSource:
    """Makes the pool of one seed; `name` is how tables and figures call it."""

    name: str
    mode: str
    max_t: int

    def pool(self, seed: int, size: int) -> CurvePool:
        raise NotImplementedError


@dataclass(frozen=True)
class MFHartmannSource(CurveSource):
    """Fresh uniform configurations per seed; one step per fidelity z = 1..max_t."""

    function: MFHartmann

    @classmethod
    def make(cls, dims: int, preset: str, max_t: int) -> MFHartmannSource:
        return cls(name=f"mfh{dims}-{preset}", mode="min", max_t=max_t,
                   function=MFHartmann.preset(dims, max_t, preset))

    def target(self) -> float:
        """The 1% quantile of f(x, z_max) over 10^6 uniform x (a fixed sample)."""
        rng = np.random.default_rng(0)
        finals = self.function.final(rng.random((1_000_000, self.function.dims)))
        return float(np.quantile(finals, TARGET_QUANTILE))

    def pool(self, seed: int, size: int) -> CurvePool:
        rng = np.random.default_rng([seed, self.function.dims, 7])
        x = rng.random((size, self.function.dims))
        values = self.function.curves(x, rng)
        return CurvePool(self.name, self.mode, values, np.ones_like(values),
                         _mfh_target(self))


_TARGETS: dict[MFHartmannSource, float] = {}


def _mfh_target(source: MFHartmannSource) -> float:
    if source not in _TARGETS:
        _TARGETS[source] = source.target()
    return _TARGETS[source]


@dataclass(frozen=True)
class RecordedTable:
    """Recorded curves: metric and seconds per (config, step)."""

    values: Array
    seconds: Array
    params: list[dict[str, str]]


def load_digits_table(path: Path = DIGITS_TABLE, metric: str = "accuracy") -> RecordedTable:
    with gzip.open(path, "rt", newline="") as f:
        rows = list(csv.DictReader(f))
    configs = sorted({int(r["config"]) for r in rows})
    epochs = max(int(r["epoch"]) for r in rows)
    index = {c: i for i, c in enumerate(configs)}
    values = np.full((len(configs), epochs), np.nan)
    seconds = np.full((len(configs), epochs), np.nan)
    params: list[dict[str, str]] = [{} for _ in configs]
    for r in rows:
        i, e = index[int(r["config"])], int(r["epoch"]) - 1
        values[i, e] = float(r[metric])
        seconds[i, e] = float(r["seconds"])
        params[i] = {k: v for k, v in r.items()
                     if k not in ("config", "epoch", "accuracy", "loss", "seconds")}
    if np.isnan(values).any():
        raise ValueError(f"{path} lacks some (config, epoch) rows")
    return RecordedTable(values, seconds, params)


@dataclass(frozen=True)
class RecordedSource(CurveSource):
    """Configurations drawn with replacement from a recorded table, per seed."""

    table: RecordedTable | None = None

    @classmethod
    def digits(cls, path: Path = DIGITS_TABLE) -> RecordedSource:
        table = load_digits_table(path)
        return cls(name="digits-mlp", mode="max", max_t=int(table.values.shape[1]), table=table)

    def target(self) -> float:
        assert self.table is not None
        return float(np.quantile(self.table.values[:, -1], 1 - TARGET_QUANTILE))

    def pool(self, seed: int, size: int) -> CurvePool:
        assert self.table is not None
        rng = np.random.default_rng([seed, 11])
        rows = rng.integers(0, self.table.values.shape[0], size)
        return CurvePool(self.name, self.mode, self.table.values[rows],
                         self.table.seconds[rows], self.target())

    def __hash__(self) -> int:
        return hash(self.name)
