"""The `kubetune` command: a local cluster, the dev journey, and views of experiments.

Every experiment command takes -n/--namespace, --kubeconfig (default: $KUBECONFIG,
else the running local cluster's admin kubeconfig, else ~/.kube/config) and
--prometheus-url. A problem the user can fix (no such experiment, an
unreachable cluster) prints one line on stderr and exits 1, without a traceback.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from kubetune.contract import ENV_PROMETHEUS_URL
from kubetune.contract import EXPERIMENT_TERMINAL_PHASES as TERMINAL
from kubetune.devcluster import ClusterConfig, ClusterError, LocalCluster
from kubetune.devcluster.binaries import BinariesMissing

F = TypeVar("F", bound=Callable[..., Any])
_STATE_STYLE = {"Succeeded": "green", "Pruned": "yellow", "Failed": "red", "Running": "cyan",
                "Pending": "dim"}


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _console() -> Any:
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=160)  # pipes and files: don't wrap at 80
    return console


def _handles_errors(f: F) -> F:
    """One line on stderr and exit 1 for the errors a user can fix."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from pydantic import ValidationError

        from kubetune.api import SpecError
        from kubetune.client.tuner import KubetuneError

        try:
            return f(*args, **kwargs)
        except (KubetuneError, SpecError, ValidationError) as e:
            _fail(str(e).splitlines()[0] if isinstance(e, ValidationError) else str(e))
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def _experiment_options(f: F) -> F:
    f = click.option("--prometheus-url", envvar=ENV_PROMETHEUS_URL, default=None,
                     help="Prometheus for learning curves (default: the experiment's, or the "
                          "local cluster's).")(f)
    f = click.option("--kubeconfig", type=click.Path(dir_okay=False), default=None,
                     help="Default: $KUBECONFIG, else the local cluster's, else ~/.kube/config.")(f)
    f = click.option("-n", "--namespace", default=None,
                     help="Namespace (default: the kubeconfig context's, else default).")(f)
    return _handles_errors(f)


def _client(namespace: str | None, kubeconfig: str | None, prometheus_url: str | None) -> Any:
    from kubetune.client.tuner import ExperimentClient

    return ExperimentClient(kubeconfig, namespace=namespace, prometheus_url=prometheus_url)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """kubetune: hyperparameter tuning on Kubernetes."""


# -- the local cluster ---------------------------------------------------------------------


@main.group()
def cluster() -> None:
    """A local control plane with fake GPU nodes (no Docker needed)."""


@cluster.command("up")
@click.option("--nodes", default=4, show_default=True, help="KWOK fake GPU nodes.")
@click.option("--gpus-per-node", default=4, show_default=True, help="nvidia.com/gpu per node.")
@click.option("--state-dir", type=click.Path(path_type=Path), default=None,
              help="Where the cluster keeps its data, PIDs and logs.")
@click.option("--scrape-interval", default="1s", show_default=True)
def cluster_up(nodes: int, gpus_per_node: int, state_dir: Path | None, scrape_interval: str) -> None:
    """Start etcd, the apiserver, controllers, KWOK nodes, Prometheus and the local runner."""
    config = ClusterConfig(nodes=nodes, gpus_per_node=gpus_per_node, scrape_interval=scrape_interval)
    if state_dir is not None:
        config.state_dir = state_dir
    local = LocalCluster(config)
    try:
        seconds = local.up()
    except (ClusterError, BinariesMissing) as e:
        _fail(str(e))
    click.echo(f"local cluster up in {seconds:.1f}s: {nodes} nodes x {gpus_per_node} GPUs")
    click.echo(f"export KUBECONFIG={local.kubeconfig}")
    click.echo(f"prometheus: {local.prometheus_url}")


@cluster.command("down")
@click.option("--state-dir", type=click.Path(path_type=Path), default=None)
def cluster_down(state_dir: Path | None) -> None:
    """Stop every process `cluster up` started and remove its data."""
    config = ClusterConfig()
    if state_dir is not None:
        config.state_dir = state_dir
    LocalCluster(config).down()
    click.echo("local cluster stopped")


@cluster.command("env")
@click.option("--state-dir", type=click.Path(path_type=Path), default=None)
def cluster_env(state_dir: Path | None) -> None:
    """Print shell exports for the running local cluster."""
    config = ClusterConfig()
    if state_dir is not None:
        config.state_dir = state_dir
    local = LocalCluster(config)
    if not local.is_up():
        _fail("no local cluster is running: start one with `kubetune cluster up`")
    click.echo(f"export KUBECONFIG={local.kubeconfig}")
    click.echo(f"export KUBETUNE_PROMETHEUS_URL={local.prometheus_url}")


