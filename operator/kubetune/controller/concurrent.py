"""A tick's writes, sent concurrently: one chain of calls per trial, chains side by side.

Restart safety needs order only within a trial (its decision persisted before its pod is
deleted, its TuneTrial created before its pod), never across trials, so each trial's writes
form a chain run in order, and the chains of a tick share a bounded pool of threads. A
chain stops at its first error; the others run to their end (each write is idempotent and
the next tick repairs whatever one did not do), and the tick then fails with the error of
the first failed chain, in the tick's own order, as a sequential tick would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor

WRITERS = 16
"""Writes of the whole operator in flight at once (all experiments together)."""

Chain = Sequence[Callable[[], object]]


def _run(chain: Chain) -> None:
    for call in chain:
        call()


def run_chains(pool: Executor | None, chains: Sequence[Chain]) -> None:
    """Run each chain's calls in order, the chains concurrently on `pool`; raise the first
    failed chain's error once every chain has ended."""
    chains = [c for c in chains if c]
    if pool is None or len(chains) <= 1:
        for chain in chains:
            _run(chain)
        return
    futures = [pool.submit(_run, chain) for chain in chains]
    errors = [f.exception() for f in futures]  # waits for every chain
    first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise first
