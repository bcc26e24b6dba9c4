"""How the CLI shows experiments: the status view, the trials table, the live watch.

Pure rendering into rich renderables from the TuneExperiment and TuneTrial
objects as the API returns them (plain dicts); `watch_experiment` polls.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from kubetune.client.errors import TuneError
from kubetune.client.experiments import ExperimentClient
from kubetune.client.results import flatten_config
from kubetune.contract import EXPERIMENT_TERMINAL_PHASES

STATE_STYLE = {"Succeeded": "green", "Pruned": "yellow", "Failed": "red", "Running": "cyan",
               "Pending": "dim"}


def fmt(value: Any) -> str:
    """A cell: floats to 4 significant digits, JSON for lists and dicts, - for None."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return "-" if value is None else str(value)


def flat(config: Mapping[str, Any]) -> dict[str, Any]:
    """A nested config with dotted keys: {"opt": {"lr": 1}} -> {"opt.lr": 1}."""
    return flatten_config(config, ".")


def _age(timestamp: str | None) -> str:
    if not timestamp:
        return "-"
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return timestamp
    seconds = int((datetime.now(UTC) - then).total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    return f"{seconds // 60}m" if seconds < 7200 else f"{seconds // 3600}h"


def counts_line(status: Mapping[str, Any]) -> str:
    """`3/8 trials done: ...` from the experiment's status.trials."""
    c = status.get("trials") or {}
    done = sum(int(c.get(k, 0)) for k in ("succeeded", "pruned", "failed"))
    return (f"{done}/{c.get('total', 0)} trials done: {c.get('succeeded', 0)} succeeded, "
            f"{c.get('pruned', 0)} pruned, {c.get('failed', 0)} failed; "
            f"{c.get('running', 0)} running, {c.get('pending', 0)} pending")


def best_line(status: Mapping[str, Any], metric: str) -> str:
    """`best trial: <name>  <metric>=<value> at step <step>`, or none yet."""
    best = status.get("bestTrial")
    if not best:
        return "best trial: none yet"
    return (f"best trial: {best['name']}  {metric}={fmt(best.get('metric'))} at step "
            f"{fmt(best.get('step'))}")


def status_view(experiment: Mapping[str, Any]) -> Any:
    """Phase, counts, best trial, rung table and conditions of one experiment."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    meta, spec = experiment["metadata"], experiment.get("spec") or {}
    status = experiment.get("status") or {}
    objective = spec.get("objective") or {}
    metric = str(objective.get("metric", ""))
    phase = status.get("phase") or "Pending"
    head = Text.assemble(("TuneExperiment ", "bold"), f"{meta.get('namespace')}/{meta['name']}  ",
                         (phase, STATE_STYLE.get(phase, "") + " bold"))
    parts: list[Any] = [head]
    if status.get("message"):
        parts.append(Text(f"  {status['message']}"))
    scheduler = spec.get("scheduler") or {}
    parts.append(Text(f"objective: {metric} ({objective.get('mode')}); scheduler: "
                      f"{scheduler.get('type', 'fifo')}; maxConcurrentTrials: "
                      f"{spec.get('maxConcurrentTrials', 1)}"))
    parts.append(Text(counts_line(status)))
    best = status.get("bestTrial")
    if best:
        table = Table(title="best trial", title_justify="left", show_header=False, box=None,
                      padding=(0, 2))
        table.add_row("name", str(best["name"]))
        table.add_row(metric, fmt(best.get("metric")))
        table.add_row("step", fmt(best.get("step")))
        for key, value in flat(best.get("config") or {}).items():
            table.add_row(f"config.{key}", fmt(value))
        for key, value in (best.get("metrics") or {}).items():
            if key != metric:
                table.add_row(key, fmt(value))
        parts.append(table)
    else:
        parts.append(Text("best trial: none yet"))
    rungs = status.get("rungs") or []
    if rungs:
        table = Table(title="rungs", title_justify="left")
        table.add_column("milestone", justify="right")
        table.add_column("recorded", justify="right")
        table.add_column(f"cutoff ({metric})", justify="right")
        for rung in rungs:
            table.add_row(str(rung.get("milestone")), str(rung.get("recorded", 0)),
                          fmt(rung.get("cutoff")))
        parts.append(table)
    conditions = status.get("conditions") or []
    if conditions:
        table = Table(title="conditions", title_justify="left")
        for column in ("type", "status", "reason", "age", "message"):
            table.add_column(column)
        for c in conditions:
            table.add_row(c.get("type", ""), c.get("status", ""), c.get("reason") or "",
                          _age(c.get("lastTransitionTime")), c.get("message") or "")
        parts.append(table)
    return Group(*parts)


def _note(status: Mapping[str, Any], mode: str) -> str:
    pruned = status.get("prunedAt")
    if pruned:
        worse = "<" if mode == "max" else ">"
        return (f"rung {pruned.get('milestone')}: {fmt(pruned.get('value'))} {worse} "
                f"cutoff {fmt(pruned.get('cutoff'))}")
    if status.get("state") == "Failed":
        return str(status.get("message") or status.get("reason") or "")
    return ""


def sort_key(metric: str, descending: bool) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """Order trials by a metric, a parameter, step or index; trials without it go last."""
    def key(trial: Mapping[str, Any]) -> tuple[Any, ...]:
        status = trial.get("status") or {}
        if metric == "step":
            value = status.get("step")
        elif metric == "index":
            value = trial["spec"].get("index")
        else:
            value = (status.get("metrics") or {}).get(metric)
            if value is None:
                value = flat(trial["spec"].get("params") or {}).get(metric)
        if not isinstance(value, int | float | str):
            return (1, 0, "")  # trials without it go last
        if isinstance(value, str):
            return (0, 0, value)
        return (0, -value if descending else value, "")

    return key


def trials_view(experiment: Mapping[str, Any], trials: Sequence[Mapping[str, Any]],
                title: str | None = None, workers: Mapping[str, str] | None = None) -> Any:
    """One row per trial: state, step, metrics, params, why it stopped; with `workers`
    (multi-worker trials: trial -> `rank@node ...`), where each worker runs."""
    from rich.table import Table

    objective = experiment["spec"]["objective"]["metric"]
    best = ((experiment.get("status") or {}).get("bestTrial") or {}).get("name")
    reported = {m for t in trials for m in (t.get("status") or {}).get("metrics") or {}}
    metrics = [objective, *sorted(reported - {objective})]
    params = sorted({p for t in trials for p in flat(t["spec"].get("params") or {})})
    lineage = any(_exploits(t) for t in trials)
    table = Table(title=title, title_justify="left")
    table.add_column("trial")
    table.add_column("state")
    table.add_column("step", justify="right")
    for m in metrics:
        table.add_column(m, justify="right")
    for p in params:
        table.add_column(p, justify="right")
    if lineage:
        table.add_column("config history (PBT)")
    if workers is not None:
        table.add_column("workers (rank@node)")
    table.add_column("note")
    for t in trials:
        status = t.get("status") or {}
        state = str(status.get("state") or "Pending")
        values = status.get("metrics") or {}
        # Under PBT a trial's config changes at each exploit: the current one is shown.
        config = flat((status.get("pbt") or {}).get("config") or t["spec"].get("params") or {})
        name = t["metadata"]["name"]
        table.add_row(f"{name} *" if name == best else name,
                      f"[{STATE_STYLE.get(state, '')}]{state}[/]", fmt(status.get("step")),
                      *[fmt(values.get(m)) for m in metrics],
                      *[fmt(config.get(p)) for p in params],
                      *([config_history(t)] if lineage else []),
                      *([workers.get(name, "")] if workers is not None else []),
                      _note(status, experiment["spec"]["objective"]["mode"]))
    return table


def _exploits(trial: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(((trial.get("status") or {}).get("pbt") or {}).get("exploits") or [])


def config_history(trial: Mapping[str, Any]) -> str:
    """Each PBT exploit of a trial: whose checkpoint, at which step, the values it changed."""
    parts = []
    for e in _exploits(trial):
        old, new = flat(e.get("oldConfig") or {}), flat(e.get("newConfig") or {})
        changed = ", ".join(f"{k}={fmt(v)}" for k, v in new.items() if old.get(k) != v)
        parts.append(f"@{fmt(e.get('time'))} from {e.get('donor')}@{fmt(e.get('donorStep'))}"
                     f"{': ' + changed if changed else ''}")
    return "; ".join(parts)


def watch_experiment(client: ExperimentClient, name: str, console: Any, *, interval: float = 1.0,
                     timeout: float | None = None, max_rows: int = 30) -> dict[str, Any]:
    """Live progress until the experiment is Succeeded or Failed; return its final object.

    On a terminal: a progress bar and the trials table, redrawn in place. Elsewhere
    (a pipe, a CI log): one line whenever the counts or the best trial change.
    """
    from rich.console import Group
    from rich.live import Live
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    deadline = None if timeout is None else time.monotonic() + timeout
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[info]}"),
                        console=console)
    task = progress.add_task(name, total=None, info="")
    live = Live(console=console, refresh_per_second=4, transient=False) \
        if console.is_terminal else None
    last_line = ""
    if live is not None:
        live.start()
    try:
        while True:
            experiment = client.get_experiment(name)
            status = experiment.get("status") or {}
            metric = experiment["spec"]["objective"]["metric"]
            counts = status.get("trials") or {}
            done = sum(int(counts.get(k, 0)) for k in ("succeeded", "pruned", "failed"))
            phase = status.get("phase") or "Pending"
            if live is not None:
                trials = client.list_trials(name)
                shown = _rows_to_show(trials, metric, experiment, max_rows)
                progress.update(task, total=counts.get("total") or None, completed=done,
                                info=f"{phase}  {best_line(status, metric)}")
                live.update(Group(progress, trials_view(experiment, shown)))
            else:
                line = f"{phase}: {counts_line(status)}; {best_line(status, metric)}"
                if line != last_line:
                    console.print(f"{datetime.now().strftime('%H:%M:%S')} {line}")
                    last_line = line
            if phase in EXPERIMENT_TERMINAL_PHASES:
                return dict(experiment)
            if deadline is not None and time.monotonic() > deadline:
                raise TuneError(f"{name} still {phase} after {timeout:.0f}s")
            time.sleep(interval)
    finally:
        if live is not None:
            live.stop()


def _rows_to_show(trials: list[dict[str, Any]], metric: str, experiment: Mapping[str, Any],
                  max_rows: int) -> list[dict[str, Any]]:
    """All trials when few; else the live ones and the best finished ones."""
    if len(trials) <= max_rows:
        return trials
    live = [t for t in trials if (t.get("status") or {}).get("state") in ("Pending", "Running", None)]
    descending = experiment["spec"]["objective"]["mode"] == "max"
    done = sorted((t for t in trials if t not in live), key=sort_key(metric, descending))
    return (live + done)[:max_rows]


__all__ = ["STATE_STYLE", "best_line", "counts_line", "flat", "fmt", "sort_key", "status_view",
           "trials_view", "watch_experiment"]
