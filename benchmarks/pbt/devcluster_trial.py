"""The pbt_function problem as a trial program on the dev cluster, with `kubetune.trial`.

Each reported step trains `iterations_per_step` iterations of problem.py's
`train_step` at the config's lr, saves a checkpoint (accuracy, iteration, lr),
reports `accuracy` and appends (time, step, accuracy) to progress.jsonl in its
own checkpoint directory, which the benchmark reads to count GPU-time. A trial
started again (a PBT clone, a retry) resumes from `get_checkpoint()`: the donor's
accuracy and iteration after an exploit. The noise of iteration i comes from
problem.py's stream (seed, trial, segment, i), the segment being the exploit
count read from the checkpoint directory's name (`exploit-<n>`), as in the
simulator: a clone does not replay its donor's noise.

Config keys: lr, seed, steps, iterations_per_step, pace (seconds per step, at
least: a step's training is microseconds; the pace stands for a GPU step).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from benchmarks.pbt.problem import Model, step_stream, train_step

PROGRESS = "progress.jsonl"


def segment_of(checkpoint_dir: Path) -> int:
    """The exploit count of a checkpoint directory: `<trial>/exploit-<n>` is n, else 0."""
    match = re.fullmatch(r"exploit-(\d+)", Path(checkpoint_dir).name)
    return int(match.group(1)) if match else 0


def train(model: Model, lr: float, *, seed: int, trial: str, segment: int,
          iterations: int) -> Model:
    """`iterations` iterations of the problem from `model` (its step counts iterations)."""
    accuracy, iteration = model.accuracy, model.step
    for _ in range(iterations):
        iteration += 1
        accuracy = train_step(accuracy, lr, step_stream(seed, trial, segment, iteration))
    return Model(accuracy, iteration)


def main() -> None:
    from kubetune import trial

    cfg = trial.config()
    lr, seed = float(cfg["lr"]), int(cfg["seed"])
    steps, per_step = int(cfg["steps"]), int(cfg["iterations_per_step"])
    pace = float(cfg.get("pace", 0.0))
    me = os.environ["KUBETUNE_TRIAL"]
    own = trial.checkpoint_dir()
    segment = segment_of(own)
    model, done = Model(), 0
    ckpt = trial.get_checkpoint()
    if ckpt is not None:
        state = json.loads((ckpt.path / "state.json").read_text())
        model, done = Model(float(state["accuracy"]), int(state["iteration"])), ckpt.step
    own.mkdir(parents=True, exist_ok=True)
    with (own / PROGRESS).open("a", encoding="utf-8") as log:
        for step in range(done + 1, steps + 1):
            started = time.monotonic()
            model = train(model, lr, seed=seed, trial=me, segment=segment, iterations=per_step)
            with trial.save_checkpoint(step=step) as path:
                (path / "state.json").write_text(json.dumps(
                    {"accuracy": model.accuracy, "iteration": model.step, "lr": lr}))
            trial.report(step=step, accuracy=model.accuracy)
            log.write(json.dumps({"time": time.time(), "step": step,
                                  "accuracy": model.accuracy}) + "\n")
            log.flush()
            time.sleep(max(0.0, pace - (time.monotonic() - started)))


if __name__ == "__main__":
    main()
