"""Every status the operator writes is one the CRD schema accepts, and None means "clear it".

A small stand-in for the apiserver drives plan_tick through whole experiments
(trials created, running, pruned, failed, retried, succeeded; the experiment
succeeding or failing): each status patch is merged into the stored status as
a JSON merge patch, nulls are pruned as the apiserver prunes them, and the
result is validated against crds/*.yaml. Objects in the schema are closed here
(no additional properties), so a field the operator writes but the CRD does
not declare fails too, instead of being pruned silently.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from kubetune.api import (
    SpecError,
    TrialState,
    TuneExperimentStatus,
    TuneTrialStatus,
    validate_experiment_spec,
)
from kubetune.controller import reconcile
from kubetune.controller.pace import DecisionEvents, changes, without_nulls
from kubetune.controller.planner import (
    ExperimentView,
    Plan,
    PodView,
    TrialMetrics,
    TrialView,
    plan_tick,
)

ROOT = Path(__file__).resolve().parents[2]


def _closed(node: Any) -> Any:
    """The OpenAPI v3 schema as draft-4 JSON Schema, every declared object closed."""
    if isinstance(node, list):
        return [_closed(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _closed(v) for k, v in node.items()}
    if out.pop("nullable", False):
        out["type"] = [out["type"], "null"]
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def _status_validator(kind: str) -> jsonschema.Draft4Validator:
    crd = yaml.safe_load((ROOT / "crds" / f"{kind}.kubetune.io.yaml").read_text())
    (version,) = crd["spec"]["versions"]
    schema = _closed(version["schema"]["openAPIV3Schema"]["properties"]["status"])
    return jsonschema.Draft4Validator(schema)


EXPERIMENT_STATUS = _status_validator("tuneexperiments")
TRIAL_STATUS = _status_validator("tunetrials")


def merge(stored: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null deletes, anything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    out = dict(stored) if isinstance(stored, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), value)
    return out


def assert_valid(validator: jsonschema.Draft4Validator, status: Mapping[str, Any]) -> None:
    errors = sorted(validator.iter_errors(status), key=lambda e: list(e.path))
    assert not errors, "; ".join(f"{list(e.path)}: {e.message}" for e in errors)


class FakeApiserver:
    """One experiment's stored objects; applies Plans as the reconciler would."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = validate_experiment_spec(spec)
        self.status: dict[str, Any] = {}
        self.trials: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, PodView] = {}
        self.written: list[tuple[str, dict[str, Any]]] = []
        self.events: list[str] = []
        self.clock = 0

    def tick(self, snapshot: dict[str, TrialMetrics] | None = None,
             metrics_error: str | None = None) -> Plan:
        self.clock += 1
        now = f"2026-01-01T00:00:{self.clock:02d}Z"
        view = ExperimentView("exp", "ns", 1, self.spec, copy.deepcopy(self.status))
        trials = [TrialView.from_body(t) for t in self.trials.values()]
        plan = plan_tick(view, trials, list(self.pods.values()), snapshot, now, metrics_error)
        for name, status in plan.trial_status.items():
            self._write("TuneTrial", self.trials[name], status, TRIAL_STATUS)
        for pod, _ in plan.delete_pods:
            self.pods[pod] = replace(self.pods[pod], deleting=True)
        for new in plan.new_trials:
            name = f"exp-{new.index}"
            self.trials[name] = {"metadata": {"name": name},
                                 "spec": {"index": new.index, "params": new.params}}
        for new_pod in plan.new_pods:
            name = f"{new_pod.trial}-{new_pod.attempt}"
            self.pods[name] = PodView(name, new_pod.trial, new_pod.attempt, "Pending")
        assert plan.experiment_status is not None
        holder = {"status": self.status}
        self._write("TuneExperiment", holder, plan.experiment_status, EXPERIMENT_STATUS)
        self.status = holder["status"]
        self.events += [e.reason for e in plan.events]
        return plan

    def _write(self, kind: str, obj: dict[str, Any], status: TuneTrialStatus | TuneExperimentStatus,
               validator: jsonschema.Draft4Validator) -> None:
        patch = status.merge_patch()
        assert_valid(validator, without_nulls(patch))
        stored = without_nulls(merge(obj.get("status") or {}, patch))
        assert_valid(validator, stored)
        # What is stored reads back into the same model.
        type(status).model_validate(stored)
        obj["status"] = stored
        self.written.append((kind, stored))

    # -- the world moves between ticks ---------------------------------------------------
    def gone(self) -> None:
        """Pods being deleted finish deleting."""
        self.pods = {n: p for n, p in self.pods.items() if not p.deleting}

    def pod(self, name: str, phase: str, **fields: Any) -> None:
        self.pods[name] = replace(self.pods[name], phase=phase, **fields)

    def states(self) -> dict[str, str]:
        return {n: (t.get("status") or {}).get("state", "") for n, t in self.trials.items()}


