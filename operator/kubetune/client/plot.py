"""Learning curves of an experiment's trials as one PNG.

A curve is the objective against the step (ASHA's time attribute), taken from
each trial's history (`kubetune.client.history`): pruned trials end in an x at
the rung that stopped them, the best trial is highlighted, and each PBT exploit
is an arrow from the clone's point at its check to the donor's checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubetune.client.history import History, finite


@dataclass
class TrialCurve:
    """What the plot draws for one trial."""

    name: str
    index: int
    state: str
    points: list[tuple[int, float]]
    pruned_at: tuple[int, float] | None = None


def trial_curves(trials: Sequence[Mapping[str, Any]], histories: Mapping[str, History],
                 metric: str) -> list[TrialCurve]:
    curves = []
    for trial in trials:
        name = trial["metadata"]["name"]
        status = trial.get("status") or {}
        points = [(step, m[metric]) for step, m in sorted(histories.get(name, {}).items())
                  if metric in m]
        pruned = status.get("prunedAt")
        pruned_at = None
        if pruned:
            step = pruned.get("step") or pruned.get("milestone")
            value = finite(pruned.get("value"))
            if value is None and points:
                value = points[-1][1]
            if isinstance(step, int) and value is not None:
                pruned_at = (step, value)
                # The curve ends where the scheduler judged it.
                points = [p for p in points if p[0] <= step] or [pruned_at]
        curves.append(TrialCurve(name, int(trial.get("spec", {}).get("index", 0)),
                                 str(status.get("state") or "Pending"), points, pruned_at))
    return curves


@dataclass
class Clone:
    """A PBT exploit as the plot draws it: from the clone's point at the check to the donor's."""

    trial: str
    donor: str
    start: tuple[float, float] | None
    """The clone's (step, value) at the check that decided it, when its history has it."""
    end: tuple[float, float]
    """The donor's (step, value) at the checkpoint the clone resumed from."""


def lineage(trials: Sequence[Mapping[str, Any]], histories: Mapping[str, History],
            metric: str) -> list[Clone]:
    """Every recorded PBT exploit (status.pbt.exploits) that the histories can place."""
    def value_at(name: str, step: float) -> float | None:
        history = histories.get(name, {})
        found = history.get(int(step), {})
        return finite(found.get(metric)) if found else None

    clones = []
    for trial in trials:
        name = trial["metadata"]["name"]
        for e in ((trial.get("status") or {}).get("pbt") or {}).get("exploits") or []:
            donor, donor_step = e.get("donor"), e.get("donorStep")
            if not isinstance(donor, str) or not isinstance(donor_step, int | float):
                continue
            end = value_at(donor, donor_step)
            if end is None:
                continue
            at = e.get("time")
            before = value_at(name, at) if isinstance(at, int | float) else None
            clones.append(Clone(name, donor, None if before is None else (at, before),
                                (donor_step, end)))
    return clones


_STYLE = {
    "Succeeded": {"color": "#4878a8", "alpha": 0.75, "linewidth": 1.3},
    "Pruned": {"color": "#9a9a9a", "alpha": 0.7, "linewidth": 1.0},
    "Failed": {"color": "#c44e52", "alpha": 0.6, "linewidth": 1.0, "linestyle": "--"},
    "Running": {"color": "#55a868", "alpha": 0.9, "linewidth": 1.2, "linestyle": ":"},
    "Pending": {"color": "#55a868", "alpha": 0.9, "linewidth": 1.2, "linestyle": ":"},
}
_BEST = "#dd8452"


