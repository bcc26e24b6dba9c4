"""Search spaces and samplers: which config each trial runs.

Pure: random and grid configs are a function of (search space, seed, trial
index) alone; Optuna's model-based samplers (kubetune.search.optuna) add the
history of the trials before, rebuilt from what is persisted, so the operator
can recompute any decision after a restart without storing a sampler's state.
Depends only on kubetune.api (and optuna, imported when a model-based search is
first used).
"""

from typing import Any

from kubetune.search.domains import (
    Choice,
    Constant,
    Domain,
    Grid,
    LogRandInt,
    LogUniform,
    Normal,
    Parameter,
    QRandInt,
    Quantized,
    RandInt,
    SearchSpace,
    SearchSpaceError,
    Uniform,
    parse_space,
    space_from_spec,
)
from kubetune.search.samplers import BasicVariantSampler, flatten_params, parameter_stream

_OPTUNA = ("HistoryRecord", "OptunaSuggester")


def __getattr__(name: str) -> Any:
    """HistoryRecord and OptunaSuggester, importing optuna only when they are first used."""
    if name in _OPTUNA:
        from kubetune.search import optuna

        return getattr(optuna, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BasicVariantSampler",
    "Choice",
    "Constant",
    "Domain",
    "Grid",
    "HistoryRecord",
    "LogRandInt",
    "LogUniform",
    "Normal",
    "OptunaSuggester",
    "Parameter",
    "QRandInt",
    "Quantized",
    "RandInt",
    "SearchSpace",
    "SearchSpaceError",
    "Uniform",
    "flatten_params",
    "parameter_stream",
    "parse_space",
    "space_from_spec",
]