def spec(**over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "objective": {"metric": "accuracy", "mode": "max"},
        "searchSpace": {"lr": {"loguniform": [1e-4, 1e-1]}, "opt": {"choice": ["sgd", "adam"]}},
        "numSamples": 4,
        "maxConcurrentTrials": 4,
        "trialRetries": 1,
        "maxFailedTrials": 3,
        "scheduler": {"type": "asha", "maxT": 9, "gracePeriod": 1, "reductionFactor": 3},
        "trialTemplate": {"spec": {"containers": [{"name": "t", "image": "x"}]}},
    }
    raw.update(over)
    return raw


def metrics(step: int, value: float, rungs: dict[int, float]) -> TrialMetrics:
    return TrialMetrics(step=step, metrics={"accuracy": value, "loss": 1 - value},
                        rungs={m: (m, v) for m, v in rungs.items()})


def finished(step: int, value: float, rungs: dict[int, float]) -> str:
    return json.dumps({"step": step, "metrics": {"accuracy": value},
                       "rungs": {str(m): {"step": m, "value": v} for m, v in rungs.items()},
                       "finished": True})


def run_to_success() -> FakeApiserver:
    """Four trials: one succeeds, one is pruned, one succeeds on its retry, one fails twice."""
    api = FakeApiserver(spec())
    api.tick()  # four trials and their pods
    for i in range(4):
        api.pod(f"exp-{i}-1", "Running")
    api.tick({}, metrics_error="Prometheus at http://p is unreachable")
    api.tick({"exp-0": metrics(1, 0.9, {1: 0.9}), "exp-1": metrics(1, 0.2, {1: 0.2}),
              "exp-3": metrics(1, 0.95, {1: 0.95})})
    api.gone()
    api.pod("exp-2-1", "Failed", exit_code=1, message="CUDA error\n")
    api.pod("exp-3-1", "Failed", exit_code=137, reason="OOMKilled")
    api.tick({})  # both retried
    api.pod("exp-2-2", "Running")
    api.pod("exp-3-2", "Running")
    api.pod("exp-0-1", "Succeeded", message=finished(9, 0.93, {1: 0.9, 3: 0.92}))
    api.tick({"exp-2": metrics(2, float("nan"), {})})  # a non-finite objective is absent
    api.pod("exp-2-2", "Succeeded", message=finished(9, 0.97, {1: 0.96, 3: 0.97}))
    api.pod("exp-3-2", "Failed", exit_code=1)
    api.tick(None)
    return api


def test_a_succeeding_experiment_writes_only_statuses_the_crd_accepts() -> None:
    api = run_to_success()
    assert api.states() == {"exp-0": "Succeeded", "exp-1": "Pruned", "exp-2": "Succeeded",
                            "exp-3": "Failed"}
    assert {"TrialCreated", "TrialPruned", "TrialRetried", "TrialFailed",
            "ExperimentSucceeded"} <= set(api.events)
    phases = [s.get("phase") for kind, s in api.written if kind == "TuneExperiment"]
    assert phases[0] == "Running" and phases[-1] == "Succeeded"
    assert api.status["bestTrial"]["name"] == "exp-2"
    assert api.trials["exp-1"]["status"]["prunedAt"]["cutoff"] == 0.9
    assert [r["milestone"] for r in api.trials["exp-0"]["status"]["rungs"]] == [1, 3]


