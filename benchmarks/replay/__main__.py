"""`python -m benchmarks.replay`: run the replay grid, then write its tables and figures.

    python -m benchmarks.replay                 # the full grid, 30 seeds (about 10 minutes)
    python -m benchmarks.replay --seeds 3       # a quick look
    python -m benchmarks.replay --report-only   # redraw from results/replay_runs.json.gz
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.replay.curves import RecordedSource
from benchmarks.replay.grid import BENCHMARKS, default_cells, run_cell

RESULTS = Path(__file__).resolve().parents[1] / "results"


def curve_table(seed: int = 0) -> str:
    """How well a rung's value ranks configurations by their final value (Spearman)."""
    from scipy import stats

    lines = ["| benchmark | max_t | configs | rung: Spearman(rung value, final value) |",
             "|---|---|---|---|"]
    for name, bench in BENCHMARKS.items():
        pool = bench.source().pool(seed, 4000)
        finals = pool.values[:, -1]
        cells = []
        m = bench.asha.grace_period
        while m < pool.max_t:
            rho = stats.spearmanr(pool.values[:, m - 1], finals).statistic
            cells.append(f"{m}: {rho:.2f}")
            m *= bench.asha.reduction_factor
        lines.append(f"| {name} | {pool.max_t} | {len(pool)} | {', '.join(cells)} |")
    return "\n".join(lines) + "\n"


def curves_figure(out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, name in zip(axes, ("mfh6-moderate", "digits-mlp"), strict=True):
        bench = BENCHMARKS[name]
        source = bench.source()
        pool = source.pool(0, 4000)
        # A recorded table is drawn with replacement: plot its distinct configurations.
        values = source.table.values if isinstance(source, RecordedSource) and source.table else pool.values
        order = np.argsort(values[:, -1])
        if pool.mode == "max":
            order = order[::-1]
        picks = np.concatenate([order[:5], order[len(order) // 2: len(order) // 2 + 5],
                                order[-40::8]])
        steps = np.arange(1, pool.max_t + 1)
        for i in picks:
            ax.plot(steps, values[i], linewidth=0.9)
        ax.axhline(pool.target, color="k", linestyle="dashed", linewidth=0.8, label="target (top 1%)")
        m = bench.asha.grace_period
        while m <= pool.max_t:
            ax.axvline(m, color="grey", linewidth=0.5)
            m *= bench.asha.reduction_factor
        ax.set_xscale("log")
        ax.set_xlabel("step (rungs in grey)")
        ax.set_ylabel("value (minimise)" if pool.mode == "min" else "validation accuracy")
        ax.set_title(f"{name}: best, middling and poor configurations")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "replay_curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    from benchmarks.replay import promotions, report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--only-variants", action="store_true",
                        help="rerun only the ASHA variants, keeping the other runs on file")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    runs_file = args.out / "replay_runs.json.gz"
    records: list[dict[str, Any]]
    if args.report_only or args.only_variants:
        with gzip.open(runs_file, "rt") as f:
            records = json.load(f)
    if args.report_only:
        pass
    else:
        cells = default_cells()
        if args.only_variants:
            records = [r for r in records if not r.get("variant")]
            cells = [c for c in cells if c.variant]
        else:
            records = []
        started = time.perf_counter()
        for cell in cells:
            t = time.perf_counter()
            records += run_cell(cell, range(args.seeds))
            print(f"{cell.benchmark:>14} {cell.setting:>9} W={cell.workers:<3} "
                  f"step={cell.median_step_seconds} {cell.variant}: "
                  f"{time.perf_counter() - t:.1f}s", flush=True)
        print(f"replay grid: {len(records)} runs in {time.perf_counter() - started:.0f}s")
        with gzip.open(runs_file, "wt") as f:
            json.dump(records, f)
    text = ("## Curve sets\n\n" + curve_table() + "\n" + report.tables(records)
            + report.variant_table(records) + promotions.table(promotions.run(range(args.seeds))))
    (args.out / "replay_tables.md").write_text(text)
    paths = [*report.figures(records, args.out), curves_figure(args.out)]
    sys.stdout.write(text)
    print("figures: " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    main()
