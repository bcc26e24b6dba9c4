"""Population Based Training in the planner: built from the spec, restored from the TuneTrials.

The scheduler keeps no state of its own between ticks: each tick it is built
from `PopulationBasedTrainingSpec`, every trial's `PBTMemberStatus` is restored
in trial-index order (the order that breaks ties), and the checks seen this
tick are fed in (step, trial index) order (`run_checks`). What comes out is
written back to the TuneTrials before any pod moves, so an operator that dies
at any point rebuilds the same population and repeats no decision differently.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubetune.api import TrialState
from kubetune.api.pbt import ExploitRecord, PBTArguments, PBTMemberStatus
from kubetune.controller.planner.actions import Plan
from kubetune.controller.planner.views import ExperimentView, PodView, TrialMetrics, TrialView
from kubetune.schedulers import Check, Exploit, MemberState, Mutation, PopulationBasedTraining
from kubetune.search import space_from_spec


def build_pbt(spec: PBTArguments, *, metric: str, mode: str) -> PopulationBasedTraining:
    """The scheduler `spec` describes; domains become kubetune's samplers (Ray's semantics)."""
    mutations: dict[str, Mutation] = {}
    for name, mutation in (spec.hyperparam_mutations or {}).items():
        if isinstance(mutation, list):
            mutations[name] = list(mutation)
        else:
            mutations[name] = space_from_spec({name: mutation}).parameters[name]  # type: ignore[assignment]
    return PopulationBasedTraining(
        metric=metric,
        mode=mode,
        time_attr=getattr(spec, "time_attr", "training_iteration"),
        perturbation_interval=spec.perturbation_interval,
        burn_in_period=spec.burn_in_period,
        hyperparam_mutations=mutations,
        quantile_fraction=spec.quantile_fraction,
        resample_probability=spec.resample_probability,
        perturbation_factors=spec.perturbation_factors,
        seed=spec.seed,
    )


def exploit_record(exploit: Exploit) -> ExploitRecord:
    return ExploitRecord(
        time=exploit.time, donor=exploit.donor, donor_step=exploit.donor_step,
        old_config=exploit.old_config, new_config=exploit.new_config,
        operations=exploit.operations,
    )


def member_status(pbt: PopulationBasedTraining, trial: str) -> PBTMemberStatus:
    """What to persist on `trial`'s TuneTrial after this tick's checks."""
    state = pbt.state(trial)
    op = 1.0 if pbt.mode == "max" else -1.0
    return PBTMemberStatus(
        config=state.config,
        last_score=None if state.last_score is None else op * state.last_score,
        last_checkpoint_step=state.last_checkpoint,
        last_perturbation_time=state.last_perturbation_time,
        last_train_time=state.last_train_time,
        exploits=[exploit_record(e) for e in state.history],
    )


def restore_member(pbt: PopulationBasedTraining, trial: str, status: PBTMemberStatus,
                   *, finished: bool) -> None:
    """Put back what `member_status` persisted (call in trial-index order)."""
    op = 1.0 if pbt.mode == "max" else -1.0
    pbt.restore(trial, MemberState(
        config=dict(status.config),
        last_score=None if status.last_score is None else op * status.last_score,
        last_checkpoint=status.last_checkpoint_step,
        last_perturbation_time=status.last_perturbation_time,
        last_train_time=status.last_train_time,
        finished=finished,
        history=tuple(
            Exploit(trial=trial, time=e.time, donor=e.donor, donor_step=e.donor_step,
                    old_config=dict(e.old_config), new_config=dict(e.new_config),
                    operations=dict(e.operations))
            for e in status.exploits
        ),
    ))


@dataclass(frozen=True)
class Observation:
    """A trial's objective at a step, as one tick read it (the exact value at a check step)."""

    index: int
    trial: str
    step: float
    value: float


def run_checks(pbt: PopulationBasedTraining, seen: Iterable[Observation]) -> list[Check]:
    """Feed a tick's observations in (step, trial index) order; the checks they made.

    The order within a tick is fixed by the observations alone, not by the order
    Prometheus returned them in, so two operators reading the same snapshot decide alike.
    A trial that exploits takes no later observation of this tick: they were made with
    the weights it has just given up.
    """
    checks = []
    exploited: set[str] = set()
    for obs in sorted(seen, key=lambda o: (o.step, o.index)):
        if obs.trial in exploited:
            continue
        check = pbt.on_result(obs.trial, obs.step, obs.value)
        if check is not None:
            checks.append(check)
            if check.exploit is not None:
                exploited.add(obs.trial)
    return checks


