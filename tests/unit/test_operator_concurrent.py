"""A tick's writes: concurrent across trials, in order within a trial, bounded."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from kubetune.controller.concurrent import run_chains

pytestmark = pytest.mark.unit


def test_chains_run_side_by_side_and_each_in_its_order() -> None:
    log: list[tuple[int, str]] = []
    lock = threading.Lock()
    inflight = [0, 0]  # now, peak

    def step(trial: int, what: str) -> None:
        with lock:
            inflight[0] += 1
            inflight[1] = max(inflight[1], inflight[0])
        time.sleep(0.05)
        with lock:
            inflight[0] -= 1
            log.append((trial, what))

    chains = [[lambda t=t: step(t, "patch"), lambda t=t: step(t, "delete")] for t in range(8)]
    with ThreadPoolExecutor(4) as pool:
        started = time.monotonic()
        run_chains(pool, chains)
        took = time.monotonic() - started
    assert inflight[1] == 4, "bounded by the pool, and concurrent up to it"
    assert took < 8 * 2 * 0.05 * 0.6, "not one write at a time"
    for t in range(8):
        assert [w for tr, w in log if tr == t] == ["patch", "delete"], "a trial's writes in order"


def test_a_failed_write_stops_its_chain_only_and_the_first_failure_is_raised() -> None:
    done: list[str] = []

    def fail(msg: str) -> None:
        raise RuntimeError(msg)

    chains = [[lambda: done.append("a1")],
              [lambda: fail("b"), lambda: done.append("b2")],
              [lambda: time.sleep(0.05), lambda: fail("c")],
              [lambda: done.append("d1"), lambda: done.append("d2")]]
    with ThreadPoolExecutor(4) as pool, pytest.raises(RuntimeError, match=r"^b$"):
        run_chains(pool, chains)
    assert sorted(done) == ["a1", "d1", "d2"]


def test_without_a_pool_chains_run_in_turn() -> None:
    order: list[int] = []
    run_chains(None, [[lambda: order.append(1)], [], [lambda: order.append(2)]])
    assert order == [1, 2]