def render(experiment: Mapping[str, Any], trials: Sequence[Mapping[str, Any]],
           histories: Mapping[str, History], path: Path | str, *, metric: str | None = None,
           size: tuple[int, int] = (1200, 700), source: str = "") -> Path:
    """Write the learning curves of `experiment` as a PNG of exactly `size` pixels."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    spec, status = experiment.get("spec") or {}, experiment.get("status") or {}
    objective = spec.get("objective") or {}
    metric = metric or objective.get("metric", "")
    name = experiment["metadata"]["name"]
    best = status.get("bestTrial") or {}
    curves = trial_curves(trials, histories, metric)

    dpi = 100
    fig = Figure(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi)
    ax = fig.add_subplot()
    counts: dict[str, int] = {}
    for curve in curves:
        counts[curve.state] = counts.get(curve.state, 0) + 1
        if curve.name == best.get("name") or not curve.points:
            continue
        steps, values = zip(*curve.points, strict=True)
        ax.plot(steps, values, marker="." if len(steps) < 30 else None, markersize=4,
                **_STYLE.get(curve.state, _STYLE["Pending"]))  # type: ignore[arg-type]
        if curve.pruned_at is not None:
            ax.plot(*curve.pruned_at, marker="x", color="#c44e52", markersize=9,
                    markeredgewidth=2, zorder=4)
        elif curve.state == "Succeeded":
            ax.annotate(f"#{curve.index}", curve.points[-1], xytext=(4, 0),
                        textcoords="offset points", fontsize=7, color="#4878a8", va="center")

    milestones = [r for r in status.get("rungs") or [] if isinstance(r.get("milestone"), int)]
    for rung in milestones:
        ax.axvline(rung["milestone"], color="#cccccc", linewidth=0.8, linestyle="--", zorder=0)
        cutoff = finite(rung.get("cutoff"))
        if cutoff is not None:
            ax.plot(rung["milestone"], cutoff, marker="_", color="black", markersize=22,
                    markeredgewidth=2, zorder=5)

    index_of = {c.name: c.index for c in curves}
    clones = lineage(trials, histories, metric)
    for clone in clones:  # PBT: which trial cloned which, and where
        ax.plot(*clone.end, marker="D", color="#8172b3", markersize=5, zorder=5)
        if clone.start is not None:
            ax.annotate("", xy=clone.end, xytext=clone.start, zorder=5,
                        arrowprops={"arrowstyle": "->", "color": "#8172b3", "alpha": 0.7,
                                    "linestyle": "--"})
        ax.annotate(f"#{index_of.get(clone.trial, '?')}<-#{index_of.get(clone.donor, '?')}",
                    clone.end, xytext=(4, -8), textcoords="offset points", fontsize=6,
                    color="#8172b3")

    best_curve = next((c for c in curves if c.name == best.get("name")), None)
    if best_curve is not None and best_curve.points:
        steps, values = zip(*best_curve.points, strict=True)
        ax.plot(steps, values, color=_BEST, linewidth=3, marker="o", markersize=4, zorder=6)
    best_value = finite(best.get("metric"))
    if best_value is not None and isinstance(best.get("step"), int):
        ax.plot(best["step"], best_value, marker="*", color=_BEST, markersize=18,
                markeredgecolor="black", zorder=7)

    all_steps = [s for c in curves for s, _ in c.points]
    if all_steps and max(all_steps) > 40 and min(all_steps) >= 1:
        ax.set_xscale("log")
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    time_attr = (spec.get("scheduler") or {}).get("timeAttr", "training_iteration")
    ax.set_xlabel(f"step ({time_attr})")
    ax.set_ylabel(f"{metric} ({'higher' if objective.get('mode') == 'max' else 'lower'} is better)")
    summary = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
    ax.set_title(f"{name}: {metric} per step, {len(curves)} trials ({summary})", fontsize=12)
    ax.grid(True, alpha=0.25)

    handles = []
    if best_curve is not None:
        label = f"best: {best['name']} ({metric}={best_value:.4g})" if best_value is not None \
            else f"best: {best['name']}"
        handles.append(Line2D([], [], color=_BEST, linewidth=3, marker="*", markersize=12,
                              markeredgecolor="black", label=label))
    for state, label in (("Succeeded", "completed"), ("Pruned", "pruned"),
                         ("Failed", "failed"), ("Running", "running")):
        if counts.get(state):
            handles.append(Line2D([], [], label=f"{label} ({counts[state]})",
                                  **_STYLE[state]))  # type: ignore[arg-type]
    if counts.get("Pruned"):
        handles.append(Line2D([], [], color="#c44e52", marker="x", linestyle="",
                              markersize=9, markeredgewidth=2,
                              label="stopped by the scheduler at this rung"))
    if clones:
        handles.append(Line2D([], [], color="#8172b3", marker="D", linestyle="--",
                              markersize=5, label=f"PBT exploit: #clone<-#donor ({len(clones)})"))
    if any(finite(r.get("cutoff")) is not None for r in milestones):
        handles.append(Line2D([], [], color="black", marker="_", linestyle="", markersize=16,
                              markeredgewidth=2, label="rung cutoff"))
    if handles:
        ax.legend(handles=handles, loc="best", fontsize=9, framealpha=0.9)
    if source:
        fig.text(0.99, 0.01, source, ha="right", va="bottom", fontsize=8, color="#777777")
    fig.subplots_adjust(left=0.08, right=0.97, top=0.93, bottom=0.1)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, format="png")
    return out


__all__ = ["Clone", "TrialCurve", "lineage", "render", "trial_curves"]