# -- rendering -----------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return "-" if value is None else str(value)


def _flat(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


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


def _counts_line(status: Mapping[str, Any]) -> str:
    c = status.get("trials") or {}
    done = sum(int(c.get(k, 0)) for k in ("succeeded", "pruned", "failed"))
    return (f"{done}/{c.get('total', 0)} trials done: {c.get('succeeded', 0)} succeeded, "
            f"{c.get('pruned', 0)} pruned, {c.get('failed', 0)} failed; "
            f"{c.get('running', 0)} running, {c.get('pending', 0)} pending")


def _best_line(status: Mapping[str, Any], metric: str) -> str:
    best = status.get("bestTrial")
    if not best:
        return "best trial: none yet"
    return (f"best trial: {best['name']}  {metric}={_fmt(best.get('metric'))} at step "
            f"{_fmt(best.get('step'))}")


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
                         (phase, _STATE_STYLE.get(phase, "") + " bold"))
    parts: list[Any] = [head]
    if status.get("message"):
        parts.append(Text(f"  {status['message']}"))
    scheduler = spec.get("scheduler") or {}
    parts.append(Text(f"objective: {metric} ({objective.get('mode')}); scheduler: "
                      f"{scheduler.get('type', 'fifo')}; maxConcurrentTrials: "
                      f"{spec.get('maxConcurrentTrials', 1)}"))
    parts.append(Text(_counts_line(status)))
    best = status.get("bestTrial")
    if best:
        table = Table(title="best trial", title_justify="left", show_header=False, box=None,
                      padding=(0, 2))
        table.add_row("name", str(best["name"]))
        table.add_row(metric, _fmt(best.get("metric")))
        table.add_row("step", _fmt(best.get("step")))
        for key, value in _flat(best.get("config") or {}).items():
            table.add_row(f"config.{key}", _fmt(value))
        for key, value in (best.get("metrics") or {}).items():
            if key != metric:
                table.add_row(key, _fmt(value))
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
                          _fmt(rung.get("cutoff")))
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
        return (f"rung {pruned.get('milestone')}: {_fmt(pruned.get('value'))} {worse} "
                f"cutoff {_fmt(pruned.get('cutoff'))}")
    if status.get("state") == "Failed":
        return str(status.get("message") or status.get("reason") or "")
    return ""


def _sort_key(metric: str, descending: bool) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    def key(trial: Mapping[str, Any]) -> tuple[Any, ...]:
        status = trial.get("status") or {}
        if metric == "step":
            value = status.get("step")
        elif metric == "index":
            value = trial["spec"].get("index")
        else:
            value = (status.get("metrics") or {}).get(metric)
            if value is None:
                value = _flat(trial["spec"].get("params") or {}).get(metric)
        if not isinstance(value, int | float | str):
            return (1, 0, "")  # trials without it go last
        if isinstance(value, str):
            return (0, 0, value)
        return (0, -value if descending else value, "")

    return key


def trials_view(experiment: Mapping[str, Any], trials: Sequence[Mapping[str, Any]],
                title: str | None = None) -> Any:
    """One row per trial: state, step, metrics, params, why it stopped."""
    from rich.table import Table

    objective = experiment["spec"]["objective"]["metric"]
    best = ((experiment.get("status") or {}).get("bestTrial") or {}).get("name")
    reported = {m for t in trials for m in (t.get("status") or {}).get("metrics") or {}}
    metrics = [objective, *sorted(reported - {objective})]
    params = sorted({p for t in trials for p in _flat(t["spec"].get("params") or {})})
    table = Table(title=title, title_justify="left")
    table.add_column("trial")
    table.add_column("state")
    table.add_column("step", justify="right")
    for m in metrics:
        table.add_column(m, justify="right")
    for p in params:
        table.add_column(p, justify="right")
    table.add_column("note")
    for t in trials:
        status = t.get("status") or {}
        state = str(status.get("state") or "Pending")
        values = status.get("metrics") or {}
        config = _flat(t["spec"].get("params") or {})
        name = t["metadata"]["name"]
        table.add_row(f"{name} *" if name == best else name,
                      f"[{_STATE_STYLE.get(state, '')}]{state}[/]", _fmt(status.get("step")),
                      *[_fmt(values.get(m)) for m in metrics],
                      *[_fmt(config.get(p)) for p in params],
                      _note(status, experiment["spec"]["objective"]["mode"]))
    return table


