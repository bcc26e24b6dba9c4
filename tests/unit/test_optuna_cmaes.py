"""searchAlgorithm.type cmaes: Optuna's CmaEsSampler, resumed from the state persisted on the trials."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from typing import Any

import pytest

import kubetune
from kubetune.api import SpecError, validate_experiment_spec
from kubetune.controller.planner import ExperimentView, TrialView, plan_tick
from kubetune.controller.planner.views import TrialView as View
from kubetune.search._optuna_cmaes import restored_state
from kubetune.search.optuna import HistoryRecord, OptunaSuggester, build_sampler

pytestmark = pytest.mark.unit

SPACE = {"x": {"uniform": [-3.0, 3.0]}, "y": {"uniform": [-3.0, 3.0]}}
SEED = 5


def objective(config: dict[str, Any]) -> float:
    return (config["x"] - 1.0) ** 2 + (config["y"] + 0.5) ** 2


def persisted(state: dict[str, Any]) -> dict[str, Any]:
    """The state as the apiserver gives it back (JSON)."""
    loaded: dict[str, Any] = json.loads(json.dumps(state))
    return loaded


def sequential_run(n: int, keep_state: bool = True,
                   options: dict[str, Any] | None = None) -> list[HistoryRecord]:
    """n trials one after another, each asked of a fresh suggester from the persisted history."""
    history: list[HistoryRecord] = []
    for i in range(n):
        config, state = OptunaSuggester("cmaes", SPACE, "min", SEED, options).ask(i, history)
        history.append(HistoryRecord(i, persisted(config), "complete", objective(config),
                                     sampler_state=persisted(state) if keep_state else {}))
    return history


def generations(history: list[HistoryRecord]) -> list[int]:
    return [int(r.sampler_state.get("cma:generation", -1)) for r in history]


def test_cma_generations_advance_from_the_persisted_state_and_rebuild_the_same() -> None:
    history = sequential_run(40)
    assert max(generations(history)) >= 3
    # the optimizer is persisted on the trial that told each generation
    assert sum(1 for r in history if "cma:optimizer:0" in r.sampler_state) >= 3
    # it moves toward the optimum (1, -0.5): the last generation beats the first
    first = [r.value for r in history if r.sampler_state.get("cma:generation") == 0]
    last = [r.value for r in history if r.sampler_state.get("cma:generation") == 5]
    assert last and min(last) < min(v for v in first if v is not None)
    again = sequential_run(40)
    assert [r.config for r in again] == [r.config for r in history]
    assert [r.sampler_state for r in again] == [r.sampler_state for r in history]
    # and each config is asked again the same from the history before it, plain rebuild
    for i in (7, 20, 39):
        config, state = OptunaSuggester("cmaes", SPACE, "min", SEED).ask(i, history[:i],
                                                                        reuse=False)
        assert persisted(config) == history[i].config
        assert persisted(state) == history[i].sampler_state


def test_without_the_persisted_state_cma_stays_in_generation_zero() -> None:
    history = sequential_run(40, keep_state=False)
    _, state = OptunaSuggester("cmaes", SPACE, "min", SEED).ask(40, history)
    assert state["cma:generation"] == 0
    assert "cma:optimizer:0" not in state
    with_state = sequential_run(40)
    assert [r.config for r in history] != [r.config for r in with_state]


def test_with_margin_persists_x_for_tell_and_advances() -> None:
    history = sequential_run(30, options={"withMargin": True, "popsize": 5})
    states = [r.sampler_state for r in history[1:]]
    assert all("x_for_tell" in s for s in states)
    assert max(int(s["cmawm:generation"]) for s in states) >= 3


_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {tests!r})
    from unit.test_optuna_cmaes import SEED, SPACE, sequential_run
    from kubetune.search.optuna import OptunaSuggester
    history = sequential_run(30)
    asked = OptunaSuggester("cmaes", SPACE, "min", SEED).ask(30, history)
    print(json.dumps([*asked, [r.sampler_state for r in history]]))
""")


def test_config_is_the_same_in_processes_with_different_hash_seeds() -> None:
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    outputs = []
    for hash_seed in ("0", "1"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run([sys.executable, "-c", _SCRIPT.format(tests=tests)], env=env,
                              capture_output=True, text=True, check=True, timeout=120)
        outputs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert outputs[0] == outputs[1]  # configs and the pickled optimizers, byte for byte
    history = sequential_run(30)
    here = OptunaSuggester("cmaes", SPACE, "min", SEED).ask(30, history)
    assert persisted([*here, [r.sampler_state for r in history]]) == outputs[0]
    assert outputs[0][1]["cma:generation"] >= 3
    assert sum(1 for state in outputs[0][2] if "cma:optimizer:1" in state) >= 3


class _Boom:
    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("unpickled",))


