"""Search + scheduler methods for the replay, and the simulation in which they choose configurations.

Each method is a `Method` (methods.py) that also answers `suggest(trial)`: the
configuration of the trial about to start, asked when a worker frees, after
every observation of that instant (the operator's order).

- kt-tpe-pruned / kt-tpe-complete: kubetune's `OptunaSuggester` (TPE) with our
  ASHA. At each suggestion the history is built as the operator builds it from
  the TuneTrials at that moment: trials that completed max_t with their final
  value, ASHA-stopped ones with the value at the rung where they stopped
  (told to Optuna as PRUNED with their rung values, or as COMPLETE), running
  ones as running, every one with the rung values seen so far.
- kt-random: kubetune's random search (`BasicVariantSampler`, a pure function
  of seed and index) with our ASHA: the baseline.
- ray-tpe: Ray Tune's `OptunaSearch` (behind the `ConcurrencyLimiter` that
  `max_concurrent_trials` adds) and Ray's `AsyncHyperBandScheduler`, driven as
  Ray's TuneController drives them without a Ray runtime: on_trial_result to
  the scheduler first; on STOP, on_trial_complete to the scheduler and to the
  searcher with that last result (so the searcher tells Optuna COMPLETE with
  the value at the stopping rung), otherwise on_trial_result to the searcher.
- kt-tpe-fifo / kt-random-fifo (controls, not in the default grid): the same
  searchers with no early stopping, every trial run to max_t.
- optuna-tpe: Optuna's own `TPESampler` with `SuccessiveHalvingPruner`
  (study.ask with the distributions Ray's conversion gives, trial.report and
  trial.should_prune at each rung, study.tell PRUNED or the final value).

Every TPE runs with Optuna's defaults (10 startup trials, multivariate,
constant liar) and the benchmark seed.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import numpy as np

from benchmarks.replay.curves import CurvePool
from benchmarks.replay.methods import KubetuneASHA, Method
from benchmarks.replay.problems import SearchProblem
from benchmarks.replay.simulator import Setting, Simulation

METRIC = "objective"
SEARCH_METHODS = ("kt-tpe-pruned", "kt-tpe-complete", "kt-random", "ray-tpe", "optuna-tpe")
CONTROLS = ("kt-tpe-fifo", "kt-random-fifo")
"""Not in the default grid: TPE and random search with no early stopping (every trial to
max_t), to tell what the model learns from full-fidelity values alone."""


class SearchMethod(Method, Protocol):
    def suggest(self, trial: int) -> dict[str, Any]: ...


class KubetuneSearch:
    """Our ASHA with kubetune's random search or its Optuna suggester, history as the operator has it."""

    def __init__(self, problem: SearchProblem, seed: int, sampler: str,
                 stopped_as: str = "pruned", options: dict[str, Any] | None = None,
                 early_stopping: bool = True) -> None:
        self.name = f"kt-{sampler}" + (f"-{stopped_as}" if sampler != "random" else "")
        self.asha = KubetuneASHA(problem.mode, problem.asha) if early_stopping else None
        self.sampler = sampler
        self.configs: list[dict[str, Any]] = []
        self.states: list[str] = []
        self.values: list[float | None] = []
        self.intermediate: list[dict[int, float]] = []
        self._finished: dict[int, Any] = {}
        if sampler == "random":
            from kubetune.search import BasicVariantSampler, parse_space

            self._random = BasicVariantSampler(parse_space(problem.space), seed, 10**9)
        else:
            from kubetune.search.optuna import OptunaSuggester

            self.suggester = OptunaSuggester(sampler, problem.space, problem.mode,  # type: ignore[arg-type]
                                             seed, dict(options or {}),
                                             stopped_as=stopped_as)  # type: ignore[arg-type]

    def history(self) -> list[Any]:
        """Every trial so far in index order, as HistoryRecords (finished ones are built once)."""
        from kubetune.search.optuna import HistoryRecord

        out = []
        for i in range(len(self.configs)):
            record = self._finished.get(i)
            if record is None:
                record = HistoryRecord(index=i, config=self.configs[i],
                                       state=self.states[i],  # type: ignore[arg-type]
                                       value=self.values[i], intermediate=dict(self.intermediate[i]))
                if self.states[i] != "running":
                    self._finished[i] = record
            out.append(record)
        return out

    def suggest(self, trial: int) -> dict[str, Any]:
        assert trial == len(self.configs)
        if self.sampler == "random":
            config = self._random.config(trial)
        else:
            config = self.suggester.suggest(trial, self.history())
        self.configs.append(config)
        self.states.append("running")
        self.values.append(None)
        self.intermediate.append({})
        return config

    def milestones(self, trial: int) -> list[int]:
        return self.asha.milestones(trial) if self.asha is not None else []

    def start(self, trial: int) -> None:
        return None

    def observe(self, trial: int, step: int, value: float) -> bool:
        assert self.asha is not None
        self.intermediate[trial][step] = value
        stop = self.asha.observe(trial, step, value)
        if stop:
            self.states[trial], self.values[trial] = "pruned", value
        return stop

    def complete(self, trial: int, step: int, value: float) -> None:
        self.intermediate[trial][step] = value
        if self.asha is not None:
            self.asha.complete(trial, step, value)
        self.states[trial], self.values[trial] = "complete", value


class _Handle:
    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id


