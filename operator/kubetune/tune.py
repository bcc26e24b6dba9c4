"""`from kubetune import tune`: Ray Tune's names in one module, as `from ray import tune`.

Imported on the user's side (laptop, notebook). Search-space functions come from
`kubetune.client.domains`, the Tuner from `kubetune.client.tuner`, its configs
from `kubetune.client.config` and its results from `kubetune.client.results`;
this module only re-exports them and is imported by none of them.
"""

from __future__ import annotations

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
from kubetune.client.results import Result, ResultGrid
from kubetune.client.scaling import ScalingConfig
from kubetune.client.searchers import OptunaSearch
from kubetune.client.tuner import Tuner

__all__ = [
    "ASHAScheduler",
    "AsyncHyperBandScheduler",
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
