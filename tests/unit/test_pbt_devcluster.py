"""The dev-cluster PBT benchmark's pure parts: the trial's training agrees with problem.py
step for step, a resumed trial continues exactly where its checkpoint left off, and
GPU-time to solve is counted up to the budget only."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.pbt.devcluster import Scale, experiment_body, read_progress, solve_point
from benchmarks.pbt.devcluster_trial import segment_of, train
from benchmarks.pbt.problem import Model, step_stream, train_step


def _reference(lr: float, seed: int, trial: str, segment: int, start: Model,
               iterations: int) -> Model:
    accuracy = start.accuracy
    for i in range(start.step + 1, start.step + iterations + 1):
        accuracy = train_step(accuracy, lr, step_stream(seed, trial, segment, i))
    return Model(accuracy, start.step + iterations)


def test_train_is_problem_steps_on_the_same_streams() -> None:
    for lr in (1e-4, 0.002, 0.01, 0.02):
        for seed in range(3):
            got = train(Model(), lr, seed=seed, trial="pbt-1", segment=0, iterations=300)
            assert got == _reference(lr, seed, "pbt-1", 0, Model(), 300)
    # a segment is a different stream: a clone does not replay its donor's noise
    a = train(Model(50.0, 40), 0.005, seed=0, trial="pbt-1", segment=0, iterations=10)
    b = train(Model(50.0, 40), 0.005, seed=0, trial="pbt-1", segment=1, iterations=10)
    assert a != b


def test_resuming_from_a_checkpoint_continues_the_same_run() -> None:
    whole = train(Model(), 0.004, seed=2, trial="t", segment=0, iterations=100)
    first = train(Model(), 0.004, seed=2, trial="t", segment=0, iterations=40)
    saved = json.loads(json.dumps({"accuracy": first.accuracy, "iteration": first.step}))
    resumed = train(Model(saved["accuracy"], saved["iteration"]), 0.004, seed=2, trial="t",
                    segment=0, iterations=60)
    assert resumed == whole


def test_segment_is_read_from_the_checkpoint_directory() -> None:
    assert segment_of(Path("/ckpt/ns/pbt-1234abcd/pbt-2")) == 0
    assert segment_of(Path("/ckpt/ns/pbt-1234abcd/pbt-2/exploit-3")) == 3


def test_solve_point_counts_gpu_steps_in_time_order_within_the_budget(tmp_path: Path) -> None:
    for trial, lines in {"a": [(1.0, 10.0), (3.0, 201.0)], "b/exploit-1": [(2.0, 5.0)]}.items():
        d = tmp_path / trial
        d.mkdir(parents=True)
        (d / "progress.jsonl").write_text("".join(
            json.dumps({"time": t, "step": i, "accuracy": acc}) + "\n"
            for i, (t, acc) in enumerate(lines, start=1)))
    records = read_progress(tmp_path)
    assert records == [(1.0, 10.0), (2.0, 5.0), (3.0, 201.0)]
    assert solve_point(records, budget=3) == (3, 3.0)
    assert solve_point(records, budget=2) is None  # solved past the budget is not solved
    assert solve_point([(1.0, 200.0)], budget=5) is None  # "solved" is strictly above 200


def test_methods_get_equal_gpus_and_pbt_the_simulators_settings() -> None:
    scale = Scale()
    bodies = {m: experiment_body(m, 7, scale, "claim")["spec"] for m in ("pbt", "random", "asha")}
    assert {b["maxConcurrentTrials"] for b in bodies.values()} == {scale.concurrency}
    assert bodies["pbt"]["numSamples"] == bodies["random"]["numSamples"] == scale.concurrency
    assert bodies["pbt"]["searchSpace"]["lr"] == {"value": 1e-4}
    assert bodies["pbt"]["scheduler"]["hyperparamMutations"]["lr"] == {"uniform": [1e-4, 0.02]}
    assert bodies["asha"]["scheduler"]["maxT"] == scale.steps
    assert all(b["storage"]["persistentVolumeClaim"]["claimName"] == "claim"
               for b in bodies.values())
