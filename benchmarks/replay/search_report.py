"""Tables of the search replay (results/replay_search_runs.json.gz).

Every comparison is paired over seeds: the same problem, W and seed, so the
same low-fidelity noise per trial index. A run that never met the target
counts as infinitely slow (its count is in the 'reached' column).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from benchmarks.replay.searchers import CONTROLS, SEARCH_METHODS

Record = dict[str, Any]
Cell = dict[str, dict[int, Record]]
LABELS = {
    "kt-tpe-pruned": "kubetune TPE + ASHA, stopped as PRUNED",
    "kt-tpe-complete": "kubetune TPE + ASHA, stopped as COMPLETE",
    "kt-random": "kubetune random + ASHA",
    "ray-tpe": "Ray OptunaSearch + AsyncHyperBandScheduler",
    "optuna-tpe": "Optuna TPESampler + SuccessiveHalvingPruner",
    "kt-tpe-fifo": "kubetune TPE, no early stopping",
    "kt-random-fifo": "kubetune random, no early stopping",
}


def cells(records: Sequence[Record]) -> dict[tuple[str, str, int], Cell]:
    out: dict[tuple[str, str, int], Cell] = defaultdict(lambda: defaultdict(dict))
    for r in records:
        out[(r["problem"], r.get("setting", "ideal"), r["workers"])][r["method"]][r["seed"]] = r
    return out


def time_to_target(r: Record, field: str = "gpu_time") -> float:
    return float(r[field]) if r["reached"] else math.inf


def quantile(values: Sequence[float] | np.ndarray, q: float) -> float:
    """A quantile where an unreached run (inf) is slower than any other: inf if it falls there."""
    big = 1e300
    x = np.minimum(np.asarray(values, dtype=float), big)
    out = float(np.quantile(x, q))
    return math.inf if out > 1e299 else out


def paired(cell: Cell, a: str, b: str, field: str = "gpu_time") -> dict[str, Any] | None:
    """a's time over b's on the seeds both ran: median and geometric-mean ratio, wins, Wilcoxon p."""
    if a not in cell or b not in cell:
        return None
    seeds = sorted(set(cell[a]) & set(cell[b]))
    if not seeds:
        return None
    x = np.array([time_to_target(cell[a][s], field) for s in seeds])
    y = np.array([time_to_target(cell[b][s], field) for s in seeds])
    big = 1e12  # ranks only: an unreached run is slower than any reached one
    lx, ly = np.log(np.minimum(x, big)), np.log(np.minimum(y, big))
    diff = lx - ly
    p_slower = p_faster = None
    if np.any(diff != 0) and len(seeds) >= 5:
        p_slower = float(stats.wilcoxon(diff, alternative="greater", zero_method="zsplit").pvalue)
        p_faster = float(stats.wilcoxon(diff, alternative="less", zero_method="zsplit").pvalue)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(np.isinf(x) & np.isinf(y), 1.0, x / y)  # neither reached: a tie
    return {"n": len(seeds), "median_ratio": quantile(ratio, 0.5),
            "gmean_ratio": float(np.exp(diff.mean())) if np.isfinite(x).all() and np.isfinite(y).all()
            else None, "wins": int((diff < 0).sum()),
            "ties": int((diff == 0).sum()), "losses": int((diff > 0).sum()),
            "p_slower": p_slower, "p_faster": p_faster}


def _p(x: float | None) -> str:
    if x is None:
        return "-"
    return "< 0.001" if x < 0.001 else f"{x:.3f}"


def _x(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.2f}x"


def _r(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.3f}"


def _num(x: float) -> str:
    if math.isinf(x):
        return "inf"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def tables(records: Sequence[Record]) -> str:
    grid = cells(records)
    keys = sorted(grid)
    lines: list[str] = []
    w = lines.append

    w("### Search + ASHA: time to target (ideal setting)\n")
    w("GPU-time: training seconds summed over trials until a trial that completed max_t met "
      "the target (the best 1% of final values). Hit rate: share of the configurations "
      "suggested after the 10 startup trials that would meet the target at max_t. "
      "Suggest s: seconds the run spent choosing configurations (history build + ask).\n")
    w("| problem | W | method | reached | GPU-time median [IQR] | trials started, median | "
      "hit rate after startup, median | suggest s per run, median |")
    w("|---|---|---|---|---|---|---|---|")
    for key in keys:
        prob, _, workers = key
        for method in SEARCH_METHODS + CONTROLS:
            runs = list(grid[key].get(method, {}).values())
            if not runs:
                continue
            gpu = [time_to_target(r) for r in runs]
            q1, q2, q3 = (quantile(gpu, q) for q in (0.25, 0.5, 0.75))
            hits = [r["hit_rate_model"] for r in runs if r["hit_rate_model"] is not None]
            w(f"| {prob} | {workers} | {method} | {sum(r['reached'] for r in runs)}/{len(runs)} | "
              f"{_num(q2)} [{_num(q1)}, {_num(q3)}] | "
              f"{np.median([r['trials_started'] for r in runs]):.0f} | "
              f"{100 * np.median(hits):.1f}% | "
              f"{np.median([r['suggest_seconds'] for r in runs]):.2f} |")

    w("\n### Speedup over kubetune random + ASHA, paired over seeds\n")
    w("Random + ASHA's GPU-time to target / the method's on the same seed: median "
      "(geometric mean when every run reached the target), and the seeds on which the method "
      "is faster / tied / slower (a tie: the same time, or neither reached the target). "
      "Goal: kubetune TPE + ASHA >= 1.3x at W = 4 on at least one problem.\n")
    others = [m for m in SEARCH_METHODS if m != "kt-random"]
    w("| problem | W | " + " | ".join(others) + " |")
    w("|---|---|" + "---|" * len(others))
    for key in keys:
        row = []
        for method in others:
            g = paired(grid[key], "kt-random", method)
            if g is None:
                row.append("-")
                continue
            gm = "" if g["gmean_ratio"] is None else f" ({_x(g['gmean_ratio'])})"
            row.append(f"{_x(g['median_ratio'])}{gm}, {g['losses']}/{g['ties']}/{g['wins']}")
        w(f"| {key[0]} | {key[2]} | " + " | ".join(row) + " |")

    w("\n### kubetune TPE + ASHA against Ray's and Optuna's, paired over seeds\n")
    w("Ratio: kubetune's GPU-time to target / the other's (below 1: kubetune faster); "
      "faster / tie / slower counts seeds; p: one-sided Wilcoxon signed-rank test on log "
      "times that kubetune is slower (p slower) or faster (p faster).\n")
    w("| problem | W | kubetune | vs | ratio median (gmean) | faster / tie / slower | p slower | p faster |")
    w("|---|---|---|---|---|---|---|---|")
    for key in keys:
        for mine in ("kt-tpe-pruned", "kt-tpe-complete"):
            for other in ("ray-tpe", "optuna-tpe", *(("kt-tpe-complete",) if mine == "kt-tpe-pruned" else ())):
                g = paired(grid[key], mine, other)
                if g is None:
                    continue
                gm = "" if g["gmean_ratio"] is None else f" ({g['gmean_ratio']:.3f})"
                w(f"| {key[0]} | {key[2]} | {mine} | {other} | {_r(g['median_ratio'])}{gm} | "
                  f"{g['wins']} / {g['ties']} / {g['losses']} | "
                  f"{_p(g['p_slower'])} | {_p(g['p_faster'])} |")
    return "\n".join(lines) + "\n"
