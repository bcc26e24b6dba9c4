"""`from kubetune import tune`: Ray Tune's names in one module, as `from ray import tune`.

Imported on the user's side (laptop, notebook), and in trials for Ray's in-trial calls
(`kubetune.trial.tune_api`), which need no client extra. Search-space functions come from
`kubetune.client.domains`, the Tuner from `kubetune.client.tuner`, its configs
from `kubetune.client.config` and its results from `kubetune.client.results`;
this module only re-exports them and is imported by none of them.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

# Ray's in-trial calls (tune.report, tune.get_checkpoint, tune.Checkpoint, tune.get_context)
# import only the stdlib: they work in a trial image that has only `pip install kubetune`.
from kubetune.trial.tune_api import Checkpoint, TrialContext, get_checkpoint, get_context, report


def _client_installed() -> bool:
    """The client extra's packages that the names below import up front are there."""
    return all(importlib.util.find_spec(m) is not None
               for m in ("pydantic", "kubernetes", "requests", "urllib3"))


if TYPE_CHECKING or _client_installed():
    from kubetune.client.config import (
        ASHAScheduler,
        AsyncHyperBandScheduler,
        FailureConfig,
        FIFOScheduler,
        MedianStoppingRule,
        PopulationBasedTraining,
        RunConfig,
        TuneConfig,
    )
    from kubetune.client.domains import (
        Domain,
        choice,
        grid_search,
        lograndint,
        loguniform,
        qlograndint,
        qloguniform,
        qrandint,
        qrandn,
        quniform,
        randint,
        randn,
        sample_from,
        search_space,
        uniform,
    )
    from kubetune.client.ray_defaults import with_resources
    from kubetune.client.results import Result, ResultGrid
    from kubetune.client.scaling import ScalingConfig
    from kubetune.client.searchers import OptunaSearch
    from kubetune.client.tuner import Tuner


__all__ = [
    "ASHAScheduler",
    "AsyncHyperBandScheduler",
    "Checkpoint",
    "Domain",
    "FIFOScheduler",
    "FailureConfig",
    "MedianStoppingRule",
    "OptunaSearch",
    "PopulationBasedTraining",
    "Result",
    "ResultGrid",
    "RunConfig",
    "ScalingConfig",
    "TrialContext",
    "TuneConfig",
    "Tuner",
    "choice",
    "get_checkpoint",
    "get_context",
    "grid_search",
    "lograndint",
    "loguniform",
    "qlograndint",
    "qloguniform",
    "qrandint",
    "qrandn",
    "quniform",
    "randint",
    "randn",
    "report",
    "sample_from",
    "search_space",
    "uniform",
    "with_resources",
]


def __getattr__(name: str) -> object:
    if name in __all__:  # a user-side name in a trial image without the client extra
        raise ModuleNotFoundError(
            f"kubetune.tune.{name} needs the client extra: pip install 'kubetune[client]' "
            "(in a trial, tune.report, get_checkpoint, get_context and Checkpoint need none)")
    raise AttributeError(f"module 'kubetune.tune' has no attribute {name!r}")
