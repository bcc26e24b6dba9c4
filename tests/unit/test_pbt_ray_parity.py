"""Our PopulationBasedTraining against Ray Tune's, on the same random populations.

Ray's scheduler runs without ray.init: trials are stand-ins with the attributes
pbt.py reads, and a stand-in controller answers the calls it makes
(get_trials, pause_trial, _schedule_trial_save). The calls follow Ray's
TuneController: every result goes through on_trial_result, a trial that ends
goes through on_trial_complete, and an exploited trial restarts from the
checkpoint Ray put in its checkpoint manager.

Ray draws from the global `random` module. During each call, pbt.py's
`random` is replaced by the very stream kubetune draws from for that
decision (decision_stream(seed, trial, time), fill_stream(seed, trial) when a
trial joins), and domain mutations are callables that draw from that stream
too. Everything else (the schedule, the quantiles, which trial clones which,
the explore operations) is Ray's own code.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

import pytest
import ray.tune.schedulers.pbt as ray_pbt_module
from ray.tune.schedulers import PopulationBasedTraining as RayPBT
from ray.tune.schedulers.trial_scheduler import TrialScheduler as RayDecision

from kubetune.schedulers import PopulationBasedTraining
from kubetune.schedulers._pbt_explore import decision_stream, fill_stream
from kubetune.search import Choice, LogUniform, RandInt, Uniform

N_POPULATIONS = 300
METRIC = "score"
TIME = "training_iteration"


class _Stream:
    """The stream Ray's pbt.py draws from during one call (swapped in for its `random`)."""

    current: random.Random = random.Random(0)

    def random(self) -> float:
        return self.current.random()

    def choice(self, seq: Any) -> Any:
        return self.current.choice(seq)


_STREAM = _Stream()


@dataclass
class _Checkpoint:
    trial_id: str
    step: int


@dataclass
class _CheckpointConfig:
    num_to_keep: int | None = None


@dataclass
class _CheckpointManager:
    checkpoint_config: _CheckpointConfig = field(default_factory=_CheckpointConfig)
    _latest_checkpoint_result: Any = None


@dataclass
class _RunMetadata:
    checkpoint_manager: _CheckpointManager = field(default_factory=_CheckpointManager)


class _RayTrial:
    """The attributes and methods of ray.tune.experiment.Trial that pbt.py uses."""

    def __init__(self, trial_id: str, config: dict[str, Any]) -> None:
        self.trial_id = trial_id
        self.config = config
        self.experiment_tag = trial_id
        self.evaluated_params: dict[str, Any] = {}
        self.status = "RUNNING"
        self.run_metadata = _RunMetadata()
        self.last_result: dict[str, Any] = {}
        self.temporary_state = None

    def is_finished(self) -> bool:
        return self.status in ("TERMINATED", "ERROR")

    def set_experiment_tag(self, tag: str) -> None:
        self.experiment_tag = tag

    def set_config(self, config: dict[str, Any]) -> None:
        self.config = config

    def __repr__(self) -> str:
        return self.trial_id


class _Controller:
    search_alg = None

    def __init__(self) -> None:
        self.trials: list[_RayTrial] = []

    def get_trials(self) -> list[_RayTrial]:
        return list(self.trials)

    def get_live_trials(self) -> list[_RayTrial]:
        return [t for t in self.trials if not t.is_finished()]

    def pause_trial(self, trial: _RayTrial, should_checkpoint: bool = True) -> None:
        trial.status = "PAUSED"

    def _schedule_trial_save(self, trial: _RayTrial, result: dict[str, Any]) -> _Checkpoint:
        return _Checkpoint(trial.trial_id, int(result[TIME]))


@dataclass
class _Member:
    """The simulated training of one trial: its weights (acc) and the checkpoints it saved."""

    acc: float = 0.0
    step: int = 0
    length: int = 0
    checkpoints: dict[int, float] = field(default_factory=dict)


def _domains(rng: random.Random) -> tuple[dict[str, Any], dict[str, Any]]:
    """Random mutations: ours (kubetune domains, lists, nesting) and the initial config."""
    mutations: dict[str, Any] = {}
    config: dict[str, Any] = {}
    for k in range(rng.randint(1, 4)):
        kind = rng.choice(["uniform", "loguniform", "randint", "list", "strings", "nested", "choice"])
        name = f"p{k}"
        if kind == "uniform":
            mutations[name] = Uniform(0.0, rng.choice([1.0, 10.0]))
            config[name] = rng.uniform(0, 1)
        elif kind == "loguniform":
            mutations[name] = LogUniform(1e-4, 1e-1)
            config[name] = 1e-3
        elif kind == "randint":
            mutations[name] = RandInt(1, 50)
            config[name] = rng.randint(1, 49)
        elif kind == "list":
            mutations[name] = [1, 2, 4, 8, 16][: rng.randint(1, 5)]
            config[name] = rng.choice([1, 2, 3])  # 3 is in no list: Ray resamples it
        elif kind == "strings":
            mutations[name] = ["sgd", "adam", "rmsprop"]
            config[name] = "adam"
        elif kind == "choice":
            mutations[name] = Choice((0.5, 0.9, 0.99))  # a domain: perturbed as a number
            config[name] = 0.9
        else:
            mutations[name] = {"a": Uniform(0.0, 1.0), "b": [True, False]}
            config[name] = {"a": 0.5, "b": True}
        if rng.random() < 0.2:
            del config[name]  # filled from the mutation when the trial joins
    return mutations, config


