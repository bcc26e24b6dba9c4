"""A discrete-event simulation of W workers running trials for one method.

Time advances from event to event. A trial occupies a worker (a GPU) from the
moment its pod is created until the pod is gone. In between: the pod starts,
the trial trains step by step (each step takes the pool's seconds for that
configuration and step), and the method sees the trial's value at each
milestone when the operator would: at once in the ideal setting; in the
realistic one at the first operator tick after the first Prometheus scrape
after the step ended. The trial pod exports its exact value at each milestone
(kubetune.trial), so the value seen is exact; only when it is seen changes.

A stop is a pod deletion: training ends when SIGTERM arrives, the steps it
finished past the milestone are the overshoot, and the worker is free once the
pod is gone and the operator has noticed (next tick). A trial that completes
max_t lingers until its last scrape, then its pod succeeds. The run ends when a
trial that completed max_t meets the target (the best 1% of final values), or
when the pool or the budget runs out.

Within one instant, events follow the operator's order: observations in trial
order, then new trials for the free workers.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import numpy as np

from benchmarks.replay.curves import CurvePool
from benchmarks.replay.methods import Method


@dataclass(frozen=True)
class Setting:
    name: str
    median_step_seconds: float | None = None
    """Rescale every configuration's step times so the pool's median step takes this; None keeps them."""
    scrape_interval: float = 0.0
    """0: every step is seen the moment it ends."""
    tick: float = 0.0
    pod_start: tuple[float, float] = (0.0, 0.0)
    """Pod creation to the first step starting (scheduling, image, container start), uniform."""
    stop_latency: tuple[float, float] = (0.0, 0.0)
    """Delete call to SIGTERM reaching the trial (training stops), uniform."""
    release: tuple[float, float] = (0.0, 0.0)
    """Process exit to the pod object gone (the GPU free), uniform."""

    @property
    def ideal(self) -> bool:
        return self.scrape_interval == 0


IDEAL = Setting("ideal")
REALISTIC = Setting(
    "realistic", median_step_seconds=10.0, scrape_interval=15.0, tick=2.0,
    pod_start=(10.0, 30.0), stop_latency=(1.0, 3.0), release=(1.0, 2.0))


@dataclass
class Decisions:
    """The method's answers next to a shadow method's, call by call."""

    compared: int = 0
    stops: int = 0
    mismatches: int = 0


@dataclass
class RunResult:
    reached: bool
    wall_time: float
    """Simulated seconds until the target was met (inf if never)."""
    gpu_time: float
    """Seconds of training summed over trials, until the target was met (all of it if never)."""
    gpu_allocated: float
    """Seconds GPUs were held by trial pods (pod start, training, shutdown) until then."""
    trials_started: int
    trials_completed: int
    steps: int
    """Whole steps trained until then."""
    stops_by_milestone: dict[int, int] = field(default_factory=dict)
    overshoot_steps: list[int] = field(default_factory=list)
    overshoot_seconds: list[float] = field(default_factory=list)
    decisions: Decisions = field(default_factory=Decisions)
    gpu_by_fate: dict[str, float] = field(default_factory=dict)
    """Training seconds by what became of the trial: 'stopped@<milestone>', 'completed', 'running'."""


_OBSERVE, _FINISH, _FREE = 0, 0, 1


@dataclass
class _Trial:
    row: int
    created: float
    start: float
    ends: np.ndarray
    """ends[j]: when step j+1 ends."""
    scrape_phase: float
    train_end: float
    released: float = math.inf
    stopped_at: int = 0
    completed: bool = False

    @property
    def stopped(self) -> bool:
        return self.stopped_at > 0


class Simulation:
    def __init__(self, pool: CurvePool, method: Method, workers: int, setting: Setting,
                 seed: int, shadow: Method | None = None,
                 budget_steps: float | None = None) -> None:
        self.pool = pool
        self.method = method
        self.shadow = shadow
        self.workers = workers
        self.setting = setting
        self.rng = np.random.default_rng([seed, 3])
        scale = 1.0
        if setting.median_step_seconds is not None:
            scale = setting.median_step_seconds / float(np.median(pool.step_seconds))
        self.cumulative = np.cumsum(pool.step_seconds * scale, axis=1)
        self.tick_phase = float(self.rng.uniform(0, setting.tick)) if setting.tick else 0.0
        # Per-trial draws, so trial i meets the same latencies whichever method runs it.
        n = len(pool)
        self.pod_start = self._draws(setting.pod_start, n)
        self.scrape_phase = self._draws((0.0, setting.scrape_interval), n)
        self.stop_latency = self._draws(setting.stop_latency, n)
        self.release = self._draws(setting.release, n)
        self.budget = budget_steps if budget_steps is not None else 1000.0 * pool.max_t
        self.ended_steps = 0
        self.events: list[tuple[float, int, int, int, int]] = []
        self.trials: list[_Trial] = []
        self.running = 0
        self.result = RunResult(False, math.inf, 0.0, 0.0, 0, 0, 0)

    # -- when the operator sees things ---------------------------------------------------
    def _next_tick(self, t: float) -> float:
        if not self.setting.tick:
            return t
        n = math.ceil((t - self.tick_phase) / self.setting.tick - 1e-12)
        return self.tick_phase + n * self.setting.tick

    def _next_scrape(self, trial: _Trial, t: float) -> float:
        k = self.setting.scrape_interval
        if not k:
            return t
        base = trial.created + trial.scrape_phase
        return base + max(0, math.ceil((t - base) / k - 1e-12)) * k

    def _seen(self, trial: _Trial, t: float) -> float:
        return self._next_tick(self._next_scrape(trial, t))

    def _draws(self, bounds: tuple[float, float], n: int) -> np.ndarray:
        lo, hi = bounds
        return self.rng.uniform(lo, hi, n) if hi > lo else np.full(n, lo)

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> RunResult:
        for _ in range(self.workers):
            if not self._start(0.0):
                break
        now = 0.0
        while self.events:
            now, kind, index, step, _ = heapq.heappop(self.events)
            trial = self.trials[index]
            if kind == _FREE:
                self.running -= 1
                if self.ended_steps >= self.budget:
                    break
                self._start(now)
            elif step < self.pool.max_t:
                self._observe(now, index, trial, step)
            elif self._finish(now, index, trial):
                return self.result
        self._account(now, reached=False)
        return self.result

    def _push(self, time: float, kind: int, index: int, step: int) -> None:
        heapq.heappush(self.events, (time, kind, index, step, len(self.events)))

    def _start(self, now: float) -> bool:
        index = len(self.trials)
        if index >= len(self.pool):
            return False
        created = now
        start = created + float(self.pod_start[index])
        ends = start + self.cumulative[index]
        trial = _Trial(index, created, start, ends, float(self.scrape_phase[index]),
                       train_end=float(ends[-1]))
        self.trials.append(trial)
        self.running += 1
        self.method.start(index)
        if self.shadow is not None:
            self.shadow.start(index)
        for m in self.method.milestones(index):
            self._push(self._seen(trial, float(ends[m - 1])), _OBSERVE, index, m)
        self._push(self._finish_seen(trial), _FINISH, index, self.pool.max_t)
        self.result.trials_started += 1
        return True

    def _finish_seen(self, trial: _Trial) -> float:
        if self.setting.ideal:
            trial.released = trial.train_end
            return trial.train_end
        # kubetune.trial lingers until a scrape after the last report, then the pod succeeds.
        exited = self._next_scrape(trial, trial.train_end)
        trial.released = exited + float(self.release[trial.row])
        return self._next_tick(trial.released)

    def _observe(self, now: float, index: int, trial: _Trial, step: int) -> None:
        if trial.stopped:
            return
        value = float(self.pool.values[index, step - 1])
        stop = self.method.observe(index, step, value)
        if self.shadow is not None:
            other = self.shadow.observe(index, step, value)
            d = self.result.decisions
            d.compared += 1
            d.stops += stop
            d.mismatches += stop != other
        if not stop:
            return
        trial.stopped_at = step
        sigterm = now + float(self.stop_latency[index])
        done = int(np.searchsorted(trial.ends, sigterm, side="right"))
        self.result.overshoot_steps.append(done - step)
        self.result.overshoot_seconds.append(sigterm - float(trial.ends[step - 1]))
        self.result.stops_by_milestone[step] = self.result.stops_by_milestone.get(step, 0) + 1
        trial.train_end = max(trial.start, sigterm)
        trial.released = trial.train_end + float(self.release[index])
        self.ended_steps += done
        self._push(self._next_tick(trial.released), _FREE, index, 0)

    def _finish(self, now: float, index: int, trial: _Trial) -> bool:
        """A trial completed max_t; True when it meets the target (the run ends)."""
        if trial.stopped:
            return False
        value = float(self.pool.values[index, -1])
        self.method.complete(index, self.pool.max_t, value)
        if self.shadow is not None:
            self.shadow.complete(index, self.pool.max_t, value)
        self.result.trials_completed += 1
        trial.completed = True
        self.ended_steps += self.pool.max_t
        if self.pool.meets_target(value):
            self._account(now, reached=True)
            return True
        self._push(now, _FREE, index, 0)
        return False

    def _account(self, now: float, reached: bool) -> None:
        r = self.result
        r.reached = reached
        r.wall_time = now if reached else math.inf
        gpu = allocated = 0.0
        steps = 0
        fates = r.gpu_by_fate
        for t in self.trials:
            spent = max(0.0, min(t.train_end, now) - t.start)
            gpu += spent
            fate = f"stopped@{t.stopped_at}" if t.stopped else "completed" if t.completed else "running"
            fates[fate] = fates.get(fate, 0.0) + spent
            allocated += max(0.0, min(t.released, now) - t.created)
            steps += int(np.searchsorted(t.ends, min(now, t.train_end), side="right"))
        r.gpu_time, r.gpu_allocated, r.steps = gpu, allocated, steps