def test_an_experiment_failed_by_its_trials_writes_only_statuses_the_crd_accepts() -> None:
    api = FakeApiserver(spec(numSamples=3, maxConcurrentTrials=2, trialRetries=0,
                             maxFailedTrials=1))
    api.tick()
    api.pod("exp-0-1", "Running")
    api.pod("exp-1-1", "Running")
    api.tick({"exp-0": metrics(1, 0.5, {1: 0.5}), "exp-1": metrics(1, 0.6, {1: 0.6})})
    api.pod("exp-0-1", "Failed", exit_code=2)
    plan = api.tick({})
    assert api.status["phase"] == "Failed" and "maxFailedTrials=1" in api.status["message"]
    assert api.trials["exp-1"]["status"]["reason"] == "ExperimentFailed"
    assert ("exp-1-1", 30) in plan.delete_pods
    assert "ExperimentFailed" in api.events


def test_an_invalid_spec_is_reported_with_a_status_the_crd_accepts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[TuneExperimentStatus] = []

    class Gateway:
        def patch_experiment_status(self, namespace: str, name: str,
                                    status: TuneExperimentStatus) -> None:
            written.append(status)

    class Metrics:
        def set_experiment(self, *_: Any) -> None: ...

    monkeypatch.setattr(reconcile.kopf, "event", lambda *a, **k: None)
    ctx: Any = type("Ctx", (), {"gateway": Gateway(), "metrics": Metrics(),
                                "decision_events": DecisionEvents()})()
    body = {"metadata": {"name": "exp", "namespace": "ns", "uid": "u", "generation": 2}}
    logger: Any = type("L", (), {"warning": lambda *a: None})()
    reconcile._fail_invalid(ctx, body, SpecError("spec.numSamples", "must be >= 1, got 0"), logger)
    (status,) = written
    patch = status.merge_patch()
    assert_valid(EXPERIMENT_STATUS, patch)
    assert patch["phase"] == "Failed" and patch["observedGeneration"] == 2
    assert patch["conditions"][0]["reason"] == "InvalidSpec"


# -- None in a merge patch ----------------------------------------------------------------------
def test_a_field_set_to_none_is_cleared_and_a_field_not_set_is_left_alone() -> None:
    patch = TuneTrialStatus(state=TrialState.RUNNING, objective=None).merge_patch()
    assert patch == {"state": "Running", "objective": None}
    stored = merge({"state": "Pending", "objective": 0.5, "podName": "e-0-1"}, patch)
    assert stored == {"state": "Running", "podName": "e-0-1"}


def test_a_non_finite_objective_clears_the_stored_one() -> None:
    api = FakeApiserver(spec(numSamples=1, maxConcurrentTrials=1))
    api.tick()
    api.pod("exp-0-1", "Running")
    api.tick({"exp-0": metrics(1, 0.5, {1: 0.5})})
    assert api.trials["exp-0"]["status"]["objective"] == 0.5
    plan = api.tick({"exp-0": metrics(3, float("nan"), {1: 0.5, 3: float("nan")})})
    assert plan.trial_status["exp-0"].merge_patch()["objective"] is None
    assert "objective" not in api.trials["exp-0"]["status"]
    assert "accuracy" not in api.trials["exp-0"]["status"]["metrics"]


def test_the_best_trial_is_left_alone_until_a_trial_succeeds() -> None:
    api = FakeApiserver(spec(numSamples=1, maxConcurrentTrials=1))
    plan = api.tick()
    assert plan.experiment_status is not None
    assert "bestTrial" not in plan.experiment_status.merge_patch()
    assert "completionTime" not in plan.experiment_status.merge_patch()


def test_a_tick_that_sees_nothing_new_writes_nothing() -> None:
    api = FakeApiserver(spec())
    api.tick()
    for i in range(4):
        api.pod(f"exp-{i}-1", "Running")
    # exp-0 is first at rung 1 (its record has no cutoff), exp-3's value is not finite.
    seen = {"exp-0": metrics(1, 0.9, {1: 0.9}), "exp-3": metrics(1, float("nan"), {})}
    api.tick(seen)
    api.tick(seen)
    view = ExperimentView("exp", "ns", 1, api.spec, copy.deepcopy(api.status))
    trials = [TrialView.from_body(t) for t in api.trials.values()]
    plan = plan_tick(view, trials, list(api.pods.values()), seen, "2026-01-01T00:01:00Z")
    assert plan.trial_status == {}
    assert plan.experiment_status is not None
    assert not changes(api.status, plan.experiment_status.merge_patch())
