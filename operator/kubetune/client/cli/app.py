"""The `kubetune` command group: every command, and one line for a missing dependency.

Commands live by group in `experiments`, `cluster` and `dev`; this module only
assembles them.
"""

from __future__ import annotations

from typing import Any

import click

from kubetune.client.cli import missing_client_extra
from kubetune.client.cli.cluster import cluster
from kubetune.client.cli.dev import dev
from kubetune.client.cli.experiments import COMMANDS
from kubetune.client.cli.export import export


class KubetuneGroup(click.Group):
    """A click group that turns a missing client dependency into one line and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as e:
            message = missing_client_extra(e)
            if message is None:
                raise
            raise click.ClickException(message) from None


@click.group(cls=KubetuneGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """kubetune: hyperparameter tuning on Kubernetes."""


for command in (*COMMANDS, export, cluster, dev):
    main.add_command(command)
