"""How many observations per second the ASHA scheduler decides.

The workload is the operator's reconcile loop on a large experiment: 10,000
trials (max_t=81, grace_period=1, reduction_factor=3), at most 64 running at
once. Trials train at different speeds (each tick a trial advances one step
with its own probability in [0.1, 0.6]), and every tick the operator feeds the
latest (step, value) of every running trial, so every step is reported and a
slow trial is often seen again at the same step. A STOP frees the slot for the
next trial, and the operator calls on_complete for the stopped trial.

The stream is recorded first (untimed), cut at 100,000 observations, then
replayed into a fresh scheduler, timing only the scheduler calls. A second
replay drops the repeated observations: one call per step, the heavy path.

Run: .venv/bin/python benchmarks/asha_throughput.py
"""

from __future__ import annotations

import math
import random
import time

from kubetune.schedulers import AsyncHyperBandScheduler, Decision

TRIALS = 10_000
OBSERVATIONS = 100_000
CONCURRENCY = 64
SEED = 0

Observation = tuple[str, int, float]


def _scheduler() -> AsyncHyperBandScheduler:
    return AsyncHyperBandScheduler(
        metric="accuracy", mode="max", max_t=81, grace_period=1, reduction_factor=3
    )


def record_stream() -> list[Observation]:
    """Simulate the reconcile loop and return the observations it fed, in order."""
    rng = random.Random(SEED)
    scheduler = _scheduler()
    stream: list[Observation] = []
    started = 0
    # trial -> [step, chance to advance per tick, final quality, curve time constant]
    running: dict[str, list[float]] = {}
    while len(stream) < OBSERVATIONS and (running or started < TRIALS):
        while len(running) < CONCURRENCY and started < TRIALS:
            running[f"bench-{started}"] = [
                0,
                rng.uniform(0.1, 0.6),
                rng.random(),
                rng.uniform(2, 30),
            ]
            started += 1
        for trial, (step, speed, quality, tau) in list(running.items()):
            if step == 0 or rng.random() < speed:
                step += 1
                running[trial][0] = step
            value = quality * (1 - math.exp(-step / tau)) + rng.gauss(0, 0.01)
            stream.append((trial, int(step), value))
            if scheduler.on_result(trial, int(step), value).decision is Decision.STOP:
                del running[trial]
            if len(stream) == OBSERVATIONS:
                break
    return stream


def replay(stream: list[Observation]) -> tuple[float, int, int, int]:
    """Feed the stream to a fresh scheduler.

    Returns the seconds taken, the rung records made, and the trials stopped at
    a rung and at max_t.
    """
    scheduler = _scheduler()
    on_result = scheduler.on_result
    on_complete = scheduler.on_complete
    stopped: dict[str, bool] = {}
    stop = Decision.STOP
    start = time.perf_counter()
    for trial, step, value in stream:
        verdict = on_result(trial, step, value)
        if verdict.decision is stop and trial not in stopped:
            stopped[trial] = verdict.rung is not None
            on_complete(trial, step, value)
    seconds = time.perf_counter() - start
    recorded = sum(row.recorded for row in scheduler.rung_table())
    at_rung = sum(stopped.values())
    return seconds, recorded, at_rung, len(stopped) - at_rung


def main() -> None:
    stream = record_stream()
    trials = len({trial for trial, _, _ in stream})
    seconds, recorded, at_rung, at_max_t = replay(stream)
    best = min([seconds] + [replay(stream)[0] for _ in range(2)])
    steps_only = _without_repeats(stream)
    steps_seconds = min(replay(steps_only)[0] for _ in range(3))
    print(
        f"ASHA (max_t=81, grace_period=1, reduction_factor=3): {len(stream):,} observations "
        f"from {trials:,} trials; {recorded:,} rung records; {at_rung:,} trials stopped at "
        f"a rung, {at_max_t:,} at max_t"
    )
    print(
        f"  total {seconds:.3f} s, {len(stream) / seconds:,.0f} observations/s "
        f"(best of 3: {best:.3f} s, {len(stream) / best:,.0f}/s)"
    )
    print(
        f"  without repeated observations: {len(steps_only):,} observations in "
        f"{steps_seconds:.3f} s, {len(steps_only) / steps_seconds:,.0f}/s"
    )


def _without_repeats(stream: list[Observation]) -> list[Observation]:
    last_step: dict[str, int] = {}
    kept = []
    for trial, step, value in stream:
        if last_step.get(trial) != step:
            kept.append((trial, step, value))
            last_step[trial] = step
    return kept


if __name__ == "__main__":
    main()
