"""Search spaces and samplers: which config each trial runs.

Pure: a config is a function of (search space, seed, trial index) alone, so the
operator can recompute any trial's config after a restart without storing a
sampler's state. Depends only on kubetune.api.
"""

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

__all__ = [
    "BasicVariantSampler",
    "Choice",
    "Constant",
    "Domain",
    "Grid",
    "LogRandInt",
    "LogUniform",
    "Normal",
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
