"""What every `kubetune` command shares: the experiment options, errors as one line, output.

Every experiment command takes -n/--namespace, --kubeconfig (default: $KUBECONFIG,
else the running local cluster's admin kubeconfig, else ~/.kube/config) and
--prometheus-url. A problem the user can fix (no such experiment, an
unreachable cluster) prints one line on stderr and exits 1, without a traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from kubetune.client.experiments import ExperimentClient
from kubetune.contract import ENV_PROMETHEUS_URL

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str) -> NoReturn:
    """`error: <message>` on stderr, exit 1."""
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def console() -> Any:
    """A rich Console for stdout; 160 columns when it is not a terminal."""
    from rich.console import Console

    out = Console(highlight=False)
    if not out.is_terminal:
        out = Console(highlight=False, width=160)  # pipes and files: don't wrap at 80
    return out


def handles_errors(f: F) -> F:
    """One line on stderr and exit 1 for the errors a user can fix."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from pydantic import ValidationError

        from kubetune.api import SpecError
        from kubetune.client.errors import KubetuneError

        try:
            return f(*args, **kwargs)
        except (KubetuneError, SpecError, ValidationError) as e:
            fail(str(e).splitlines()[0] if isinstance(e, ValidationError) else str(e))
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def experiment_options(f: F) -> F:
    """-n/--namespace, --kubeconfig and --prometheus-url, and `handles_errors`."""
    f = click.option("--prometheus-url", envvar=ENV_PROMETHEUS_URL, default=None,
                     help="Prometheus for learning curves (default: the experiment's, or the "
                          "local cluster's).")(f)
    f = click.option("--kubeconfig", type=click.Path(dir_okay=False), default=None,
                     help="Default: $KUBECONFIG, else the local cluster's, else ~/.kube/config.")(f)
    f = click.option("-n", "--namespace", default=None,
                     help="Namespace (default: the kubeconfig context's, else default).")(f)
    return handles_errors(f)


def experiment_client(namespace: str | None, kubeconfig: str | None,
                      prometheus_url: str | None) -> ExperimentClient:
    """The client for the experiment options' values."""
    return ExperimentClient(kubeconfig, namespace=namespace, prometheus_url=prometheus_url)
