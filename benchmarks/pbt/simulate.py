"""PBT, random search and ASHA on the pbt_function problem, at equal GPU-time.

Every method gets the same 8 workers (GPUs) and the same budget of 1,000
rounds: in a round each busy worker trains its trial one step, and the results
reach the method one at a time, in an order shuffled per round by the seed (the
ideal setting: every step is seen as it ends, and a freed worker starts its next
trial in the next round). A run is solved in the round a trial's accuracy first
passes 200; "iterations to solve" is that round, i.e. GPU-time / 8.

- pbt: kubetune's PopulationBasedTraining (the operator's decision code) with
  the example's settings: 8 members starting at lr 1e-4, training_iteration,
  perturbation_interval 5, mutations lr ~ uniform(1e-4, 0.02) and
  some_other_factor in [1, 2], Ray's other defaults. A member in the upper
  quantile at a check keeps its checkpoint (the accuracy at that step); an
  exploit resumes the member from its donor's.
- random: 8 trials, lr ~ uniform(1e-4, 0.02), each trained for the whole budget.
- asha: kubetune's ASHA (max_t 1,000) over a stream of trials with lr ~
  uniform(1e-4, 0.02), a new one on every freed worker until the budget ends.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from benchmarks.pbt.problem import SOLVED_ACCURACY, Model, step_stream, train_step
from kubetune.schedulers import AsyncHyperBandScheduler, Decision, PopulationBasedTraining
from kubetune.search import Uniform

WORKERS = 8
ROUNDS = 1000
LR_SPACE = Uniform(1e-4, 0.02)


@dataclass(frozen=True)
class Run:
    method: str
    seed: int
    solved_round: int | None
    """Round (GPU-time / workers) at which a trial first passed accuracy 200; None: never."""
    trials: int
    exploits: int = 0


def _order(seed: int, round_: int, names: list[str]) -> list[str]:
    order = list(names)
    random.Random(f"order:{seed}:{round_}").shuffle(order)
    return order


def run_pbt(seed: int, *, population: int = WORKERS, interval: int = 5) -> Run:
    pbt = PopulationBasedTraining(
        metric="mean_accuracy",
        mode="max",
        time_attr="training_iteration",
        perturbation_interval=interval,
        hyperparam_mutations={"lr": LR_SPACE, "some_other_factor": [1, 2]},
        seed=seed,
    )
    names = [f"m{i}" for i in range(population)]
    models = {name: Model() for name in names}
    kept: dict[str, Model] = {}
    segments = dict.fromkeys(names, 0)
    for name in names:
        pbt.add_trial(name, {"lr": 1e-4, "some_other_factor": 1})
    exploits = 0
    for round_ in range(1, ROUNDS + 1):
        for name in _order(seed, round_, names):
            model = models[name]
            model.step += 1
            rng = step_stream(seed, name, segments[name], model.step)
            model.accuracy = train_step(model.accuracy, pbt.config(name)["lr"], rng)
            if model.accuracy > SOLVED_ACCURACY:
                return Run("pbt", seed, round_, population, exploits)
            check = pbt.on_result(name, model.step, model.accuracy)
            if check is None:
                continue
            if check.quantile == "upper":
                kept[name] = Model(model.accuracy, model.step)
            if check.exploit is not None:
                donor = kept[check.exploit.donor]
                assert donor.step == check.exploit.donor_step
                models[name] = Model(donor.accuracy, donor.step)
                segments[name] += 1
                exploits += 1
    return Run("pbt", seed, None, population, exploits)


def run_random(seed: int) -> Run:
    lrs = {f"r{i}": LR_SPACE.sample(random.Random(f"lr:{seed}:{i}")) for i in range(WORKERS)}
    models = {name: Model() for name in lrs}
    for round_ in range(1, ROUNDS + 1):
        for name in _order(seed, round_, list(lrs)):
            model = models[name]
            model.step += 1
            rng = step_stream(seed, name, 0, model.step)
            model.accuracy = train_step(model.accuracy, lrs[name], rng)
            if model.accuracy > SOLVED_ACCURACY:
                return Run("random", seed, round_, WORKERS)
    return Run("random", seed, None, WORKERS)


def run_asha(seed: int, *, grace_period: int, reduction_factor: float) -> Run:
    asha = AsyncHyperBandScheduler(
        metric="mean_accuracy",
        mode="max",
        time_attr="training_iteration",
        max_t=ROUNDS,
        grace_period=grace_period,
        reduction_factor=reduction_factor,
    )
    started = 0
    running: dict[str, tuple[float, Model]] = {}
    method = f"asha(grace {grace_period}, rf {reduction_factor:g})"
    for round_ in range(1, ROUNDS + 1):
        while len(running) < WORKERS:
            name = f"a{started}"
            running[name] = (LR_SPACE.sample(random.Random(f"lr:{seed}:{started}")), Model())
            started += 1
        for name in _order(seed, round_, list(running)):
            lr, model = running[name]
            model.step += 1
            model.accuracy = train_step(model.accuracy, lr, step_stream(seed, name, 0, model.step))
            if model.accuracy > SOLVED_ACCURACY:
                return Run(method, seed, round_, started)
            verdict = asha.on_result(name, model.step, model.accuracy)
            if verdict.decision is Decision.STOP or model.step >= ROUNDS:
                asha.on_complete(name, model.step, model.accuracy)
                del running[name]
    return Run(method, seed, None, started)
