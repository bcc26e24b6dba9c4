"""Population Based Training in the planner: built from the spec, restored from the TuneTrials.

The scheduler keeps no state of its own between ticks: each tick it is built
from `PopulationBasedTrainingSpec`, every trial's `PBTMemberStatus` is restored
in trial-index order (the order that breaks ties), and the checks seen this
tick are fed in (step, trial index) order (`run_checks`). What comes out is
written back to the TuneTrials before any pod moves, so an operator that dies
at any point rebuilds the same population and repeats no decision differently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubetune.api.pbt import ExploitRecord, PBTMemberStatus, PopulationBasedTrainingSpec
from kubetune.schedulers import Check, Exploit, MemberState, Mutation, PopulationBasedTraining
from kubetune.search import space_from_spec


def build_pbt(spec: PopulationBasedTrainingSpec, *, metric: str, mode: str) -> PopulationBasedTraining:
    """The scheduler `spec` describes; domains become kubetune's samplers (Ray's semantics)."""
    mutations: dict[str, Mutation] = {}
    for name, mutation in spec.hyperparam_mutations.items():
        if isinstance(mutation, list):
            mutations[name] = list(mutation)
        else:
            mutations[name] = space_from_spec({name: mutation}).parameters[name]  # type: ignore[assignment]
    return PopulationBasedTraining(
        metric=metric,
        mode=mode,
        time_attr=spec.time_attr,
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
