"""Tables and figures from the replay runs (results/replay_runs.json.gz).

Speedups are paired: for each seed, random search's time to the target divided
by the method's, on the same pool. A run that never reaches the target counts
as infinitely slow (it is listed; none is expected with the pool and budget used).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.artist import Artist
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from scipy import stats

Record = dict[str, Any]
Key = tuple[str, str, int, float | None]
COLORS = {"kubetune": "#1f77b4", "ray": "#ff7f0e", "optuna": "#2ca02c", "random": "#7f7f7f",
          "oracle": "#9467bd"}


def _key(r: Record) -> Key:
    return (r["benchmark"], r["setting"], r["workers"], r["median_step_seconds"])


def group(records: Sequence[Record]) -> dict[Key, dict[str, dict[int, Record]]]:
    """The main grid's cells (the ASHA variants are left out: see variant_table)."""
    out: dict[Key, dict[str, dict[int, Record]]] = defaultdict(lambda: defaultdict(dict))
    for r in records:
        if not r.get("variant"):
            out[_key(r)][r["method"]][r["seed"]] = r
    return out


def _sorted(cells: dict[Key, Any]) -> list[Key]:
    return sorted(cells, key=lambda k: (k[0], k[1], k[2], k[3] or 0.0))


def speedups(cell: dict[str, dict[int, Record]], method: str, field: str) -> np.ndarray:
    base, mine = cell["random"], cell[method]
    seeds = sorted(set(base) & set(mine))
    return np.array([base[s][field] / mine[s][field] for s in seeds])


def gmean_ci(x: np.ndarray, rng: np.random.Generator, n: int = 2000) -> tuple[float, float, float]:
    logs = np.log(x)
    boots = rng.choice(logs, (n, len(logs))).mean(axis=1)
    return float(np.exp(logs.mean())), float(np.exp(np.quantile(boots, 0.025))), float(
        np.exp(np.quantile(boots, 0.975)))


def paired(cell: dict[str, dict[int, Record]], a: str, b: str, field: str) -> dict[str, Any]:
    """a against b on the same seeds: ratio a/b, wins, and a one-sided test that a is slower."""
    seeds = sorted(set(cell[a]) & set(cell[b]))
    x = np.array([cell[a][s][field] for s in seeds])
    y = np.array([cell[b][s][field] for s in seeds])
    ratio = x / y
    diff = np.log(x) - np.log(y)
    p: float | None = None
    if np.any(diff != 0):
        p = float(stats.wilcoxon(diff, alternative="greater", zero_method="zsplit").pvalue)
    return {"n": len(seeds), "median_ratio": float(np.median(ratio)),
            "gmean_ratio": float(np.exp(diff.mean())), "wins": int((diff < 0).sum()),
            "ties": int((diff == 0).sum()), "losses": int((diff > 0).sum()), "p_slower": p}


