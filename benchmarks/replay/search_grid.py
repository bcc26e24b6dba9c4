"""`python -m benchmarks.replay.search_grid`: model-based search with ASHA, against random search, Ray and Optuna.

    python -m benchmarks.replay.search_grid                # 2 problems x W 1, 4, 16 x 5 methods x 30 seeds
    python -m benchmarks.replay.search_grid --quick        # smoke run: 2 seeds, W = 4, 150 trials at most
    python -m benchmarks.replay.search_grid --report-only  # redraw from results/replay_search_runs.json.gz

Runs are kept in results/replay_search_runs.json.gz as they finish, keyed by
(problem, W, method, seed); a rerun skips what is on file (--fresh to start
over), so the grid can be run in pieces (--problems, --workers, --methods).
The tables go to results/replay_search_tables.md. Ideal setting: every rung
value is seen when its step ends (simulator.py).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from benchmarks.replay.problems import SearchProblem, problems
from benchmarks.replay.searchers import (
    CONTROLS,
    SEARCH_METHODS,
    SearchSimulation,
    make_search_method,
)
from benchmarks.replay.simulator import IDEAL, REALISTIC, Setting

RESULTS = Path(__file__).resolve().parents[1] / "results"
RUNS = "replay_search_runs.json.gz"
TABLES = "replay_search_tables.md"
WORKERS = (1, 4, 16)
MAX_TRIALS = 8000
STARTUP = 10
"""Optuna's n_startup_trials: suggestions after these are the model's."""

_PROBLEMS: dict[str, SearchProblem] = {}


def problem(name: str) -> SearchProblem:
    if not _PROBLEMS:
        _PROBLEMS.update(problems())
    return _PROBLEMS[name]


def config_digest(configs: Iterable[dict[str, Any]]) -> str:
    text = json.dumps(list(configs), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_one(name: str, workers: int, method: str, seed: int, max_trials: int = MAX_TRIALS,
            setting: Setting = IDEAL) -> dict[str, Any]:
    """One replay run and its record."""
    prob = problem(name)
    searcher = make_search_method(method, prob, seed, workers)
    started = time.perf_counter()
    sim = SearchSimulation(prob, searcher, workers, setting, seed, max_trials=max_trials)
    result = sim.run()
    finals = [prob.final(c) for c in sim.configs]
    model = finals[STARTUP:]
    return {
        "problem": name, "workers": workers, "method": method, "seed": seed,
        "setting": setting.name, "max_trials": max_trials,
        "reached": result.reached, "gpu_time": result.gpu_time, "wall_time": result.wall_time,
        "trials_started": result.trials_started, "trials_completed": result.trials_completed,
        "steps": result.steps,
        "stops_by_milestone": {str(k): v for k, v in sorted(result.stops_by_milestone.items())},
        "gpu_by_fate": result.gpu_by_fate,
        "suggest_seconds": sim.suggest_seconds,
        "simulation_seconds": time.perf_counter() - started,
        # How good the suggestions are, whatever ASHA does with them: the share of suggested
        # configurations that would meet the target at max_t, and their median final value.
        "hit_rate": sum(prob.meets_target(v) for v in finals) / max(1, len(finals)),
        "hit_rate_model": (sum(prob.meets_target(v) for v in model) / len(model)) if model else None,
        "median_final_model": statistics.median(model) if model else None,
        # How concentrated they are: the share of the most repeated final value (on digits,
        # the recorded configuration most often looked up) among the model's suggestions.
        "top_final_share": (max(Counter(model).values()) / len(model)) if model else None,
        "best_final": (min if prob.mode == "min" else max)(finals) if finals else None,
        "config_digest": config_digest(sim.configs),
    }


def _task(args: tuple[str, int, str, int, int, str]) -> dict[str, Any]:
    name, workers, method, seed, max_trials, setting = args
    return run_one(name, workers, method, seed, max_trials,
                   {"ideal": IDEAL, "realistic": REALISTIC}[setting])


def _key(r: dict[str, Any]) -> tuple[str, int, str, int, str]:
    return (r["problem"], r["workers"], r["method"], r["seed"], r.get("setting", "ideal"))


def load(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with gzip.open(path, "rt") as f:
        records: list[dict[str, Any]] = json.load(f)
    return records


def save(path: Path, records: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wt") as f:
        json.dump(sorted(records, key=_key), f)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> None:
    from benchmarks.replay import search_report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--problems", nargs="+", default=["mfh6-moderate", "digits-mlp"])
    parser.add_argument("--workers", nargs="+", type=int, default=list(WORKERS))
    parser.add_argument("--methods", nargs="+", default=list(SEARCH_METHODS),
                        choices=SEARCH_METHODS + CONTROLS)
    parser.add_argument("--max-trials", type=int, default=MAX_TRIALS)
    parser.add_argument("--setting", choices=("ideal", "realistic"), default="ideal")
    parser.add_argument("--jobs", type=int, default=1, help="processes")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2 seeds, W = 4, at most 150 trials; files in the temp dir")
    parser.add_argument("--fresh", action="store_true", help="forget the runs on file")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.workers, args.max_trials = 2, [4], 150
        args.out = Path(tempfile.gettempdir()) / "kubetune-replay-search-quick"
        args.fresh = True
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / RUNS
    records = [] if args.fresh else load(path)
    if not args.report_only:
        done = {_key(r) for r in records}
        tasks = [(p, w, m, s, args.max_trials, args.setting)
                 for p in args.problems for w in args.workers
                 for s in range(args.first_seed, args.first_seed + args.seeds) for m in args.methods
                 if (p, w, m, s, args.setting) not in done]
        started = time.perf_counter()
        print(f"{len(tasks)} runs to do ({len(records)} on file)", flush=True)
        with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
            for i, r in enumerate(pool.imap_unordered(_task, tasks), 1):
                records.append(r)
                print(f"[{i}/{len(tasks)} {time.perf_counter() - started:.0f}s] {r['problem']} "
                      f"W={r['workers']} {r['method']} seed {r['seed']}: gpu {r['gpu_time']:.0f} "
                      f"trials {r['trials_started']} suggest {r['suggest_seconds']:.1f}s", flush=True)
                if i % 10 == 0 or i == len(tasks):
                    save(path, records)
    text = search_report.tables(records)
    (args.out / TABLES).write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
