"""The four methods behind one small interface, as the simulator drives them.

A method is told when a trial starts, is shown the trial's value at each of its
milestones and answers stop or continue, and is told when a trial completes
max_t. Trials are numbered by their place in the configuration stream.

- kubetune: our `AsyncHyperBandScheduler` (kubetune.schedulers.make_scheduler).
- ray: Ray Tune's `AsyncHyperBandScheduler`, driven without a Ray runtime the
  way Ray's TuneController calls it (on_trial_add, on_trial_result, and
  on_trial_complete after a STOP or at the end).
- optuna: `SuccessiveHalvingPruner(min_resource=grace_period,
  reduction_factor=rf)` over an in-memory study, ask/tell with as many trials
  open as there are workers; `report()` then `should_prune()` at each rung.
- random: random search, every trial runs to max_t.

Milestones are the only steps shown: between milestones none of the three
schedulers can change its answer (a test pins this against every-step feeding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

from kubetune.schedulers import Decision, make_scheduler


@dataclass(frozen=True)
class ASHAConfig:
    max_t: int
    grace_period: int = 1
    reduction_factor: int = 3
    brackets: int = 1

    @property
    def rungs(self) -> int:
        """K: the number of halvings from grace_period to max_t."""
        return round(math.log(self.max_t / self.grace_period, self.reduction_factor))

    @property
    def ceiling(self) -> float:
        """The perfect-ranking speedup over random search: eta^K / (K + 1)."""
        k = self.rungs
        return float(self.reduction_factor**k / (k + 1))


class Method(Protocol):
    name: str

    def milestones(self, trial: int) -> list[int]:
        """Steps below max_t at which `observe` must be called, ascending."""
        ...

    def start(self, trial: int) -> None: ...

    def observe(self, trial: int, step: int, value: float) -> bool:
        """The trial reached `step` with `value`; True to stop it."""
        ...

    def complete(self, trial: int, step: int, value: float) -> None: ...


class KubetuneASHA:
    name = "kubetune"

    def __init__(self, mode: str, cfg: ASHAConfig) -> None:
        self.scheduler = make_scheduler(
            "asha", metric="objective", mode=mode, max_t=cfg.max_t,
            grace_period=cfg.grace_period, reduction_factor=cfg.reduction_factor,
            brackets=cfg.brackets)
        self.max_t = cfg.max_t

    def milestones(self, trial: int) -> list[int]:
        return [m for m in self.scheduler.milestones(str(trial)) if m < self.max_t]

    def start(self, trial: int) -> None:
        return None

    def observe(self, trial: int, step: int, value: float) -> bool:
        return self.scheduler.on_result(str(trial), step, value).decision is Decision.STOP

    def complete(self, trial: int, step: int, value: float) -> None:
        self.scheduler.on_result(str(trial), step, value)
        self.scheduler.on_complete(str(trial), step, value)


@dataclass
class _RayTrial:
    trial_id: str


class RayASHA:
    name = "ray"

    def __init__(self, mode: str, cfg: ASHAConfig) -> None:
        from ray.tune.schedulers import AsyncHyperBandScheduler

        if cfg.brackets != 1:
            raise ValueError("the Ray adapter is deterministic only with brackets=1")
        self.scheduler = AsyncHyperBandScheduler(
            time_attr="step", metric="objective", mode=mode, max_t=cfg.max_t,
            grace_period=cfg.grace_period, reduction_factor=cfg.reduction_factor, brackets=1)
        self._milestones = sorted(
            math.ceil(m) for m, _ in self.scheduler._brackets[0]._rungs if m < cfg.max_t)
        self._trials: dict[int, _RayTrial] = {}

    def milestones(self, trial: int) -> list[int]:
        return list(self._milestones)

    def start(self, trial: int) -> None:
        handle = self._trials[trial] = _RayTrial(str(trial))
        self.scheduler.on_trial_add(None, handle)  # type: ignore[arg-type]

    def observe(self, trial: int, step: int, value: float) -> bool:
        from ray.tune.schedulers import TrialScheduler

        handle = self._trials[trial]
        result = {"step": step, "objective": value}
        decision = self.scheduler.on_trial_result(None, handle, result)  # type: ignore[arg-type]
        if decision == TrialScheduler.STOP:
            self.scheduler.on_trial_complete(None, handle, result)  # type: ignore[arg-type]
            return True
        return False

    def complete(self, trial: int, step: int, value: float) -> None:
        handle = self._trials.pop(trial)
        result = {"step": step, "objective": value}
        self.scheduler.on_trial_result(None, handle, result)  # type: ignore[arg-type]
        self.scheduler.on_trial_complete(None, handle, result)  # type: ignore[arg-type]


class OptunaSHA:
    name = "optuna"

    def __init__(self, mode: str, cfg: ASHAConfig) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._optuna = optuna
        self.study = optuna.create_study(
            direction="minimize" if mode == "min" else "maximize",
            sampler=optuna.samplers.RandomSampler(seed=0),
            pruner=optuna.pruners.SuccessiveHalvingPruner(
                min_resource=cfg.grace_period, reduction_factor=cfg.reduction_factor,
                min_early_stopping_rate=0))
        self._milestones = []
        m = cfg.grace_period
        while m < cfg.max_t:
            self._milestones.append(m)
            m *= cfg.reduction_factor
        self._trials: dict[int, Any] = {}

    def milestones(self, trial: int) -> list[int]:
        return list(self._milestones)

    def start(self, trial: int) -> None:
        self._trials[trial] = self.study.ask()

    def observe(self, trial: int, step: int, value: float) -> bool:
        t = self._trials[trial]
        t.report(value, step)
        if t.should_prune():
            self.study.tell(t, state=self._optuna.trial.TrialState.PRUNED)
            del self._trials[trial]
            return True
        return False

    def complete(self, trial: int, step: int, value: float) -> None:
        t = self._trials.pop(trial)
        t.report(value, step)
        self.study.tell(t, value)


class RandomSearch:
    name = "random"

    def milestones(self, trial: int) -> list[int]:
        return []

    def start(self, trial: int) -> None:
        return None

    def observe(self, trial: int, step: int, value: float) -> bool:
        return False

    def complete(self, trial: int, step: int, value: float) -> None:
        return None


METHODS = ("kubetune", "ray", "optuna", "random")


def make_method(name: str, mode: str, cfg: ASHAConfig) -> Method:
    if name == "kubetune":
        return KubetuneASHA(mode, cfg)
    if name == "ray":
        return RayASHA(mode, cfg)
    if name == "optuna":
        return OptunaSHA(mode, cfg)
    if name == "random":
        return RandomSearch()
    raise ValueError(f"method must be one of {', '.join(METHODS)} (got {name!r})")
