"""kubetune: hyperparameter tuning as a Kubernetes operator.

The package root is imported by every process, the trial pod included, where
only prometheus-client is installed (`pip install kubetune`). So the user-side
names below are imported on first use; mypy and IDEs see the real imports.

- `kubetune.trial`: the in-trial SDK (trial pod)
- `kubetune.Tuner`, `kubetune.tune`, `kubetune.client`: the user's side (`kubetune[client]`)
- `kubetune.controller`, `python -m kubetune`: the operator pod (`kubetune[operator]`)
- `kubetune.devcluster`: the local control plane for development and tests
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubetune.client.config import (
        ASHAScheduler,
        FailureConfig,
        FIFOScheduler,
        MedianStoppingRule,
        PopulationBasedTraining,
        RunConfig,
        TuneConfig,
    )
    from kubetune.client.results import Result, ResultGrid
    from kubetune.client.scaling import ScalingConfig
    from kubetune.client.searchers import OptunaSearch
    from kubetune.client.tuner import Tuner

__version__ = "0.1.0"

__all__ = [
    "ASHAScheduler",
    "FIFOScheduler",
    "FailureConfig",
    "MedianStoppingRule",
    "OptunaSearch",
    "PopulationBasedTraining",
    "Result",
    "ResultGrid",
    "RunConfig",
    "ScalingConfig",
    "TuneConfig",
    "Tuner",
    "__version__",
    "init",
]

def init(*_: object, **__: object) -> None:
    """`ray.init()` for code ported from Ray (`import kubetune as ray`): nothing to start;
    trials run on the cluster the kubeconfig names, as each Tuner finds it."""


# Where each user-side name lives; imported on first access.
_CLIENT_NAMES = {
    "ASHAScheduler": "kubetune.client.config",
    "FIFOScheduler": "kubetune.client.config",
    "FailureConfig": "kubetune.client.config",
    "MedianStoppingRule": "kubetune.client.config",
    "PopulationBasedTraining": "kubetune.client.config",
    "RunConfig": "kubetune.client.config",
    "TuneConfig": "kubetune.client.config",
    "OptunaSearch": "kubetune.client.searchers",
    "Result": "kubetune.client.results",
    "ResultGrid": "kubetune.client.results",
    "ScalingConfig": "kubetune.client.scaling",
    "Tuner": "kubetune.client.tuner",
}


# Hidden from type checkers, which then see only the real imports above and report
# a misspelt name (kubetune.Tunner) instead of typing it Any.
if not TYPE_CHECKING:
    def __getattr__(name: str) -> Any:
        if name not in _CLIENT_NAMES:
            raise AttributeError(f"module 'kubetune' has no attribute {name!r}")
        try:
            module = importlib.import_module(_CLIENT_NAMES[name])
        except ModuleNotFoundError as e:
            raise ModuleNotFoundError(
                f"kubetune.{name} needs the client extra: pip install 'kubetune[client]' ({e})"
            ) from e
        return getattr(module, name)


def __dir__() -> list[str]:
    """The user-side names too, so dir(kubetune) and tab completion list them before use."""
    return sorted({*globals(), *__all__})