def watch_experiment(client: Any, name: str, console: Any, *, interval: float = 1.0,
                     timeout: float | None = None, max_rows: int = 30) -> dict[str, Any]:
    """Live progress until the experiment is Succeeded or Failed; return its final object.

    On a terminal: a progress bar and the trials table, redrawn in place. Elsewhere
    (a pipe, a CI log): one line whenever the counts or the best trial change.
    """
    from rich.console import Group
    from rich.live import Live
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from kubetune.client.tuner import TuneError

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
                                info=f"{phase}  {_best_line(status, metric)}")
                live.update(Group(progress, trials_view(experiment, shown)))
            else:
                line = f"{phase}: {_counts_line(status)}; {_best_line(status, metric)}"
                if line != last_line:
                    console.print(f"{datetime.now().strftime('%H:%M:%S')} {line}")
                    last_line = line
            if phase in TERMINAL:
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
    done = sorted((t for t in trials if t not in live), key=_sort_key(metric, descending))
    return (live + done)[:max_rows]


# -- experiment commands -------------------------------------------------------------------


@main.command()
@click.argument("experiment")
@_experiment_options
def status(experiment: str, namespace: str | None, kubeconfig: str | None,
           prometheus_url: str | None) -> None:
    """Phase, trial counts, best trial, ASHA rungs and conditions of EXPERIMENT."""
    client = _client(namespace, kubeconfig, prometheus_url)
    _console().print(status_view(client.get_experiment(experiment)))


@main.command()
@click.argument("experiment")
@click.option("--sort", "sort_by", default=None, metavar="METRIC",
              help="Sort by a metric (the objective: best first), a parameter, step or index.")
@click.option("--reverse", is_flag=True, help="Reverse the sort order.")
@click.option("--state", "states", multiple=True, metavar="STATE",
              help="Only trials in this state (Pending, Running, Succeeded, Pruned, Failed); "
                   "repeatable or comma-separated.")
@_experiment_options
def trials(experiment: str, sort_by: str | None, reverse: bool, states: tuple[str, ...],
           namespace: str | None, kubeconfig: str | None, prometheus_url: str | None) -> None:
    """A table of EXPERIMENT's trials: state, step, metrics, parameters."""
    from kubetune.client.tuner import TRIAL_STATES, KubetuneError

    client = _client(namespace, kubeconfig, prometheus_url)
    exp = client.get_experiment(experiment)
    rows = client.list_trials(experiment)
    wanted = {s.strip().lower() for group in states for s in group.split(",") if s.strip()}
    unknown = wanted - {s.lower() for s in TRIAL_STATES}
    if unknown:
        raise KubetuneError(f"unknown state {sorted(unknown)[0]!r}; choose from "
                            f"{', '.join(TRIAL_STATES)}")
    if wanted:
        rows = [t for t in rows if str((t.get("status") or {}).get("state") or "Pending").lower()
                in wanted]
    if sort_by:
        objective = exp["spec"]["objective"]
        descending = sort_by == objective["metric"] and objective["mode"] == "max"
        rows = sorted(rows, key=_sort_key(sort_by, descending != reverse))
    elif reverse:
        rows = rows[::-1]
    _console().print(trials_view(exp, rows, title=f"{client.namespace}/{experiment}: "
                                                   f"{len(rows)} trials"))


@main.command()
@click.argument("experiment")
@click.option("--timeout", type=float, default=None, help="Give up after this many seconds.")
@click.option("--interval", type=float, default=1.0, show_default=True)
@_experiment_options
def watch(experiment: str, timeout: float | None, interval: float, namespace: str | None,
          kubeconfig: str | None, prometheus_url: str | None) -> None:
    """Follow EXPERIMENT until it ends; exits 1 if it Failed."""
    client = _client(namespace, kubeconfig, prometheus_url)
    console = _console()
    final = watch_experiment(client, experiment, console, interval=interval, timeout=timeout)
    console.print(status_view(final))
    if (final.get("status") or {}).get("phase") == "Failed":
        _fail(f"{experiment} failed: {final['status'].get('message', '')}")


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not WIDTHxHEIGHT, e.g. 1200x700") from None
    if not (200 <= width <= 8000 and 150 <= height <= 8000):
        raise click.BadParameter(f"{text!r}: width 200-8000 and height 150-8000 pixels")
    return width, height


