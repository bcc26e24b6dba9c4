"""kubetune: hyperparameter tuning as a Kubernetes operator.

The package root stays light: `kubetune.trial` runs inside trial pods with only
prometheus-client installed, so the user-side API is imported lazily.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Tuner": "kubetune.tuner",
    "TuneConfig": "kubetune.tuner",
    "ResultGrid": "kubetune.tuner",
    "Result": "kubetune.tuner",
    "ASHAScheduler": "kubetune.tuner",
    "FIFOScheduler": "kubetune.tuner",
    "MedianStoppingRule": "kubetune.tuner",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kubetune' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
