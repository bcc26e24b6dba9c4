"""The `kubetune` command line, on the user's laptop (`pip install 'kubetune[client]'`).

`main` is the click group (the console script `kubetune`); its commands are
split by group: `experiments` (status, trials, watch, plot, logs), `cluster`
(cluster up/down/env) and `dev`. When one of the client's dependencies is not
installed, the command says in one line which extra to install instead of
printing a traceback, whether the module is missing at start-up (click) or
only when a command first needs it (kubernetes, rich, pandas, matplotlib).
"""

from __future__ import annotations

import sys
from typing import Any

#: Top-level modules the client extra installs (and the modules they bring).
CLIENT_MODULES = frozenset({
    "click", "rich", "kubernetes", "urllib3", "pandas", "numpy", "matplotlib", "requests",
    "yaml", "pydantic",
})


def missing_client_extra(error: ModuleNotFoundError) -> str | None:
    """One line naming the extra to install, when `error` is a missing client dependency."""
    name = (error.name or "").split(".")[0]
    if name not in CLIENT_MODULES:
        return None
    return (f"kubetune's client needs {name}, which is not installed: "
            "pip install 'kubetune[client]'")


main: Any
try:
    from kubetune.client.cli.app import main
except ModuleNotFoundError as _missing:
    _message = missing_client_extra(_missing)
    if _message is None:
        raise

    def main() -> None:
        """Say which extra to install, and exit 1."""
        print(f"error: {_message}", file=sys.stderr)
        sys.exit(1)


__all__ = ["CLIENT_MODULES", "main", "missing_client_extra"]
