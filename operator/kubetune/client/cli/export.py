"""`kubetune export`: an experiment's curves as TensorBoard runs and Ray's per-trial files."""

from __future__ import annotations

from pathlib import Path

import click

from kubetune.client.cli.options import experiment_client, experiment_options

_DIR = click.Path(file_okay=False, path_type=Path)


@click.command()
@click.argument("experiment")
@click.option("--tensorboard", type=_DIR, default=None, metavar="DIR",
              help="Write TensorBoard event files: one run per trial, every metric against "
                   "the step, configs and final metrics in the HParams tab.")
@click.option("--csv", "csv_dir", type=_DIR, default=None, metavar="DIR",
              help="Write Ray's DIR/<trial>/progress.csv.")
@click.option("--json", "json_dir", type=_DIR, default=None, metavar="DIR",
              help="Write Ray's DIR/<trial>/result.json (one report a line) and params.json.")
@experiment_options
def export(experiment: str, tensorboard: Path | None, csv_dir: Path | None,
           json_dir: Path | None, namespace: str | None, kubeconfig: str | None,
           prometheus_url: str | None) -> None:
    """Write EXPERIMENT's trials to files: TensorBoard, or Ray Tune's CSV and JSON logs.

    The curves come from Prometheus, completed by what the TuneTrials record
    (rung values, final metrics), as for `kubetune plot`. Point TensorBoard at
    the --tensorboard DIR (tensorboard --logdir DIR), or Ray's
    ExperimentAnalysis at the --csv/--json DIR.
    """
    from kubetune.client.export import export_experiment

    if tensorboard is None and csv_dir is None and json_dir is None:
        raise click.UsageError("give at least one of --tensorboard DIR, --csv DIR, --json DIR")
    client = experiment_client(namespace, kubeconfig, prometheus_url)
    summary = export_experiment(client, experiment, tensorboard=tensorboard, csv=csv_dir,
                                json=json_dir)
    for fmt, target in (("tensorboard", tensorboard), ("csv", csv_dir), ("json", json_dir)):
        if target is not None:
            click.echo(f"{fmt}: {target}")
    click.echo(str(summary))