class RaySearch:
    """Ray's OptunaSearch + AsyncHyperBandScheduler, called as Ray's TuneController calls them."""

    name = "ray-tpe"

    def __init__(self, problem: SearchProblem, seed: int, workers: int) -> None:
        from ray.tune.schedulers import AsyncHyperBandScheduler
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        cfg = problem.asha
        self.scheduler = AsyncHyperBandScheduler(
            time_attr="training_iteration", metric=METRIC, mode=problem.mode, max_t=cfg.max_t,
            grace_period=cfg.grace_period, reduction_factor=cfg.reduction_factor, brackets=1)
        self.searcher = ConcurrencyLimiter(
            OptunaSearch(space=problem.ray_space(), metric=METRIC, mode=problem.mode, seed=seed),
            max_concurrent=workers)
        self._milestones = sorted(
            int(np.ceil(m)) for m, _ in self.scheduler._brackets[0]._rungs if m < cfg.max_t)
        self._trials: dict[int, _Handle] = {}

    @property
    def study(self) -> Any:
        return self.searcher.searcher._ot_study  # type: ignore[attr-defined]

    def suggest(self, trial: int) -> dict[str, Any]:
        config = self.searcher.suggest(str(trial))
        if config is None:
            raise RuntimeError(f"Ray's ConcurrencyLimiter refused trial {trial}")
        return dict(config)

    def milestones(self, trial: int) -> list[int]:
        return list(self._milestones)

    def start(self, trial: int) -> None:
        handle = self._trials[trial] = _Handle(str(trial))
        self.scheduler.on_trial_add(None, handle)  # type: ignore[arg-type]

    def _result(self, trial: int, step: int, value: float) -> bool:
        from ray.tune.schedulers import TrialScheduler

        handle = self._trials[trial]
        result = {"training_iteration": step, METRIC: value, "trial_id": handle.trial_id}
        decision = self.scheduler.on_trial_result(None, handle, result)  # type: ignore[arg-type]
        if decision == TrialScheduler.STOP:
            # TuneController.stop_trial: scheduler, then searcher, both with trial.last_result.
            self.scheduler.on_trial_complete(None, handle, result)  # type: ignore[arg-type]
            self.searcher.on_trial_complete(handle.trial_id, result=result)
            del self._trials[trial]
            return True
        self.searcher.on_trial_result(handle.trial_id, result)
        return False

    def observe(self, trial: int, step: int, value: float) -> bool:
        return self._result(trial, step, value)

    def complete(self, trial: int, step: int, value: float) -> None:
        if trial in self._trials and not self._result(trial, step, value):
            raise RuntimeError(f"Ray's ASHA did not stop trial {trial} at max_t")


class OptunaSearchSHA:
    """Optuna's own TPE + SuccessiveHalvingPruner on one in-memory study."""

    name = "optuna-tpe"

    def __init__(self, problem: SearchProblem, seed: int) -> None:
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._optuna = optuna
        cfg = problem.asha
        self.distributions = OptunaSearch.convert_search_space(problem.ray_space())
        self.study = optuna.create_study(
            direction="minimize" if problem.mode == "min" else "maximize",
            sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=optuna.pruners.SuccessiveHalvingPruner(
                min_resource=cfg.grace_period, reduction_factor=cfg.reduction_factor,
                min_early_stopping_rate=0))
        self._milestones = []
        m = cfg.grace_period
        while m < cfg.max_t:
            self._milestones.append(m)
            m *= cfg.reduction_factor
        self._trials: dict[int, Any] = {}

    def suggest(self, trial: int) -> dict[str, Any]:
        t = self._trials[trial] = self.study.ask(fixed_distributions=self.distributions)
        return dict(t.params)

    def milestones(self, trial: int) -> list[int]:
        return list(self._milestones)

    def start(self, trial: int) -> None:
        return None

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


def make_search_method(name: str, problem: SearchProblem, seed: int, workers: int) -> SearchMethod:
    if name == "kt-tpe-pruned":
        return KubetuneSearch(problem, seed, "tpe", "pruned")
    if name == "kt-tpe-complete":
        return KubetuneSearch(problem, seed, "tpe", "complete")
    if name == "kt-random":
        return KubetuneSearch(problem, seed, "random")
    if name == "kt-tpe-fifo":
        return KubetuneSearch(problem, seed, "tpe", early_stopping=False)
    if name == "kt-random-fifo":
        return KubetuneSearch(problem, seed, "random", early_stopping=False)
    if name == "ray-tpe":
        return RaySearch(problem, seed, workers)
    if name == "optuna-tpe":
        return OptunaSearchSHA(problem, seed)
    raise ValueError(f"method must be one of {', '.join(SEARCH_METHODS + CONTROLS)} (got {name!r})")


class SearchSimulation(Simulation):
    """The replay's event loop, with each trial's curve made from the config its method suggests."""

    def __init__(self, problem: SearchProblem, method: SearchMethod, workers: int,
                 setting: Setting, seed: int, max_trials: int = 8000) -> None:
        shape = (max_trials, problem.max_t)
        pool = CurvePool(problem.name, problem.mode, np.full(shape, np.nan),
                         np.full(shape, problem.reference_step_seconds), problem.target)
        super().__init__(pool, method, workers, setting, seed)
        self.scale = 1.0
        if setting.median_step_seconds is not None:
            self.scale = setting.median_step_seconds / problem.reference_step_seconds
        self.problem = problem
        self.search = method
        self.seed = seed
        self.configs: list[dict[str, Any]] = []
        self.suggest_seconds = 0.0

    def _start(self, now: float) -> bool:
        index = len(self.trials)
        if index >= len(self.pool):
            return False
        started = time.perf_counter()
        config = self.search.suggest(index)
        self.suggest_seconds += time.perf_counter() - started
        values, seconds = self.problem.curve(self.seed, index, config)
        self.pool.values[index] = values
        self.pool.step_seconds[index] = seconds
        self.cumulative[index] = np.cumsum(seconds * self.scale)
        self.configs.append(config)
        return super()._start(now)
