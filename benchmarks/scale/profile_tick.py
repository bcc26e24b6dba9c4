"""Profile one planner tick at 2,000 trials (pure: no cluster), to split a tick's time
between deciding and API I/O, and time a tick whose scheduler was kept from the tick
before. Run: python -m benchmarks.scale.profile_tick"""

from __future__ import annotations

import cProfile
import pstats
import random
import tempfile
import time

from kubetune.api import validate_experiment_spec
from kubetune.controller.planner import (
    ExperimentView,
    PodView,
    SchedulerCache,
    TrialMetrics,
    TrialView,
    plan_tick,
)

PROFILE = tempfile.mktemp(suffix='.prof')
raw = {"objective": {"metric": "accuracy", "mode": "max"},
       "searchSpace": {"lr": {"loguniform": [1e-4, 1e-1]}, "h": {"choice": [64, 128]}},
       "numSamples": 2000, "maxConcurrentTrials": 200,
       "scheduler": {"type": "asha", "maxT": 81, "gracePeriod": 1, "reductionFactor": 3},
       "trialTemplate": {"spec": {"containers": [{"name": "t", "image": "x", "command": ["t"]}]}}}
spec = validate_experiment_spec(raw)
rng = random.Random(1)
trials, pods, snap = [], [], {}
for i in range(2000):
    name = f"e-{i}"
    if i < 1800:
        rungs = [{"milestone": m, "value": rng.random(), "step": m, "cutoff": None, "decision": "continue"} for m in (1, 3)]
        trials.append(TrialView(name, i, {"lr": 0.01}, {"state": "Pruned", "rungs": rungs, "podName": f"{name}-1"}))
        pods.append(PodView(f"{name}-1", name, 1, "Succeeded"))
    else:
        trials.append(TrialView(name, i, {"lr": 0.01}, {"state": "Running", "rungs": [], "podName": f"{name}-1"}))
        pods.append(PodView(f"{name}-1", name, 1, "Running"))
        snap[name] = TrialMetrics(step=2, metrics={"accuracy": 0.5}, rungs={1: (1, rng.random())})
exp = ExperimentView("e", "ns", 1, spec, {})
t = time.perf_counter()
plan_tick(exp, trials, pods, snap, "2026-01-01T00:00:00Z")
print("plan_tick 2000 trials: %.3f s" % (time.perf_counter() - t))
cache = SchedulerCache()
plan_tick(exp, trials, pods, snap, "2026-01-01T00:00:00Z", schedulers=cache)
t = time.perf_counter()
plan_tick(exp, trials, pods, snap, "2026-01-01T00:00:00Z", schedulers=cache)
print("plan_tick 2000 trials, cached scheduler: %.3f s" % (time.perf_counter() - t))
cProfile.run('plan_tick(exp, trials, pods, snap, "2026-01-01T00:00:00Z")', PROFILE)
pstats.Stats(PROFILE).sort_stats('cumulative').print_stats(12)
