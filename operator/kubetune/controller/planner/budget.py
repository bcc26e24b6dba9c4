"""spec.timeBudgetSeconds: the experiment that runs out of time ends with the best so far.

Ray's `TuneConfig(time_budget_s=...)` (its TimeoutStopper's `stop_all`): once the
budget has passed, every running trial is stopped and none is started. Here the
deadline is status.startTime (written at the experiment's first tick and kept)
plus the budget, compared with the tick's `now`, so it is the same deadline
after any operator restart. A trial stopped by the budget keeps its latest
report: it ends Succeeded when that report has a finite objective value (it
then competes for bestTrial, as in Ray) and Pruned when it has none yet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kubetune.api import TrialState, TuneExperimentSpec
from kubetune.controller.planner.actions import Plan
from kubetune.controller.planner.pods import seconds_between
from kubetune.controller.planner.trial import TERMINAL, finite
from kubetune.controller.planner.views import PodView, TrialMetrics, TrialView

BUDGET_REASON = "TimeBudgetExhausted"


def budget_spent(spec: TuneExperimentSpec, status: Mapping[str, object],
                 now: str) -> float | None:
    """Seconds since status.startTime when spec.timeBudgetSeconds has passed, else None."""
    start = status.get("startTime")
    if spec.time_budget_seconds is None or not isinstance(start, str):
        return None
    elapsed = seconds_between(start, now)
    return elapsed if elapsed >= spec.time_budget_seconds else None


def budget_message(spec: TuneExperimentSpec, elapsed: float) -> str:
    """Why the experiment stopped; the same at every tick (elapsed is not in it)."""
    del elapsed
    return f"the time budget of {spec.time_budget_seconds}s (timeBudgetSeconds) ran out"


def stop_for_budget(plan: Plan, spec: TuneExperimentSpec, trials: Sequence[TrialView],
                    pods_of: Mapping[str, list[PodView]], states: dict[str, str],
                    snapshot: Mapping[str, TrialMetrics] | None, message: str,
                    now: str) -> None:
    """End every unfinished trial with its latest report, and delete its running pods."""
    objective = spec.objective.metric
    for t in trials:
        if states[t.name] in TERMINAL:
            continue
        obs = snapshot.get(t.name) if snapshot is not None else None
        stored = {k: v for k, v in (t.status.get("metrics") or {}).items() if v is not None}
        metrics = {**stored, **(obs.metrics if obs is not None else {})}
        step = obs.step if obs is not None and obs.step is not None else t.status.get("step")
        value = finite(metrics.get(objective))
        state = TrialState.SUCCEEDED if value is not None else TrialState.PRUNED
        states[t.name] = state.value
        said = f"stopped: {message}" + ("" if value is not None else
                                         f", before it reported a finite {objective}")
        plan.patch_trial(t.name, state=state, reason=BUDGET_REASON, message=said,
                         completion_time=now, step=step,
                         metrics={k: finite(v) for k, v in metrics.items()}, objective=value)
        plan.event("TuneTrial", t.name, "Normal", "TrialStopped", said)
        for p in pods_of.get(t.name, []):
            if not p.finished and not p.deleting and p.name not in plan.deleting:
                plan.delete_pods.append((p.name, spec.prune_grace_period_seconds))


__all__ = ["BUDGET_REASON", "budget_message", "budget_spent", "stop_for_budget"]
