"""The runs of the replay benchmark: which curve sets, settings, worker counts and seeds.

Each cell runs every method on the same pools (one per seed). Our ASHA always
runs with Ray's scheduler as a shadow fed the same calls, which counts the
decisions on which the two differ. "oracle" is our ASHA on the hindsight pool
(every step reports the final value): perfect ranking with the same rungs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

from benchmarks.replay.curves import CurveSource, MFHartmannSource, RecordedSource
from benchmarks.replay.methods import ASHAConfig, make_method
from benchmarks.replay.simulator import IDEAL, REALISTIC, Setting, Simulation

SETTINGS = {"ideal": IDEAL, "realistic": REALISTIC}
METHODS = ("kubetune", "ray", "optuna", "random", "oracle")
POOL_SIZE = 8000


@dataclass(frozen=True)
class Benchmark:
    source: Callable[[], CurveSource]
    asha: ASHAConfig


BENCHMARKS: dict[str, Benchmark] = {
    "mfh6-moderate": Benchmark(lambda: MFHartmannSource.make(6, "moderate", 81), ASHAConfig(81, 1, 3)),
    "mfh6-good": Benchmark(lambda: MFHartmannSource.make(6, "good", 81), ASHAConfig(81, 1, 3)),
    "mfh6-bad": Benchmark(lambda: MFHartmannSource.make(6, "bad", 81), ASHAConfig(81, 1, 3)),
    "mfh3-moderate": Benchmark(lambda: MFHartmannSource.make(3, "moderate", 81), ASHAConfig(81, 1, 3)),
    "digits-mlp": Benchmark(RecordedSource.digits, ASHAConfig(27, 1, 3)),
}


@dataclass(frozen=True)
class Cell:
    benchmark: str
    setting: str
    workers: int
    median_step_seconds: float | None = None
    """Overrides the setting's step time (the overshoot sweep)."""
    methods: tuple[str, ...] = METHODS
    variant: str = ""
    """A named change of the ASHA settings (our ASHA only), e.g. 'grace 9'."""
    asha: ASHAConfig | None = None

    @property
    def simulated_setting(self) -> Setting:
        base = SETTINGS[self.setting]
        if self.median_step_seconds is None:
            return base
        return replace(base, median_step_seconds=self.median_step_seconds)


def default_cells() -> list[Cell]:
    cells = [Cell(b, s, 16) for b in BENCHMARKS for s in SETTINGS]
    for b in ("mfh6-moderate", "digits-mlp"):
        cells += [Cell(b, "ideal", w) for w in (1, 4, 64)]
    cells += [Cell("mfh6-moderate", "realistic", 16, step, ("kubetune",)) for step in (2.0, 5.0, 30.0)]
    return cells + variant_cells()


def variant_cells() -> list[Cell]:
    """Our ASHA with other rungs on the benchmark with the worst low-rung ranking."""
    variants = {"grace 3": ASHAConfig(81, 3, 3), "grace 9": ASHAConfig(81, 9, 3),
                "brackets 2": ASHAConfig(81, 1, 3, 2), "brackets 3": ASHAConfig(81, 1, 3, 3),
                "brackets 4": ASHAConfig(81, 1, 3, 4)}
    return [Cell(bench, "ideal", 16, methods=("kubetune", "oracle"), variant=name, asha=cfg)
            for bench in ("mfh6-moderate", "mfh6-good") for name, cfg in variants.items()]


def run_cell(cell: Cell, seeds: Iterable[int]) -> Iterator[dict[str, Any]]:
    bench = BENCHMARKS[cell.benchmark]
    asha = cell.asha or bench.asha
    source = bench.source()
    setting = cell.simulated_setting
    for seed in seeds:
        pool = source.pool(seed, POOL_SIZE)
        for name in cell.methods:
            scheduler = "kubetune" if name == "oracle" else name
            replayed = pool.hindsight() if name == "oracle" else pool
            shadow = (make_method("ray", pool.mode, asha)
                      if name == "kubetune" and asha.brackets == 1 else None)
            started = time.perf_counter()
            result = Simulation(replayed, make_method(scheduler, pool.mode, asha),
                                cell.workers, setting, seed, shadow=shadow).run()
            record: dict[str, Any] = {
                **{k: v for k, v in asdict(cell).items() if k not in ("methods", "asha")},
                "grace_period": asha.grace_period, "brackets": asha.brackets,
                "method": name, "seed": seed, "reached": result.reached,
                "wall_time": result.wall_time, "gpu_time": result.gpu_time,
                "gpu_allocated": result.gpu_allocated, "trials_started": result.trials_started,
                "trials_completed": result.trials_completed, "steps": result.steps,
                "stops_by_milestone": {str(k): v for k, v in sorted(result.stops_by_milestone.items())},
                "gpu_by_fate": result.gpu_by_fate,
                "decisions_compared": result.decisions.compared,
                "decision_mismatches": result.decisions.mismatches,
                "stops": len(result.overshoot_steps),
                "overshoot_steps_median": _median(result.overshoot_steps),
                "overshoot_seconds_median": _median(result.overshoot_seconds),
                "simulation_seconds": time.perf_counter() - started,
                "max_t": pool.max_t, "ceiling": asha.ceiling,
            }
            if name == "kubetune" and not setting.ideal:
                record["overshoot_steps"] = result.overshoot_steps
                record["overshoot_seconds"] = [round(x, 3) for x in result.overshoot_seconds]
            yield record


def _median(values: list[int] | list[float]) -> float | None:
    return float(statistics.median(values)) if values else None