def test_a_tampered_optimizer_is_never_unpickled(capsys: pytest.CaptureFixture[str]) -> None:
    bad = pickle.dumps(_Boom()).hex()
    state = {"cma:generation": 2, "cma:optimizer:0": bad}
    assert restored_state("cmaes", state) == {"cma:generation": 2}
    assert capsys.readouterr().out == ""
    good = next(r.sampler_state for r in sequential_run(8) if "cma:optimizer:0" in r.sampler_state)
    assert restored_state("cmaes", good) == good
    gap = {k: v for k, v in good.items()} | {"cma:optimizer:5": "00"}
    assert "cma:optimizer:0" not in restored_state("cmaes", gap)
    assert restored_state("tpe", good) == {}


def experiment(**algorithm: Any) -> ExperimentView:
    raw = {
        "objective": {"metric": "loss", "mode": "min"},
        "searchSpace": SPACE,
        "searchAlgorithm": {"type": "cmaes", "seed": SEED, "popsize": 4, **algorithm},
        "numSamples": 12,
        "maxConcurrentTrials": 4,
        "trialTemplate": {"spec": {"containers": [{"name": "t", "image": "x"}]}},
    }
    return ExperimentView(name="exp", namespace="ns", generation=1,
                          spec=validate_experiment_spec(raw), status={})


def test_the_planner_persists_the_state_and_reads_it_back_from_the_trials() -> None:
    trials: list[TrialView] = []
    for _ in range(3):  # three generations of four, each finished before the next tick
        plan = plan_tick(experiment(), trials, [], {}, "2026-01-01T00:00:00Z")
        for new in plan.new_trials:
            body = {"metadata": {"name": f"exp-{new.index}"},
                    "spec": {"index": new.index, "params": new.params,
                             "samplerState": persisted(new.sampler_state)},
                    "status": {"state": "Succeeded", "metrics": {"loss": objective(new.params)}}}
            trials.append(View.from_body(body))
    assert [t.index for t in trials] == list(range(12))
    assert max(int(t.sampler_state.get("cma:generation", -1)) for t in trials) == 1
    assert "cma:optimizer:0" in trials[8].sampler_state
    history = [HistoryRecord(t.index, t.params, "complete", objective(dict(t.params)),
                             sampler_state=t.sampler_state) for t in trials[:8]]
    config, state = OptunaSuggester("cmaes", SPACE, "min", SEED, {"popsize": 4}).ask(8, history)
    assert config == trials[8].params and persisted(state) == trials[8].sampler_state


def test_cmaes_options_and_limits_are_checked_at_apply_time() -> None:
    with pytest.raises(ValueError, match="withMargin and useSeparableCma"):
        experiment(withMargin=True, useSeparableCma=True)
    with pytest.raises(ValueError, match=r"popsize is an option of searchAlgorithm\.type cmaes"):
        experiment(type="tpe")
    wide = {f"p{i}": {"uniform": [0.0, 1.0]} for i in range(33)}
    raw = {"objective": {"metric": "loss", "mode": "min"}, "searchSpace": wide,
           "searchAlgorithm": {"type": "cmaes"}, "numSamples": 4,
           "trialTemplate": {"spec": {"containers": [{"name": "t", "image": "x"}]}}}
    with pytest.raises(ValueError, match="at most 32 numeric parameters, not 33"):
        validate_experiment_spec(raw)
    with pytest.raises(SpecError, match="at most 32 numeric parameters"):
        OptunaSuggester("cmaes", wide, "min", 0)
    # choice entries are drawn independently, not refused
    mixed = {**SPACE, "act": {"choice": ["relu", "tanh"]}}
    config = OptunaSuggester("cmaes", mixed, "min", 0).suggest(0, [])
    assert config["act"] in ("relu", "tanh")


def test_the_python_api_names_cmaes_and_its_options() -> None:
    search = kubetune.OptunaSearch(sampler="cmaes", seed=2, n_startup_trials=3, sigma0=0.2,
                                   popsize=6, with_margin=True)
    spec = search.to_spec()
    assert spec == {"type": "cmaes", "seed": 2, "nStartupTrials": 3, "sigma0": 0.2,
                    "popsize": 6, "withMargin": True}
    algorithm = experiment(**spec).spec.search_algorithm
    assert algorithm.sampler_options() == {"nStartupTrials": 3, "sigma0": 0.2, "popsize": 6,
                                           "withMargin": True}
    sampler = build_sampler("cmaes", algorithm.sampler_options(), 2, 0, {})
    assert (sampler._n_startup_trials, sampler._sigma0, sampler._popsize,
            sampler._with_margin) == (3, 0.2, 6, True)
