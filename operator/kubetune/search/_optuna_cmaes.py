"""CMA-ES (Optuna's CmaEsSampler) over a study rebuilt for every trial.

CmaEsSampler keeps the CMA optimizer in the system attrs of the trials it asks:
``cma:generation`` on every asked trial, the pickled optimizer (hex, split into
``cma:optimizer:0..k``) on the trial whose ask told it a generation, and with
with_margin ``x_for_tell``. A study rebuilt from params and values alone has
none of that and never leaves generation 0. So what the sampler wrote on the
asked trial is captured (`captured_state`), persisted on the TuneTrial at
creation (spec.samplerState) and set back on the rebuilt trial
(`restored_state`); Optuna's own _restore_optimizer and _get_solution_trials
then read it unchanged, and trial i's config stays a function of (seed, i, what
is persisted).

The persisted optimizer is a pickle that Optuna loads, and a TuneTrial is an
object others may write: before a rebuilt trial carries it, it is read with an
unpickler that admits only the CMA classes and numpy's array reconstruction,
and a state that fails that (or is malformed) is left out, as if never written.
"""

from __future__ import annotations

import io
import pickle
import warnings
from collections.abc import Mapping
from typing import Any, Final

import numpy as np
from optuna.samplers import CmaEsSampler

from kubetune.api.search_algorithm import CMAES_MAX_DIMENSIONS

MAX_STATE_CHARS: Final = 256 * 1024
"""A sampler state larger than this (JSON characters) is not persisted (so never exceeded at
CMAES_MAX_DIMENSIONS); the trials then start the CMA search afresh."""

_ALLOWED_GLOBALS: Final = frozenset({
    ("cmaes._cma", "CMA"),
    ("cmaes._cmawm", "CMAwM"),
    ("cmaes._sepcma", "SepCMA"),
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
})


class _CmaEsSampler(CmaEsSampler):
    """CmaEsSampler whose optimizer pickles the same in every process.

    cmaes allocates its function-value history (read only by should_stop, which Optuna
    no longer calls) with np.empty: the unwritten entries would carry whatever the
    process's memory held into the pickle, and so onto the TuneTrial. They start at 0.
    """

    def _init_optimizer(self, *args: Any, **kwargs: Any) -> Any:
        optimizer = super()._init_optimizer(*args, **kwargs)
        inner = getattr(optimizer, "_cma", optimizer)
        history = getattr(inner, "_funhist_values", None)
        if isinstance(history, np.ndarray):
            history.fill(0.0)
        return optimizer


def build_cmaes(options: Mapping[str, Any], seed: int) -> CmaEsSampler:
    """A fresh CmaEsSampler with the experiment's options (camelCase), seeded with `seed`."""
    def option(name: str, default: Any) -> Any:
        value = options.get(name)
        return default if value is None else value

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sigma0 is deprecated, with_margin experimental
        return _CmaEsSampler(
            seed=seed, n_startup_trials=option("nStartupTrials", 1),
            sigma0=options.get("sigma0"), popsize=options.get("popsize"),
            with_margin=option("withMargin", False),
            use_separable_cma=option("useSeparableCma", False),
            warn_independent_sampling=False)


def _prefix(sampler: CmaEsSampler) -> str:
    return str(sampler._attr_prefix)


def captured_state(sampler: CmaEsSampler, system_attrs: Mapping[str, Any]) -> dict[str, Any]:
    """What the sampler wrote on the asked trial that a later rebuild needs ({} if too big)."""
    prefix = _prefix(sampler)
    state = {k: v for k, v in system_attrs.items() if k.startswith(prefix) or k == "x_for_tell"}
    if len(repr(state)) > MAX_STATE_CHARS:
        return {}
    return dict(sorted(state.items()))


class _CmaUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"{module}.{name} is not a CMA optimizer's part")
        return super().find_class(module, name)


def _optimizer_ok(chunks: Mapping[str, Any], key: str) -> bool:
    """Whether the chunks are key:0..k-1, hex, and unpickle to a CMA optimizer only."""
    try:
        text = "".join(chunks[f"{key}:{i}"] for i in range(len(chunks)))
        loaded = _CmaUnpickler(io.BytesIO(bytes.fromhex(text))).load()
    except Exception:  # any malformed state is simply not restored
        return False
    return type(loaded).__name__ in ("CMA", "CMAwM", "SepCMA")


def restored_state(sampler_type: str, state: Mapping[str, Any]) -> dict[str, Any]:
    """The system attrs a rebuilt trial gets from its persisted state; {} when it is unsafe.

    Only a CMA state is restored (other samplers keep nothing on their trials).
    """
    if sampler_type != "cmaes" or not state:
        return {}
    out: dict[str, Any] = {}
    optimizer: dict[str, Any] = {}
    for key, value in state.items():
        if not isinstance(key, str):
            continue
        prefix = key.split(":", 1)[0] + ":"
        if prefix not in ("cma:", "cmawm:", "sepcma:") and key != "x_for_tell":
            continue
        if key.endswith(":generation"):
            if isinstance(value, int) and not isinstance(value, bool):
                out[key] = value
        elif ":optimizer:" in key:
            if isinstance(value, str):
                optimizer[key] = value
        elif key == "x_for_tell" and isinstance(value, list) and all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            out[key] = [float(v) for v in value]
    by_prefix: dict[str, dict[str, Any]] = {}
    for key, value in optimizer.items():
        by_prefix.setdefault(key.rsplit(":", 1)[0], {})[key] = value
    for key, chunks in by_prefix.items():
        if _optimizer_ok(chunks, key):
            out.update(chunks)
    return out


__all__ = ["CMAES_MAX_DIMENSIONS", "build_cmaes", "captured_state", "restored_state"]
