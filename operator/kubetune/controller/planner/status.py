"""The experiment's status as the api models say it: phase, counts, best trial, conditions.

Built fresh at every tick from the trials' states and the scheduler's rung
table, so it never drifts from the TuneTrials; only startTime, completionTime
and each condition's lastTransitionTime are carried over from the stored status.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kubetune.api import (
    BestTrial,
    Condition,
    ConditionStatus,
    ExperimentPhase,
    TrialCounts,
    TrialState,
    TuneExperimentSpec,
    TuneExperimentStatus,
    TuneTrialStatus,
)
from kubetune.controller.planner.trial import TERMINAL, finite
from kubetune.controller.planner.views import TrialView
from kubetune.schedulers import TrialScheduler

FINISHED_PHASES = frozenset({ExperimentPhase.SUCCEEDED, ExperimentPhase.FAILED})
"""The phases of an experiment that has ended."""


def condition(ctype: str, ok: bool, reason: str, message: str, now: str,
              previous: Sequence[Mapping[str, Any]], generation: int | None = None) -> Condition:
    """A condition of `ctype`, keeping its lastTransitionTime while its status is unchanged.

    `generation` is the spec generation the condition was computed from (observedGeneration).
    """
    status = ConditionStatus.TRUE if ok else ConditionStatus.FALSE
    since = now
    for c in previous:
        if c.get("type") == ctype and c.get("status") == status:
            since = c.get("lastTransitionTime", now)
    return Condition(type=ctype, status=status, reason=reason, message=message,
                     last_transition_time=since, observed_generation=generation)


def outcome_conditions(phase: ExperimentPhase, reason: str, message: str, now: str,
                       previous: Sequence[Mapping[str, Any]],
                       generation: int | None) -> list[Condition]:
    """Complete and Failed, as a batch Job has them: Complete is True only on success and
    Failed only on failure, so `kubectl wait --for=condition=Complete` never returns for a
    failed experiment and `--for=condition=Failed` returns for it."""
    succeeded, failed = phase == ExperimentPhase.SUCCEEDED, phase == ExperimentPhase.FAILED
    return [
        condition("Complete", succeeded, reason if succeeded else phase.value, message, now,
                  previous, generation),
        condition("Failed", failed, reason if failed else phase.value, message, now,
                  previous, generation),
    ]


def failure_conditions(reason: str, message: str, now: str,
                       previous: Sequence[Mapping[str, Any]], generation: int | None, *,
                       spec_valid: bool = True) -> list[Condition]:
    """The conditions of an experiment that failed for `reason` outside the planner's verdict
    (an invalid spec, a permanent API rejection): SpecValid, Complete=False, Failed=True."""
    spec = (condition("SpecValid", True, "Valid", "the spec is valid", now, previous, generation)
            if spec_valid else
            condition("SpecValid", False, reason, message, now, previous, generation))
    return [spec, *outcome_conditions(ExperimentPhase.FAILED, reason, message, now, previous,
                                      generation)]


def phase_reason(phase: ExperimentPhase, message: str) -> str:
    """A CamelCase reason for the phase experiment_phase chose, from its message."""
    if phase == ExperimentPhase.FAILED:
        if "maxFailedTrials" in message:
            return "TooManyFailedTrials"
        if message.startswith("no trial completed"):
            return "NoFiniteObjective"
    return phase.value


def best_trial(spec: TuneExperimentSpec, trials: Sequence[TrialView], states: Mapping[str, str],
               patches: Mapping[str, TuneTrialStatus]) -> BestTrial | None:
    """The succeeded trial with the best finite objective; the lower index wins a tie.

    A trial's metrics are its stored ones updated by this tick's patch.
    """
    objective = spec.objective.metric
    sign = 1.0 if spec.objective.mode == "max" else -1.0
    best: tuple[float, int, TrialView, Mapping[str, Any]] | None = None
    for t in trials:
        if states[t.name] != TrialState.SUCCEEDED.value:
            continue
        patch = patches.get(t.name)
        status = {**t.status, **patch.merge_patch()} if patch is not None else t.status
        value = finite((status.get("metrics") or {}).get(objective))
        if value is None:
            continue
        key = (sign * value, -t.index)
        if best is None or key > (best[0], best[1]):
            best = (key[0], key[1], t, status)
    if best is None:
        return None
    _, _, t, chosen = best
    metrics = chosen.get("metrics") or {}
    return BestTrial(name=t.name, config=dict(t.params), metric=float(metrics[objective]),
                     step=chosen.get("step"), metrics=dict(metrics))


def experiment_phase(spec: TuneExperimentSpec, states: Mapping[str, str], total: int,
                     created: int, failed: int, too_many_failed: bool,
                     best: BestTrial | None) -> tuple[ExperimentPhase, str]:
    """The experiment's phase and the message that says why."""
    running = sum(1 for s in states.values() if s == TrialState.RUNNING.value)
    if too_many_failed:
        return ExperimentPhase.FAILED, (
            f"{failed} trials failed, reaching maxFailedTrials={spec.max_failed_trials}; "
            "see the TuneTrials' messages")
    if created >= total and all(s in TERMINAL for s in states.values()):
        if best is not None:
            return ExperimentPhase.SUCCEEDED, (
                f"best trial {best.name}: {spec.objective.metric}={best.metric:g}")
        return ExperimentPhase.FAILED, "no trial completed with a finite objective value"
    return ExperimentPhase.RUNNING, f"{running} running, {created}/{total} trials created"


def experiment_status(*, generation: int, previous: Mapping[str, Any],
                      phase: ExperimentPhase, message: str, states: Mapping[str, str],
                      total: int, created: int, best: BestTrial | None,
                      scheduler: TrialScheduler, metrics_error: str | None,
                      now: str, reason: str | None = None) -> TuneExperimentStatus:
    """The whole status of the experiment at the end of this tick.

    bestTrial is left unset (the stored one stays) until some trial succeeded;
    completionTime is set once the experiment has ended. `reason` names why the phase is
    what it is (phase_reason's by default); every condition carries `generation`.
    """
    counts = dict.fromkeys(("pending", "running", "succeeded", "pruned", "failed"), 0)
    for state in states.values():
        counts[state.lower()] += 1
    conditions = list(previous.get("conditions") or [])
    metrics_ok = metrics_error is None
    finished = phase in FINISHED_PHASES
    fields: dict[str, Any] = {
        "phase": phase, "message": message, "observed_generation": generation,
        "start_time": previous.get("startTime") or now,
        "trials": TrialCounts(total=total, created=created, **counts),
        "rungs": scheduler.rung_table(),
        "conditions": [
            condition("SpecValid", True, "Valid", "the spec is valid", now, conditions,
                      generation),
            condition("MetricsAvailable", metrics_ok,
                      "Queried" if metrics_ok else "PrometheusUnavailable",
                      "metrics read from Prometheus" if metrics_ok else
                      f"{metrics_error}; no trial is pruned until metrics return",
                      now, conditions, generation),
            *outcome_conditions(phase, reason or phase_reason(phase, message), message, now,
                                conditions, generation),
        ],
    }
    if best is not None:
        fields["best_trial"] = best
    if finished:
        fields["completion_time"] = previous.get("completionTime") or now
    return TuneExperimentStatus(**fields)
