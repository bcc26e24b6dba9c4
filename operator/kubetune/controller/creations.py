"""A tick's creations, sent in the background: an experiment's next tick does not wait for them.

Part of the operator pod. A tick persists its decisions (trial status patches, deletions)
before it returns; its new TuneTrials and pods, then its Events and its status, go out on
the writers (concurrent.py) while the experiment's loop goes on. Until that batch is done,
the experiment's ticks decide only: they write the decisions about the trials whose
creations are not in flight and create nothing, so no trial is created twice and the
concurrency cap holds (apply.py). A trial's creations are a chain (its TuneTrial, then its
pod); once its chain has ended, the ticks decide about it again, before the batch ends.
When the batch ends, the experiment's loop is woken; its next tick sees what was created
(view.Writes) and creates what is left, and an error of the batch is raised by that tick,
so it lands on the experiment as any tick's error does.

Nothing decided depends on this: a batch lost with the operator is what a tick killed
halfway leaves, which the next tick repairs (each write is idempotent).

Measured at 50 experiments of 100 trials with 4 running each, on 2 cores: a tick that
waited for its creations lasted 4.2 s on average, the time the writers took to drain the
creations of every experiment's tick, and a rung value scraped meanwhile waited for it
(benchmarks/RESULTS.md 2.1g). At 10,000 trials with 500 running, deciding about a trial
once its own chain has ended, not its whole batch, ended all 10,000 in 915 s, where 9,633
had ended in 1,200 s before (2.1h).
"""

from __future__ import annotations

import contextvars
import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future

from kubetune.controller.concurrent import Chain, run_chain, run_chains
from kubetune.controller.view import Key


class Creations:
    """Per operator: each experiment's batch of creations in flight, and the error of the last
    one that failed until a tick takes it."""

    def __init__(self, pool: Executor | None, wake: Callable[[Key], None] | None = None) -> None:
        self._pool = pool
        self._wake = wake
        self._lock = threading.Lock()  # batches end on the writers' threads
        self._busy: dict[Key, tuple[set[str], threading.Event]] = {}
        """Per experiment in flight: the trials whose chains have not ended, and the batch's
        end."""
        self._failed: dict[Key, BaseException] = {}

    def creating(self, key: Key) -> frozenset[str] | None:
        """The trials whose creations are in flight for experiment `key` (empty once every
        chain has ended, until the batch's Events and status are out); None when no batch
        is."""
        with self._lock:
            busy = self._busy.get(key)
            return frozenset(busy[0]) if busy is not None else None

    def wait(self, key: Key, timeout: float) -> bool:
        """Wait until `key`'s batch in flight, if any, has ended; whether it has."""
        with self._lock:
            busy = self._busy.get(key)
        return busy is None or busy[1].wait(timeout)

    def take_failure(self, key: Key) -> BaseException | None:
        """The error of `key`'s last batch, once: the tick that takes it raises it."""
        with self._lock:
            return self._failed.pop(key, None)

    def start(self, key: Key, chains: Mapping[str, Chain], then: Callable[[], None]) -> None:
        """Run `chains` (by trial name) concurrently, then `then`, in the background; with no
        pool, or nothing to create, both run now and an error is raised here."""
        work = {name: chain for name, chain in chains.items() if chain}
        if self._pool is None or not work:
            run_chains(self._pool, list(work.values()))
            then()
            return
        with self._lock:
            if key in self._busy:  # the caller checks first: this is a bug, not a race
                raise RuntimeError(f"creations of {key[0]}/{key[1]} are in flight already")
            in_flight = set(work)
            self._busy[key] = (in_flight, threading.Event())
        context = contextvars.copy_context()  # then() posts Events, which need kopf's context
        futures = {name: self._pool.submit(context.copy().run, run_chain, chain)
                   for name, chain in work.items()}

        def ended(name: str, _: Future[None]) -> None:
            with self._lock:
                in_flight.discard(name)
                if in_flight:
                    return
            self._end(key, list(futures.values()), context, then)

        for name, future in futures.items():
            future.add_done_callback(functools.partial(ended, name))

    def _end(self, key: Key, futures: Sequence[Future[None]], context: contextvars.Context,
             then: Callable[[], None]) -> None:
        """On the thread of the batch's last write: raise nothing, keep the first error."""
        error = next((f.exception() for f in futures if f.exception() is not None), None)
        if error is None:
            try:
                context.run(then)
            except Exception as e:  # kept for the next tick, which raises it
                error = e
        with self._lock:
            _, done = self._busy.pop(key)
            if error is not None:
                self._failed[key] = error
        done.set()
        if self._wake is not None:
            self._wake(key)

    def forget(self, key: Key) -> None:
        """Drop the kept error of an experiment that was deleted."""
        with self._lock:
            self._failed.pop(key, None)