@main.command()
@click.argument("experiment")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PNG to write (default: EXPERIMENT.png).")
@click.option("--metric", default=None, help="Metric to draw (default: the objective).")
@click.option("--size", default="1200x700", show_default=True, help="Pixels, WIDTHxHEIGHT.")
@_experiment_options
def plot(experiment: str, output: Path | None, metric: str | None, size: str,
         namespace: str | None, kubeconfig: str | None, prometheus_url: str | None) -> None:
    """Learning curves of EXPERIMENT's trials as a PNG.

    The metric against the step for every trial: pruned trials end in an x at
    the rung that stopped them, the best trial is highlighted.
    """
    from kubetune.client.plot import render

    pixels = _size(size)
    client = _client(namespace, kubeconfig, prometheus_url)
    exp = client.get_experiment(experiment)
    rows = client.list_trials(experiment)
    histories, source = client.histories(exp, rows)
    path = render(exp, rows, histories, output or Path(f"{experiment}.png"), metric=metric,
                  size=pixels, source=source)
    click.echo(f"wrote {path} ({len(rows)} trials; {source})")


@main.command()
@click.argument("trial")
@click.option("--attempt", type=int, default=None, help="Which attempt's pod (default: latest).")
@_experiment_options
def logs(trial: str, attempt: int | None, namespace: str | None, kubeconfig: str | None,
         prometheus_url: str | None) -> None:
    """Print the output of TRIAL's pod.

    On the local cluster it is the local runner's log file; elsewhere the pod's
    log from the API.
    """
    client = _client(namespace, kubeconfig, prometheus_url)
    _, text = client.trial_log(trial, attempt)
    click.echo(text, nl=not text.endswith("\n"))


# -- the dev journey -------------------------------------------------------------------------


@main.command()
@click.argument("example", type=click.Path(path_type=Path), default="examples/mnist-asha.yaml")
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("--down", is_flag=True, help="Stop the local cluster at the end.")
@click.option("--no-operator", is_flag=True,
              help="Use an operator that is already running instead of starting one.")
@click.option("--cluster-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The local cluster's state directory (default: $KUBETUNE_CLUSTER_DIR or "
                   "/dev/shm/kubetune-$UID/cluster).")
@click.option("-o", "--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Where to write the learning-curve plot.")
@click.option("--timeout", type=float, default=1800, show_default=True)
@_handles_errors
def dev(example: Path, namespace: str, down: bool, no_operator: bool, cluster_dir: Path | None,
        plot_path: Path | None, timeout: float) -> None:
    """Run EXAMPLE end to end on a local control plane (no Docker needed).

    Starts or reuses the local cluster, installs the CRDs, starts the operator,
    applies EXAMPLE, shows its progress, then prints the best configuration and
    the learning-curve plot.
    """
    from kubetune.client.devjourney import run_dev

    console = _console()
    started = time.monotonic()

    def say(line: str) -> None:
        console.print(f"[dim]{datetime.now().strftime('%H:%M:%S')}[/] {line}")

    def show(client: Any, name: str) -> dict[str, Any]:
        return watch_experiment(client, name, console, timeout=timeout)

    result = run_dev(example, namespace=namespace, state_dir=cluster_dir,
                     start_operator=not no_operator, down=down, timeout=timeout,
                     plot_path=plot_path, watch=show, say=say)
    status = result.experiment.get("status") or {}
    metric = result.experiment["spec"]["objective"]["metric"]
    console.print()
    console.print(status_view(result.experiment))
    console.print()
    best = result.best
    if best:
        console.print(f"[bold]best configuration[/] ({best['name']}, {metric}="
                      f"{_fmt(best.get('metric'))} at step {_fmt(best.get('step'))}):")
        console.print(json.dumps(best.get("config") or {}, indent=2, sort_keys=True))
    console.print(f"[bold]learning curves:[/] {result.plot}")
    if result.operator_log is not None:
        console.print(f"operator log: {result.operator_log}")
    console.print(f"done in {time.monotonic() - started:.0f}s")
    if not down:
        kc = result.cluster.kubeconfig
        console.print(f"the local cluster is still running (KUBECONFIG={kc}); look around with "
                      f"`kubetune trials {result.experiment['metadata']['name']}` or "
                      f"`kubectl --kubeconfig {kc} get kubetune -n {namespace}`, and stop it with "
                      "`kubetune cluster down`")
    if status.get("phase") != "Succeeded":
        _fail(f"the experiment ended {status.get('phase')}: {status.get('message', '')}")


if __name__ == "__main__":
    main()