def config_history(status: Mapping[str, Any]) -> list[tuple[float, str, dict[str, Any]]]:
    """A persisted member's configs in order: (from step, cloned from, config); "" for its own."""
    member = PBTMemberStatus.model_validate(status)
    if not member.exploits:
        return [(0.0, "", dict(member.config))]
    history = [(0.0, "", dict(member.exploits[0].old_config))]
    history += [(e.donor_step, e.donor, dict(e.new_config)) for e in member.exploits]
    return history


def checkpoint_path(donor: str, segment: int, step: float) -> str:
    """A trial's checkpoint at `step` in its `segment`-th checkpoint directory, relative to
    the experiment's checkpoint directory (manifests.build_pod uses the same layout)."""
    return f"{donor}{f'/exploit-{segment}' if segment else ''}/step-{int(step):08d}"


def plan_exploits(exp: ExperimentView, trials: Sequence[TrialView],
                  pods_of: Mapping[str, Sequence[PodView]],
                  snapshot: Mapping[str, TrialMetrics] | None, states: dict[str, str],
                  plan: Plan, terminal: frozenset[str]) -> None:
    """This tick's PBT checks and exploits, after the trial machine has advanced every trial.

    Only a Running trial alone with its current attempt's pod, and only that attempt's
    series, is observed, so no value of an attempt it has left behind is read. Each
    check's state is written to the trial's status; an exploit also moves the trial to
    its next attempt (Pending) and deletes the running pod: the next attempt, made once
    that pod is gone, runs the new config from the donor's checkpoint
    (TrialMachine._new_pod reads both from the status).
    """
    spec = exp.spec
    pbt = build_pbt(spec.scheduler, metric=spec.objective.metric, mode=spec.objective.mode)
    persisted: dict[str, list[ExploitRecord]] = {}
    for t in trials:
        finished = states.get(t.name) in terminal
        raw = t.status.get("pbt")
        if raw:
            member = PBTMemberStatus.model_validate(raw)
            persisted[t.name] = member.exploits
            restore_member(pbt, t.name, member, finished=finished)
        else:
            pbt.add_trial(t.name, t.params)
            if finished:
                pbt.on_complete(t.name)
    seen = []
    for t in trials:
        obs = snapshot.get(t.name) if snapshot is not None else None
        pods = pods_of.get(t.name, [])
        attempt = int(t.status.get("attempts") or 0)
        if (obs is None or states.get(t.name) != TrialState.RUNNING.value or len(pods) != 1
                or pods[0].attempt != attempt or pods[0].deleting or pods[0].done):
            continue
        if obs.attempt is not None and obs.attempt != attempt:
            # Prometheus has not scraped this attempt yet: the series are the replaced
            # attempt's, whose last steps ran with the weights the trial gave up.
            continue
        since = pbt.next_check(t.name)
        seen += [Observation(t.index, t.name, step, value)
                 for milestone, (step, value) in sorted(obs.rungs.items()) if milestone >= since]
    checks = run_checks(pbt, seen)
    by_name = {t.name: t for t in trials}
    for name in dict.fromkeys(c.trial for c in checks):
        trial = by_name[name]
        status = member_status(pbt, name)
        old = persisted.get(name, [])
        status.exploits = [*old, *status.exploits[len(old):]]
        fresh = status.exploits[len(old):]
        if not fresh:
            plan.patch_trial(name, pbt=status)
            continue
        attempt = int(trial.status.get("attempts") or 0) + 1
        record = fresh[-1]
        record.attempt = attempt
        segment = len(pbt.state(record.donor).history)
        record.donor_checkpoint = checkpoint_path(record.donor, segment, record.donor_step)
        message = (f"at step {record.time:g} it clones {record.donor}'s checkpoint of step "
                   f"{record.donor_step:g}: config {_short(record.old_config)} -> "
                   f"{_short(record.new_config)}; attempt {attempt} resumes from there")
        states[name] = TrialState.PENDING.value
        plan.patch_trial(name, pbt=status, state=TrialState.PENDING, attempts=attempt,
                         reason="Exploited", message=message)
        plan.event("TuneTrial", name, "Normal", "TrialExploited", message)
        pod = pods_of[name][0]
        if pod.name not in plan.deleting:
            plan.delete_pods.append((pod.name, spec.prune_grace_period_seconds))


def _short(config: Mapping[str, Any]) -> str:
    return json.dumps(dict(config), sort_keys=True, separators=(",", ":"))
