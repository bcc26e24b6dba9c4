"""A tick's writes, sent concurrently: one chain of calls per trial, chains side by side.

Restart safety needs order only within a trial (its decision persisted before its pod is
deleted, its TuneTrial created before its pod), never across trials, so each trial's writes
form a chain run in order, and the chains of a tick share a bounded pool of threads. A
chain stops at its first error; the others run to their end (each write is idempotent and
the next tick repairs whatever one did not do), and the tick then fails with the error of
the first failed chain, in the tick's own order, as a sequential tick would. On the
operator's Writers a decision that ends a trial goes before a trial's mark (Running, a
rung's record), and both before every creation waiting.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from typing import Any

WRITERS = 16
"""Writes in flight at once (all experiments together)."""

DECISION, MARK, CREATION = 0, 1, 2
"""The priorities of writes on the Writers: a decision that ends a trial or frees a slot (its
status patch, its pod's deletion) goes before every other write waiting, whichever
experiment sent it; then the trial status patches that end nothing (Running, a rung's
record); then the creations. With writes in turn at 50 experiments of 4 running each, a
decision waited 3-7 s (p50) for the creations the other experiments' ticks had sent before
it (benchmarks/RESULTS.md 2.1g); at 2,000 trials the first wave's decisions waited for
some 130 Running marks on a busy apiserver (2.1j)."""


class Writers(Executor):
    """A pool of threads that runs the waiting call of the first priority first, in turn
    within a priority. The threads are daemons: a write cut off when the process ends is
    one the next tick repairs, as after a kill."""

    def __init__(self, workers: int, thread_name_prefix: str = "kubetune-write") -> None:
        self._ready = threading.Condition()
        self._waiting: list[tuple[int, int, Future[Any], Callable[[], Any]]] = []
        self._order = itertools.count()
        self._closed = False
        for i in range(workers):
            threading.Thread(target=self._work, name=f"{thread_name_prefix}-{i}",
                             daemon=True).start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """A creation's call (Executor's interface)."""
        return self.submit_at(CREATION, fn, *args, **kwargs)

    def submit_at(self, priority: int, fn: Callable[..., Any], /, *args: Any,
                  **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        with self._ready:
            if self._closed:
                raise RuntimeError("the writers are shut down")
            heapq.heappush(self._waiting, (priority, next(self._order), future,
                                           lambda: fn(*args, **kwargs)))
            self._ready.notify()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._ready:
            self._closed = True
            if cancel_futures:
                for _, _, future, _ in self._waiting:
                    future.cancel()
                self._waiting.clear()
            self._ready.notify_all()

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._waiting and not self._closed:
                    self._ready.wait()
                if not self._waiting:
                    return
                _, _, future, call = heapq.heappop(self._waiting)
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as e:  # handed to the caller with the future
                future.set_exception(e)


Chain = Sequence[Callable[[], object]]


def run_chain(chain: Chain) -> None:
    """Run one chain's calls in order; the first error ends it."""
    for call in chain:
        call()


def run_chains(pool: Executor | None, chains: Sequence[Chain],
               priority: int | Sequence[int] = CREATION) -> None:
    """Run each chain's calls in order, the chains concurrently on `pool` (at `priority` on
    Writers: one for all, or one a chain); raise the first failed chain's error, in the
    chains' order, once every chain has ended."""
    priorities = [priority] * len(chains) if isinstance(priority, int) else list(priority)
    kept = [(c, p) for c, p in zip(chains, priorities, strict=True) if c]
    chains = [c for c, _ in kept]
    if pool is None or len(chains) <= 1:
        for chain in chains:
            run_chain(chain)
        return
    if isinstance(pool, Writers):
        futures = [pool.submit_at(p, run_chain, c) for c, p in kept]
    else:
        futures = [pool.submit(run_chain, chain) for chain in chains]
    errors = [f.exception() for f in futures]  # waits for every chain
    first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise first
