"""`kubetune status|trials|watch|plot|logs`: views of one experiment in the cluster."""

from __future__ import annotations

from pathlib import Path

import click

from kubetune.client.cli.options import console, experiment_client, experiment_options, fail
from kubetune.client.cli.views import sort_key, status_view, trials_view, watch_experiment
from kubetune.client.errors import KubetuneError
from kubetune.client.workers import latest_attempts, list_workers, placement, rank_log
from kubetune.contract import EXPERIMENT_LABEL, TRIAL_STATES


@click.command()
@click.argument("experiment")
@experiment_options
def status(experiment: str, namespace: str | None, kubeconfig: str | None,
           prometheus_url: str | None) -> None:
    """Phase, trial counts, best trial, ASHA rungs and conditions of EXPERIMENT."""
    client = experiment_client(namespace, kubeconfig, prometheus_url)
    console().print(status_view(client.get_experiment(experiment)))


@click.command()
@click.argument("experiment")
@click.option("--sort", "sort_by", default=None, metavar="METRIC",
              help="Sort by a metric (the objective: best first), a parameter, step or index.")
@click.option("--reverse", is_flag=True, help="Reverse the sort order.")
@click.option("--state", "states", multiple=True, metavar="STATE",
              help="Only trials in this state (Pending, Running, Succeeded, Pruned, Failed); "
                   "repeatable or comma-separated.")
@experiment_options
def trials(experiment: str, sort_by: str | None, reverse: bool, states: tuple[str, ...],
           namespace: str | None, kubeconfig: str | None, prometheus_url: str | None) -> None:
    """A table of EXPERIMENT's trials: state, step, metrics, parameters."""
    client = experiment_client(namespace, kubeconfig, prometheus_url)
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
        rows = sorted(rows, key=sort_key(sort_by, descending != reverse))
    elif reverse:
        rows = rows[::-1]
    workers = None
    if exp["spec"].get("workers"):  # multi-worker trials: where each rank runs
        found = list_workers(client._core(), client.namespace, f"{EXPERIMENT_LABEL}={experiment}")
        workers = {t: placement(r) for t, r in latest_attempts(found).items()}
    console().print(trials_view(exp, rows, title=f"{client.namespace}/{experiment}: "
                                                   f"{len(rows)} trials", workers=workers))


@click.command()
@click.argument("experiment")
@click.option("--timeout", type=float, default=None, help="Give up after this many seconds.")
@click.option("--interval", type=float, default=1.0, show_default=True)
@experiment_options
def watch(experiment: str, timeout: float | None, interval: float, namespace: str | None,
          kubeconfig: str | None, prometheus_url: str | None) -> None:
    """Follow EXPERIMENT until it ends; exits 1 if it Failed."""
    client = experiment_client(namespace, kubeconfig, prometheus_url)
    out = console()
    final = watch_experiment(client, experiment, out, interval=interval, timeout=timeout)
    out.print(status_view(final))
    if (final.get("status") or {}).get("phase") == "Failed":
        fail(f"{experiment} failed: {final['status'].get('message', '')}")


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not WIDTHxHEIGHT, e.g. 1200x700") from None
    if not (200 <= width <= 8000 and 150 <= height <= 8000):
        raise click.BadParameter(f"{text!r}: width 200-8000 and height 150-8000 pixels")
    return width, height


@click.command()
@click.argument("experiment")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PNG to write (default: EXPERIMENT.png).")
@click.option("--metric", default=None, help="Metric to draw (default: the objective).")
@click.option("--size", default="1200x700", show_default=True, help="Pixels, WIDTHxHEIGHT.")
@experiment_options
def plot(experiment: str, output: Path | None, metric: str | None, size: str,
         namespace: str | None, kubeconfig: str | None, prometheus_url: str | None) -> None:
    """Learning curves of EXPERIMENT's trials as a PNG.

    The metric against the step for every trial: pruned trials end in an x at
    the rung that stopped them, the best trial is highlighted.
    """
    from kubetune.client.plot import render

    pixels = _size(size)
    client = experiment_client(namespace, kubeconfig, prometheus_url)
    exp = client.get_experiment(experiment)
    rows = client.list_trials(experiment)
    histories, source = client.histories(exp, rows)
    path = render(exp, rows, histories, output or Path(f"{experiment}.png"), metric=metric,
                  size=pixels, source=source)
    click.echo(f"wrote {path} ({len(rows)} trials; {source})")


@click.command()
@click.argument("trial")
@click.option("--attempt", type=int, default=None, help="Which attempt's pod (default: latest).")
@click.option("--rank", type=int, default=None,
              help="A multi-worker trial's worker (its pod's rank; 0 reports the metrics).")
@experiment_options
def logs(trial: str, attempt: int | None, rank: int | None, namespace: str | None,
         kubeconfig: str | None, prometheus_url: str | None) -> None:
    """Print the output of TRIAL's pod (of its worker of rank --rank).

    On the local cluster it is the local runner's log file; elsewhere the pod's
    log from the API.
    """
    client = experiment_client(namespace, kubeconfig, prometheus_url)
    if rank is not None:
        status = client.get_trial(trial).get("status") or {}
        state_dir = str(client.local.state_dir) if client.local is not None else None
        _, text = rank_log(client._core(), client.namespace, trial, rank, attempt, status,
                           state_dir)
        click.echo(text, nl=not text.endswith("\n"))
        return
    _, text = client.trial_log(trial, attempt)
    click.echo(text, nl=not text.endswith("\n"))


COMMANDS = (status, trials, watch, plot, logs)
