"""Suggestion latency of kubetune's Optuna search: history build + ask, at 100, 1,000 and 5,000 trials.

    .venv/bin/python -m benchmarks.optuna_latency            # every sampler, 100 / 1,000 / 5,000
    .venv/bin/python -m benchmarks.optuna_latency --quick    # tpe and random at 100 and 1,000

What the operator pays when it creates trial i: build the HistoryRecords of the
trials before it from their TuneTrials, then `OptunaSuggester.suggest(i, history)`.
The history holds N finished trials (two in three completed max_t, one in three
stopped by ASHA with its rung values) and 4 running ones, over a 4-parameter
space (log-uniform float, uniform float, randint, choice). Three ways are timed:

- rebuild: a fresh suggester, `reuse=False` (the study built from scratch);
- first call: a fresh suggester with its cache, as after an operator restart;
- next tick: the same suggester asked for trial i+1 after one running trial
  finished and a new one started (the steady state; the cache rebuilds only
  the records that changed).

Each figure is the median of --repeats calls; imports (torch for GP, scipy for
QMC) are paid once before timing. A sampler the suggester refuses at a size
(GP past its cap) is reported with its message. The table goes to
benchmarks/results/optuna_latency.md.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "optuna_latency.md"
SPACE: dict[str, Any] = {
    "lr": {"loguniform": [1e-5, 1e-1]},
    "momentum": {"uniform": [0.5, 0.99]},
    "layers": {"randint": [1, 5]},
    "optimizer": {"choice": ["adam", "sgd", "rmsprop"]},
}
RUNNING = 4
RUNGS = (1, 3, 9, 27)
MAX_T = 81


def raw_trials(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """What the operator reads of n + RUNNING TuneTrials: config, phase, value, rung values."""
    rng = random.Random(seed)
    out = []
    for i in range(n + RUNNING):
        config: dict[str, Any] = {"lr": math.exp(rng.uniform(math.log(1e-5), math.log(1e-1))),
                  "momentum": rng.uniform(0.5, 0.99), "layers": rng.randint(1, 4),
                  "optimizer": rng.choice(["adam", "sgd", "rmsprop"])}
        lr, momentum = float(config["lr"]), float(config["momentum"])
        final = (math.log10(lr) + 3) ** 2 + (momentum - 0.9) ** 2 + rng.random()
        curve = {step: final + 2.0 / step for step in (*RUNGS, MAX_T)}
        if i >= n:
            phase, stop = "Running", 3
        elif i % 3 == 2:
            phase, stop = "Pruned", rng.choice(RUNGS)
        else:
            phase, stop = "Succeeded", MAX_T
        rungs = {s: v for s, v in curve.items() if s <= stop}
        out.append({"index": i, "config": config, "phase": phase,
                    "value": None if phase == "Running" else rungs[stop], "rungs": rungs})
    return out


def history(raw: list[dict[str, Any]]) -> list[Any]:
    """HistoryRecords as the operator builds them from the TuneTrials."""
    from kubetune.search.optuna import HistoryRecord

    state: dict[str, Any] = {"Succeeded": "complete", "Pruned": "pruned", "Running": "running",
                             "Failed": "failed"}
    return [HistoryRecord(index=t["index"], config=t["config"], state=state[t["phase"]],
                          value=t["value"], intermediate=dict(t["rungs"])) for t in raw]


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def measure(sampler: str, n: int, repeats: int) -> dict[str, Any]:
    from kubetune.api.common import SpecError
    from kubetune.search.optuna import OptunaSuggester

    raw = raw_trials(n)
    index = n + RUNNING
    # The next tick: the first running trial finished, a new one is running.
    raw_next = [dict(t) for t in raw] + raw_trials(n + 1)[-1:]
    raw_next[n] = {**raw_next[n], "phase": "Succeeded", "value": 1.0,
                   "rungs": {**raw_next[n]["rungs"], 9: 1.2, 27: 1.1, MAX_T: 1.0}}
    raw_next[-1] = {**raw_next[-1], "index": index}
    row: dict[str, Any] = {"sampler": sampler, "n": n}
    build: list[float] = []
    rebuild: list[float] = []
    first: list[float] = []
    tick: list[float] = []
    try:
        for _ in range(repeats):
            started = time.perf_counter()
            records = history(raw)
            build.append(time.perf_counter() - started)
            fresh = OptunaSuggester(sampler, SPACE, "min", 7)
            started = time.perf_counter()
            fresh.suggest(index, records, reuse=False)
            rebuild.append(time.perf_counter() - started)
            cached = OptunaSuggester(sampler, SPACE, "min", 7)
            started = time.perf_counter()
            cached.suggest(index, records)
            first.append(time.perf_counter() - started)
            records_next = history(raw_next)
            started = time.perf_counter()
            cached.suggest(index + 1, records_next)
            tick.append(time.perf_counter() - started)
    except SpecError as err:
        row["refused"] = str(err)
        return row
    row.update(build=statistics.median(build), rebuild=statistics.median(rebuild),
               first=statistics.median(first), tick=statistics.median(tick))
    return row


def warm_up(sampler: str) -> float:
    """Pay the sampler's imports (torch, scipy) once; the seconds it took."""
    from kubetune.search.optuna import OptunaSuggester

    records = history(raw_trials(20))
    return _timed(lambda: OptunaSuggester(sampler, SPACE, "min", 7).suggest(24, records))[0]


def _ms(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{1000 * x:,.0f} ms" if x >= 0.01 else f"{1000 * x:.1f} ms"


def table(rows: list[dict[str, Any]], warm: dict[str, float]) -> str:
    lines = [
        "| sampler | finished trials | history build | ask, plain rebuild | ask, first call | "
        "ask, next tick (cache) | build + next tick |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "refused" in r:
            lines.append(f"| {r['sampler']} | {r['n']:,} | refused: {r['refused']} | | | | |")
            continue
        lines.append(f"| {r['sampler']} | {r['n']:,} | {_ms(r['build'])} | {_ms(r['rebuild'])} | "
                     f"{_ms(r['first'])} | {_ms(r['tick'])} | {_ms(r['build'] + r['tick'])} |")
    lines.append("")
    lines.append("First ask in the process (imports included), 20 trials: " + ", ".join(
        f"{s} {_ms(t)}" for s, t in warm.items()))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    from kubetune.search.optuna import SAMPLERS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[100, 1000, 5000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.samplers, args.sizes, args.repeats = ["tpe", "random"], [100, 1000], 1
    rows: list[dict[str, Any]] = []
    warm: dict[str, float] = {}
    for sampler in args.samplers:
        if sampler not in SAMPLERS:
            rows.append({"sampler": sampler, "n": 0,
                         "refused": f"not one of kubetune's samplers ({', '.join(SAMPLERS)})"})
            continue
        warm[sampler] = warm_up(sampler)
        for n in args.sizes:
            repeats = 1 if sampler == "gp" else args.repeats
            rows.append(measure(sampler, n, repeats))
            print(rows[-1], flush=True)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    text = (f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cores, "
            f"load average at the end {load}; repeats {args.repeats} (gp: 1)\n\n"
            + table(rows, warm))
    if not args.quick:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