def _fmt(x: float, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if math.isinf(x):
        return "inf"
    return f"{x:,.{digits}f}"


def _num(x: float) -> str:
    """Three significant digits, thousands separated."""
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def tables(records: Sequence[Record]) -> str:
    rng = np.random.default_rng(0)
    cells = group(records)
    lines: list[str] = []
    w = lines.append

    w("### Time to target and speedup over random search (W = 16)\n")
    w("GPU-time = training seconds summed over trials until a trial that completed max_t "
      "reached the target; wall = simulated seconds. Speedup = random's / the method's on "
      "the same seed (median [IQR]; geometric mean with 95% bootstrap CI). "
      "Ceiling = eta^K/(K+1).\n")
    w("| benchmark | setting | method | reached | median GPU-time | median wall | GPU speedup median [IQR] | GPU speedup gmean (95% CI) | wall speedup median | of ceiling (median) |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    for key in _sorted(cells):
        bench, setting, workers, step = key
        if workers != 16 or step is not None:
            continue
        cell = cells[key]
        for method in ("kubetune", "ray", "optuna", "random", "oracle"):
            if method not in cell:
                continue
            runs = list(cell[method].values())
            reached = sum(r["reached"] for r in runs)
            gpu = np.median([r["gpu_time"] for r in runs])
            wall = np.median([r["wall_time"] for r in runs])
            sp = speedups(cell, method, "gpu_time")
            spw = speedups(cell, method, "wall_time")
            gm, lo, hi = gmean_ci(sp, rng)
            q1, q2, q3 = np.quantile(sp, [0.25, 0.5, 0.75])
            ceiling = runs[0]["ceiling"]
            of_ceiling = "-" if method == "random" else f"{_pct(q2 / ceiling)} of {ceiling:.2f}"
            w(f"| {bench} | {setting} | {method} | {reached}/{len(runs)} | {_num(gpu)} | "
              f"{_num(wall)} | {q2:.2f} [{q1:.2f}, {q3:.2f}] | {gm:.2f} ({lo:.2f}-{hi:.2f}) | "
              f"{np.median(spw):.2f} | {of_ceiling} |")

    w("\n### kubetune against Ray Tune and Optuna, paired over seeds\n")
    w("Ratio = kubetune's time to target / the other's (below 1: kubetune faster). "
      "p = one-sided Wilcoxon signed-rank test on log times, H1: kubetune slower.\n")
    w("| benchmark | setting | W | vs | GPU ratio median (gmean) | wall ratio median (gmean) | faster / tie / slower (GPU) | p (GPU) | p (wall) |")
    w("|---|---|---|---|---|---|---|---|---|")
    for key in _sorted(cells):
        bench, setting, workers, step = key
        cell = cells[key]
        if step is not None or "optuna" not in cell:
            continue
        for other in ("ray", "optuna"):
            g = paired(cell, "kubetune", other, "gpu_time")
            wl = paired(cell, "kubetune", other, "wall_time")
            w(f"| {bench} | {setting} | {workers} | {other} | {g['median_ratio']:.3f} "
              f"({g['gmean_ratio']:.3f}) | {wl['median_ratio']:.3f} ({wl['gmean_ratio']:.3f}) | "
              f"{g['wins']} / {g['ties']} / {g['losses']} | {_fmt(g['p_slower'], 3)} | "
              f"{_fmt(wl['p_slower'], 3)} |")

    w("\n### Decisions against Ray Tune's, call by call\n")
    w("Our ASHA drives; Ray's AsyncHyperBandScheduler is fed the same calls. "
      "'Identical runs': seeds on which Ray driving alone gives the same time to target.\n")
    w("| setting | cells | runs | decisions compared | of which stop | mismatches | identical runs (Ray driving) |")
    w("|---|---|---|---|---|---|---|")
    for setting in ("ideal", "realistic"):
        runs = [r for r in records if r["setting"] == setting and r["method"] == "kubetune"]
        compared = sum(r["decisions_compared"] for r in runs)
        mism = sum(r["decision_mismatches"] for r in runs)
        stops = sum(r["stops"] for r in runs)
        same = total = 0
        for key, cell in cells.items():
            if key[1] != setting or "ray" not in cell:
                continue
            for seed, r in cell["ray"].items():
                total += 1
                k = cell["kubetune"][seed]
                same += (r["gpu_time"], r["wall_time"], r["trials_started"]) == (
                    k["gpu_time"], k["wall_time"], k["trials_started"])
        n_cells = len({_key(r) for r in runs})
        w(f"| {setting} | {n_cells} | {len(runs)} | {compared:,} | {stops:,} | {mism} | {same}/{total} |")

    w("\n### Overshoot in the realistic setting (our ASHA, every pruned trial)\n")
    w("Steps a pruned trial finished past its rung before SIGTERM reached it, and the "
      "seconds from the rung step's end to SIGTERM. Scrape interval 15 s, tick 2 s.\n")
    w("| benchmark | median step | pruned trials | overshoot steps median / p90 / max | one scrape interval in steps | overshoot seconds median / p90 | pruned within one scrape interval |")
    w("|---|---|---|---|---|---|---|")
    for key in sorted(cells, key=lambda k: (k[0], k[1], k[2], k[3] or 10.0)):
        bench, setting, workers, step = key
        if setting != "realistic" or workers != 16:
            continue
        runs = list(cells[key]["kubetune"].values())
        steps = np.concatenate([r["overshoot_steps"] for r in runs])
        secs = np.concatenate([r["overshoot_seconds"] for r in runs])
        median_step = step or 10.0
        interval_steps = 15.0 / median_step
        w(f"| {bench} | {median_step:g} s | {len(steps):,} | {np.median(steps):g} / "
          f"{np.quantile(steps, 0.9):g} / {steps.max()} | {interval_steps:g} | "
          f"{np.median(secs):.1f} / {np.quantile(secs, 0.9):.1f} s | "
          f"{_pct(float(np.mean(secs <= 15.0)))} |")

    w("\n### Workers (ideal setting): GPU-time speedup over random search, median\n")
    benches = sorted({k[0] for k in cells if k[2] != 16})
    w("| benchmark | method | " + " | ".join(f"W={x}" for x in (1, 4, 16, 64)) + " |")
    w("|---|---|" + "---|" * 4)
    for bench in benches:
        for method in ("kubetune", "optuna", "oracle"):
            row = []
            for workers in (1, 4, 16, 64):
                sweep = cells.get((bench, "ideal", workers, None))
                row.append(f"{np.median(speedups(sweep, method, 'gpu_time')):.2f}" if sweep else "-")
            w(f"| {bench} | {method} | " + " | ".join(row) + " |")

    w("\n### Where the GPU-time goes (ideal, W = 16), mean share until the target\n")
    w("| benchmark | method | stopped at rung (share per rung) | completed max_t | still running |")
    w("|---|---|---|---|---|")
    for key in _sorted(cells):
        bench, setting, workers, step = key
        if setting != "ideal" or workers != 16:
            continue
        for method in ("kubetune", "oracle", "random"):
            runs = list(cells[key][method].values())
            shares: dict[str, float] = defaultdict(float)
            for r in runs:
                total = sum(r["gpu_by_fate"].values())
                for fate, v in r["gpu_by_fate"].items():
                    shares[fate] += v / total / len(runs)
            rungs = sorted((int(f.split("@")[1]), v) for f, v in shares.items() if f.startswith("stopped"))
            rung_text = ", ".join(f"{m}: {_pct(v)}" for m, v in rungs) or "-"
            w(f"| {bench} | {method} | {rung_text} | {_pct(shares['completed'])} | "
              f"{_pct(shares['running'])} |")
    return "\n".join(lines) + "\n"


def variant_table(records: Sequence[Record]) -> str:
    """Our ASHA with other rungs, paired with the baseline cell's random search."""
    cells = group(records)
    variants: dict[tuple[str, str], dict[str, dict[int, Record]]] = defaultdict(lambda: defaultdict(dict))
    for r in records:
        if r.get("variant"):
            variants[(r["benchmark"], r["variant"])][r["method"]][r["seed"]] = r
    lines = ["\n### Other rung settings for our ASHA (ideal, W = 16)\n",
             "Speedup over the same seeds' random search (GPU-time, median [IQR]); 'ceiling' is "
             "eta^K/(K+1) of that setting; baseline: grace 1, 1 bracket.\n",
             "| benchmark | setting | ASHA GPU speedup | oracle GPU speedup | ceiling | ASHA of ceiling |",
             "|---|---|---|---|---|---|"]
    order = ["grace 3", "grace 9", "brackets 2", "brackets 3", "brackets 4"]
    for bench in sorted({b for b, _ in variants}):
        base = cells.get((bench, "ideal", 16, None))
        if base is None:
            continue
        rows = [("grace 1, 1 bracket", base)] + [
            (v, {**variants[(bench, v)], "random": base["random"]}) for v in order
            if (bench, v) in variants]
        for name, cell in rows:
            asha = speedups(cell, "kubetune", "gpu_time")
            oracle = speedups(cell, "oracle", "gpu_time")
            ceiling = next(iter(cell["kubetune"].values()))["ceiling"]
            q = np.quantile(asha, [0.25, 0.5, 0.75])
            o = np.quantile(oracle, [0.25, 0.5, 0.75])
            lines.append(f"| {bench} | {name} | {q[1]:.2f} [{q[0]:.2f}, {q[2]:.2f}] | "
                         f"{o[1]:.2f} [{o[0]:.2f}, {o[2]:.2f}] | {ceiling:.2f} | {_pct(q[1] / ceiling)} |")
    return "\n".join(lines) + "\n"


def figures(records: Sequence[Record], out: Path) -> list[Path]:
    cells = group(records)
    paths = [_speedup_figure(cells, out), _overshoot_figure(cells, out), _workers_figure(cells, out),
             _ecdf_figure(cells, out)]
    return paths


def _speedup_figure(cells: dict[Key, dict[str, dict[int, Record]]], out: Path) -> Path:
    benches = sorted({k[0] for k in cells})
    methods = ("kubetune", "ray", "optuna", "oracle")
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    for ax, setting in zip(axes, ("ideal", "realistic"), strict=True):
        for i, bench in enumerate(benches):
            found = cells.get((bench, setting, 16, None))
            if found is None:
                continue
            cell = found
            for j, method in enumerate(methods):
                sp = speedups(cell, method, "gpu_time")
                pos = i + (j - 1.5) * 0.19
                bp = ax.boxplot(sp, positions=[pos], widths=0.16, patch_artist=True,
                                showfliers=False)
                for patch in bp["boxes"]:
                    patch.set_facecolor(COLORS[method])
                    patch.set_alpha(0.75)
            ceiling = next(iter(cell["kubetune"].values()))["ceiling"]
            ax.hlines(ceiling, i - 0.45, i + 0.45, colors="k", linestyles="dotted")
            ax.hlines(ceiling / 2, i - 0.45, i + 0.45, colors="k", linestyles="dashed", linewidth=0.8)
        ax.set_xticks(range(len(benches)), benches, rotation=15)
        ax.set_yscale("log")
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_title(f"{setting} setting, 16 workers")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("GPU-time speedup over random search (per seed)")
    handles: list[Artist] = [Rectangle((0, 0), 1, 1, color=COLORS[m], alpha=0.75) for m in methods]
    handles += [Line2D([], [], color="k", linestyle="dotted"),
                Line2D([], [], color="k", linestyle="dashed", linewidth=0.8)]
    fig.legend(handles, [*methods, "ceiling eta^K/(K+1)", "half the ceiling"], loc="upper center",
               ncol=6, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    path = out / "replay_speedup.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _overshoot_figure(cells: dict[Key, dict[str, dict[int, Record]]], out: Path) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    for key in _sorted(cells):
        bench, setting, _, step = key
        if setting != "realistic" or step is not None:
            continue
        secs = np.concatenate([r["overshoot_seconds"] for r in cells[key]["kubetune"].values()])
        left.hist(secs, bins=np.arange(0, 22, 0.5), histtype="step", density=True, label=bench)
    left.axvline(15.0, color="k", linestyle="dashed", label="scrape interval (15 s)")
    left.set_xlabel("seconds from the rung step's end to SIGTERM")
    left.set_ylabel("density")
    left.set_title("Decision delay of pruned trials (realistic setting)")
    left.legend(fontsize=8)
    rows = sorted((k for k in cells if k[0] == "mfh6-moderate" and k[1] == "realistic"),
                  key=lambda k: k[3] or 10.0)
    xs, med, p90, limit = [], [], [], []
    for key in rows:
        step = key[3] or 10.0
        s = np.concatenate([r["overshoot_steps"] for r in cells[key]["kubetune"].values()])
        xs.append(step)
        med.append(np.median(s))
        p90.append(np.quantile(s, 0.9))
        limit.append(15.0 / step)
    right.plot(xs, med, "o-", label="median overshoot (steps)")
    right.plot(xs, p90, "s--", label="p90 overshoot (steps)")
    right.plot(xs, limit, "k:", label="one scrape interval of steps")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("seconds per training step")
    right.set_title("Overshoot against step time (mfh6-moderate)")
    right.legend(fontsize=8)
    fig.tight_layout()
    path = out / "replay_overshoot.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _workers_figure(cells: dict[Key, dict[str, dict[int, Record]]], out: Path) -> Path:
    benches = sorted({k[0] for k in cells if k[2] != 16})
    fig, axes = plt.subplots(1, len(benches), figsize=(5.5 * len(benches), 4), squeeze=False)
    for ax, bench in zip(axes[0], benches, strict=True):
        for method in ("kubetune", "optuna", "oracle"):
            xs, ys, lo, hi = [], [], [], []
            for workers in (1, 4, 16, 64):
                cell = cells.get((bench, "ideal", workers, None))
                if cell is None:
                    continue
                sp = speedups(cell, method, "gpu_time")
                xs.append(workers)
                ys.append(np.median(sp))
                lo.append(np.quantile(sp, 0.25))
                hi.append(np.quantile(sp, 0.75))
            ax.plot(xs, ys, "o-", color=COLORS[method], label=method)
            ax.fill_between(xs, lo, hi, color=COLORS[method], alpha=0.15)
        ceiling = next(iter(cells[(bench, "ideal", 16, None)]["kubetune"].values()))["ceiling"]
        ax.axhline(ceiling, color="k", linestyle="dotted", label="ceiling")
        ax.axhline(ceiling / 2, color="k", linestyle="dashed", linewidth=0.8, label="half the ceiling")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("workers (W)")
        ax.set_ylabel("GPU-time speedup over random (median, IQR)")
        ax.set_title(f"{bench}, ideal setting")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "replay_workers.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _ecdf_figure(cells: dict[Key, dict[str, dict[int, Record]]], out: Path) -> Path:
    benches = ("mfh6-moderate", "digits-mlp")
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    for col, bench in enumerate(benches):
        for row, setting in enumerate(("ideal", "realistic")):
            ax = axes[row][col]
            cell = cells.get((bench, setting, 16, None))
            if cell is None:
                continue
            for method in ("kubetune", "ray", "optuna", "random", "oracle"):
                t = np.sort([r["wall_time"] for r in cell[method].values()])
                style = "--" if method == "ray" else "-"
                ax.step(t, np.arange(1, len(t) + 1) / len(t), style, where="post",
                        color=COLORS[method], label=method)
            ax.set_xscale("log")
            unit = "s" if setting == "realistic" or bench.startswith("digits") else "steps"
            ax.set_xlabel(f"simulated wall-clock to target ({unit})")
            ax.set_ylabel("fraction of seeds")
            ax.set_title(f"{bench}, {setting}, 16 workers")
            ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "replay_time_to_target.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