def _for_ray(mutation: Any) -> Any:
    """Ray's form of one of our mutations: a domain becomes a callable on the shared stream."""
    if isinstance(mutation, dict):
        return {k: _for_ray(v) for k, v in mutation.items()}
    if isinstance(mutation, list):
        return list(mutation)
    return lambda: mutation.sample(_STREAM.current)


def _run_population(seed: int) -> tuple[dict[str, int], list[str]]:
    rng = random.Random(seed)
    mode = rng.choice(["min", "max"])
    n = rng.randint(2, 12)
    setting: dict[str, Any] = {
        "perturbation_interval": rng.choice([1, 2, 3, 5, 2.5]),
        "burn_in_period": rng.choice([0, 0, 3, 7]),
        "quantile_fraction": rng.choice([0.25, 0.25, 0.5, 0.1, 0.34, 0.0]),
        "resample_probability": rng.choice([0.25, 0.25, 0.0, 0.5, 1.0]),
        "perturbation_factors": rng.choice([(1.2, 0.8), (2.0, 0.5, 1.1)]),
    }
    mutations, base_config = _domains(rng)
    ray: Any = RayPBT(
        time_attr=TIME, metric=METRIC, mode=mode, hyperparam_mutations=_for_ray(mutations),
        log_config=False, **setting,
    )
    ours = PopulationBasedTraining(
        time_attr=TIME, metric=METRIC, mode=mode, hyperparam_mutations=mutations,
        seed=seed, **setting,
    )
    controller = _Controller()
    members: dict[str, _Member] = {}
    coarse = rng.random() < 0.4  # coarse scores tie often
    counts = {"checks": 0, "exploits": 0, "skips": 0}
    mismatches: list[str] = []
    for i in range(n):
        trial_id = f"pop{seed}-{i}"
        handle = _RayTrial(trial_id, dict(base_config))
        controller.trials.append(handle)
        _STREAM.current = fill_stream(seed, trial_id)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(ray_pbt_module, "random", _STREAM)
            ray.on_trial_add(controller, handle)
        ours.add_trial(trial_id, base_config)
        members[trial_id] = _Member(length=rng.randint(5, 40))
    by_id = {t.trial_id: t for t in controller.trials}
    running = list(controller.trials)
    while running and not mismatches:
        handle = rng.choice(running)
        member = members[handle.trial_id]
        member.step += rng.choice([1, 1, 1, 1, 2])  # now and then a step is not seen
        rate = sum(v for v in _numbers(handle.config)) % 3.0
        member.acc += rate + rng.gauss(0, 0.5)
        member.checkpoints[member.step] = member.acc
        value: float = round(member.acc) if coarse else member.acc
        if rng.random() < 0.03:
            value = math.nan
        value = value if mode == "max" else -value
        result = {TIME: member.step, METRIC: value}
        handle.last_result = result
        _STREAM.current = decision_stream(seed, handle.trial_id, member.step)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(ray_pbt_module, "random", _STREAM)
            decision = ray.on_trial_result(controller, handle, result)
        check = ours.on_result(handle.trial_id, member.step, value)
        counts["checks"] += check is not None
        where = f"seed {seed} {setting} {handle.trial_id} step {member.step}"
        ray_exploited = decision == RayDecision.NOOP
        if ray_exploited != (check is not None and check.exploit is not None):
            mismatches.append(f"{where}: ray exploited {ray_exploited}, ours {check}")
            break
        ray_upper = ray._trial_state[handle].last_checkpoint is not None
        if check is not None and not ray_exploited and ray_upper != (check.quantile == "upper"):
            mismatches.append(f"{where}: ray upper {ray_upper}, ours {check.quantile}")
        if check is not None and check.skipped_donor is not None:
            counts["skips"] += 1
        if ray_exploited:
            assert check is not None and check.exploit is not None
            donor_ckpt = handle.run_metadata.checkpoint_manager._latest_checkpoint_result.checkpoint
            if (donor_ckpt.trial_id, donor_ckpt.step) != (check.exploit.donor, check.exploit.donor_step):
                mismatches.append(f"{where}: ray cloned {donor_ckpt}, ours {check.exploit}")
            counts["exploits"] += 1
            handle.status = "RUNNING"
            donor = members[donor_ckpt.trial_id]
            member.step = donor_ckpt.step
            member.acc = donor.checkpoints[donor_ckpt.step]
        for trial_id, ray_trial in by_id.items():
            if not _same(ray_trial.config, ours.config(trial_id)):
                mismatches.append(f"{where}: config of {trial_id}: ray {ray_trial.config}, "
                                  f"ours {ours.config(trial_id)}")
        if member.step >= member.length:
            handle.status = "TERMINATED"
            ray.on_trial_complete(controller, handle, result)
            ours.on_complete(handle.trial_id)
            running.remove(handle)
    return counts, mismatches


def _numbers(config: dict[str, Any]) -> list[float]:
    out: list[float] = []
    for value in config.values():
        if isinstance(value, dict):
            out += _numbers(value)
        elif isinstance(value, (int, float)):
            out.append(float(value))
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def test_exploit_and_explore_decisions_match_ray_on_random_populations() -> None:
    totals = {"checks": 0, "exploits": 0, "skips": 0}
    mismatches: list[str] = []
    for seed in range(N_POPULATIONS):
        counts, problems = _run_population(seed)
        for key in totals:
            totals[key] += counts[key]
        mismatches += problems
    print(f"\nPBT parity with Ray: {N_POPULATIONS} populations, {totals['checks']} checks, "
          f"{totals['exploits']} exploits, {totals['skips']} skipped (donor without "
          f"checkpoint), {len(mismatches)} mismatches")
    assert mismatches == [], "\n".join(mismatches[:5])
    assert totals["exploits"] > 1000
    assert totals["skips"] > 20
