"""`from kubetune import tune`: Ray Tune's names in one module, as `from ray import tune`.

Imported on the user's side (laptop, notebook). Search-space functions come from
`kubetune.client.domains`, the Tuner and its configs from `kubetune.client`;
this module only re-exports them.
"""

from __future__ import annotations

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
from kubetune.client.tuner import (
    ASHAScheduler,
    AsyncHyperBandScheduler,
    FailureConfig,
    FIFOScheduler,
    MedianStoppingRule,
    Result,
    ResultGrid,
    RunConfig,
    TuneConfig,
    Tuner,
)

__all__ = [
    "ASHAScheduler",
    "AsyncHyperBandScheduler",
    "Domain",
    "FIFOScheduler",
    "FailureConfig",
    "MedianStoppingRule",
    "Result",
    "ResultGrid",
    "RunConfig",
    "TuneConfig",
    "Tuner",
    "choice",
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
    "sample_from",
    "search_space",
    "uniform",
]
