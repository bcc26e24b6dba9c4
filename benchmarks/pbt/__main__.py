"""`python -m benchmarks.pbt [--seeds 30]`: print the solved rate and iterations to solve.

`--dev-cluster [--seeds N]` runs the methods on the local control plane instead (devcluster.py).

The table is also written to benchmarks/results/pbt_tables.md. Deterministic:
a rerun prints the same numbers.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.pbt.simulate import ROUNDS, WORKERS, Run, run_asha, run_pbt, run_random

RESULTS = Path(__file__).resolve().parents[1] / "results"

METHODS: dict[str, Callable[[int], Run]] = {
    "pbt (population 8)": run_pbt,
    "pbt (population 4, 4 GPUs idle)": lambda seed: run_pbt(seed, population=4),
    "random search": run_random,
    "asha (grace 1, rf 4)": lambda seed: run_asha(seed, grace_period=1, reduction_factor=4),
    "asha (grace 25, rf 3)": lambda seed: run_asha(seed, grace_period=25, reduction_factor=3),
}


def _median_censored(runs: Sequence[Run]) -> float:
    """Median round over all seeds, an unsolved seed counted as past the budget."""
    return statistics.median(r.solved_round or ROUNDS + 1 for r in runs)


def table(seeds: int) -> tuple[str, dict[str, list[Run]]]:
    runs = {name: [fn(seed) for seed in range(seeds)] for name, fn in METHODS.items()}
    lines = [
        f"| method ({WORKERS} GPUs, {ROUNDS} rounds = {WORKERS * ROUNDS} GPU-steps) | solved | "
        "median iterations to solve, all seeds (unsolved = over budget) | "
        "median over solved seeds | trials | exploits per run |",
        "|---|---|---|---|---|---|",
    ]
    for name, rs in runs.items():
        solved = [r.solved_round for r in rs if r.solved_round is not None]
        censored = _median_censored(rs)
        shown = f"> {ROUNDS}" if censored > ROUNDS else f"{censored:g}"
        over_solved = f"{statistics.median(solved):g}" if solved else "-"
        lines.append(
            f"| {name} | {len(solved)}/{len(rs)} ({100 * len(solved) / len(rs):.0f}%) | {shown} | "
            f"{over_solved} | {statistics.median(r.trials for r in rs):g} | "
            f"{statistics.median(r.exploits for r in rs):g} |"
        )
    return "\n".join(lines) + "\n", runs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pbt")
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds (default 30; with --dev-cluster 1)")
    parser.add_argument("--dev-cluster", action="store_true",
                        help="run on the local control plane with the operator (devcluster.py)")
    args = parser.parse_args(argv)
    if args.dev_cluster:
        from benchmarks.pbt import devcluster

        devcluster.main(args.seeds or 1)
        return
    args.seeds = args.seeds or 30
    text, runs = table(args.seeds)
    pbt = _median_censored(runs["pbt (population 8)"])
    rnd = _median_censored(runs["random search"])
    ratio = f"at least {rnd / pbt:.1f}x" if rnd > ROUNDS else f"{rnd / pbt:.1f}x"
    text += f"\nrandom search / pbt, median iterations to solve: {ratio} fewer for pbt\n"
    print(text, end="")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pbt_tables.md").write_text(
        f"`python -m benchmarks.pbt --seeds {args.seeds}`\n\n{text}", encoding="utf-8"
    )


if __name__ == "__main__":
    main()
