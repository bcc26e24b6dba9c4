"""`python -m benchmarks.pbt --dev-cluster [--seeds N]`: the PBT benchmark on the local control plane.

The local control plane (real apiserver, Prometheus, KWOK GPU nodes, the runner
that plays the kubelet) and the real operator are started once; for each seed
three TuneExperiments run one after the other, each in its own namespace with a
ReadWriteMany claim (a hostPath PV the runner maps to a local directory, as in
tests/e2e/test_pbt.py), at equal GPU-time: `concurrency` trials at a time (one
GPU each) and a budget of concurrency x steps reported steps.

- pbt: scheduler pbt, numSamples = concurrency, every member from lr 1e-4,
  perturbationInterval 1 step, lr ~ uniform(1e-4, 0.02) and some_other_factor
  in [1, 2] (the simulator's settings), Ray's defaults otherwise.
- random: fifo, numSamples = concurrency, lr ~ uniform(1e-4, 0.02), each trial
  trained for the whole budget (steps).
- asha: maxT = steps, gracePeriod 3, reductionFactor 3, new trials on freed
  GPUs until the budget is spent (the experiment is then deleted).

A trial (devcluster_trial.py) trains `iterations_per_step` iterations of the
problem per reported step. GPU-time is counted from the steps the trials wrote
(progress.jsonl in each checkpoint directory, every attempt's), in the order of
their wall-clock times; "iterations to solve" is the GPU-iterations spent until
the first step past accuracy 200, divided by `concurrency` (the simulator's
rounds). Exploits and trial counts are read from the TuneTrials' status.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from kubernetes import client, config
from tests.support.operator import OperatorProcess, install_crds
from tests.support.storage import hostpath_claim

from benchmarks.pbt.devcluster_trial import PROGRESS
from benchmarks.pbt.problem import SOLVED_ACCURACY
from kubetune.devcluster import ClusterConfig, LocalCluster

ROOT = Path(__file__).resolve().parents[2]
TRIAL = Path(__file__).resolve().parent / "devcluster_trial.py"
GROUP, VERSION = "kubetune.io", "v1alpha1"
METHODS = ("pbt", "random", "asha")
LR = {"uniform": [1e-4, 0.02]}


@dataclass(frozen=True)
class Scale:
    concurrency: int = 4
    steps: int = 100
    """Reported steps per trial; the budget is concurrency x steps."""
    iterations_per_step: int = 10
    pace: float = 0.5
    """Seconds per reported step (the step's training itself takes microseconds)."""
    timeout: float = 420.0
    """Wall-clock cap of one experiment, seconds."""

    @property
    def budget(self) -> int:
        return self.concurrency * self.steps


@dataclass(frozen=True)
class Result:
    method: str
    seed: int
    gpu_steps_to_solve: int | None
    wall_to_solve: float | None
    wall: float
    gpu_steps: int
    trials: int
    exploits: int
    phase: str


def experiment_body(method: str, seed: int, scale: Scale, claim: str) -> dict[str, Any]:
    space: dict[str, Any] = {
        "lr": LR, "seed": {"value": seed}, "steps": {"value": scale.steps},
        "iterations_per_step": {"value": scale.iterations_per_step},
        "pace": {"value": scale.pace},
    }
    samples = scale.concurrency
    if method == "pbt":
        space.update(lr={"value": 1e-4}, some_other_factor={"value": 1})
        scheduler: dict[str, Any] = {
            "type": "pbt", "perturbationInterval": 1, "seed": seed,
            "hyperparamMutations": {"lr": LR, "some_other_factor": [1, 2]}}
    elif method == "random":
        scheduler = {"type": "fifo"}
    elif method == "asha":
        scheduler = {"type": "asha", "maxT": scale.steps, "gracePeriod": 3, "reductionFactor": 3}
        samples = scale.budget // 3  # more than the budget can start; it is cut at the budget
    else:
        raise ValueError(f"unknown method {method!r}; one of {', '.join(METHODS)}")
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "TuneExperiment",
        "metadata": {"name": method},
        "spec": {
            "objective": {"metric": "accuracy", "mode": "max"},
            "searchSpace": space,
            "searchAlgorithm": {"type": "random", "seed": seed},
            "numSamples": samples,
            "maxConcurrentTrials": scale.concurrency,
            "scheduler": scheduler,
            "storage": {"persistentVolumeClaim": {"claimName": claim}},
            "pruneGracePeriodSeconds": 2,
            "trialTemplate": {"spec": {"containers": [{
                "name": "trial", "image": "kubetune/pbt-function:bench",
                "command": ["python", str(TRIAL)],
                "env": [{"name": "KUBETUNE_LINGER_SECONDS", "value": "2"},
                        {"name": "PYTHONPATH", "value": str(ROOT)}],
                "resources": {"limits": {"nvidia.com/gpu": "1"}},
            }]}},
        },
    }


def read_progress(run_dir: Path) -> list[tuple[float, float]]:
    """Every step every attempt trained, as (wall time, accuracy), in time order."""
    records = []
    for path in run_dir.rglob(PROGRESS):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                r = json.loads(line)
                records.append((float(r["time"]), float(r["accuracy"])))
    return sorted(records)


def solve_point(records: Sequence[tuple[float, float]], budget: int,
                threshold: float = SOLVED_ACCURACY) -> tuple[int, float] | None:
    """(GPU-steps spent, wall time) at the first step past `threshold` within `budget`."""
    for n, (at, accuracy) in enumerate(records[:budget], start=1):
        if accuracy > threshold:
            return n, at
    return None


def _wait(predicate: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")


def _namespace(core: client.CoreV1Api, name: str) -> None:
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    _wait(lambda: any(sa.metadata is not None and sa.metadata.name == "default"
                      for sa in core.list_namespaced_service_account(name).items),
          30, "default ServiceAccount", 0.1)


def run_method(api: client.ApiClient, method: str, seed: int, scale: Scale,
               volume: Path) -> Result:
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    namespace = f"pbt-{method}-{seed}"
    _namespace(core, namespace)
    directory = volume / namespace
    directory.mkdir(parents=True)
    body = experiment_body(method, seed, scale, hostpath_claim(core, namespace, directory, name="ckpt"))
    started = time.time()
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "tuneexperiments", body)
    exp: dict[str, Any] = {}
    while time.time() - started < scale.timeout:
        exp = cast(dict[str, Any], custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, "tuneexperiments", method))
        phase = (exp.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed") or len(read_progress(directory)) >= scale.budget:
            break
        time.sleep(1.0)
    wall = time.time() - started
    phase = (exp.get("status") or {}).get("phase") or "Pending"
    listed = cast(dict[str, Any], custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, "tunetrials"))
    items = listed["items"]
    exploits = sum(len(((t.get("status") or {}).get("pbt") or {}).get("exploits") or [])
                   for t in items)
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "tuneexperiments", method)
    _wait(lambda: not core.list_namespaced_pod(namespace).items, 120, "the trial pods to go")
    records = read_progress(directory)
    point = solve_point(records, scale.budget)
    return Result(method, seed, point[0] if point else None,
                  point[1] - started if point else None, wall,
                  min(len(records), scale.budget), len(items), exploits, phase)


def run(seeds: Iterable[int], scale: Scale, methods: Sequence[str] = METHODS) -> list[Result]:
    state_dir = Path(tempfile.mkdtemp(prefix="kubetune-pbt-bench-", dir="/dev/shm"
                                      if Path("/dev/shm").is_dir() else None))
    cluster = LocalCluster(ClusterConfig(state_dir=state_dir))
    print(f"local control plane up in {cluster.up():.1f}s ({state_dir})", flush=True)
    results = []
    operator: OperatorProcess | None = None
    try:
        api = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(cluster.kubeconfig))
        install_crds(api)
        operator = OperatorProcess(cluster, state_dir, tick=1.0)
        operator.start()
        volume = state_dir.parent / f"{state_dir.name}-volume"
        for seed in seeds:
            for method in methods:
                result = run_method(api, method, seed, scale, volume)
                print(row(result, scale), flush=True)
                results.append(result)
    finally:
        if operator is not None:
            operator.kill()
        cluster.down()
    return results


HEADER = ("| method | seed | solved (acc > 200) | GPU-steps to solve | iterations to solve | "
          "wall to solve | wall | GPU-steps used | trials | exploits |\n"
          "|---|---|---|---|---|---|---|---|---|---|")


def row(r: Result, scale: Scale) -> str:
    solved = r.gpu_steps_to_solve is not None
    steps = f"{r.gpu_steps_to_solve}" if solved else f"> {scale.budget}"
    iters = (f"{r.gpu_steps_to_solve * scale.iterations_per_step / scale.concurrency:g}"
             if r.gpu_steps_to_solve is not None else "-")
    to_solve = f"{r.wall_to_solve:.0f} s" if r.wall_to_solve is not None else "-"
    return (f"| {r.method} | {r.seed} | {'yes' if solved else 'no'} | {steps} | {iters} | "
            f"{to_solve} | {r.wall:.0f} s | {r.gpu_steps} | {r.trials} | {r.exploits} |")


def summary(results: Sequence[Result], scale: Scale) -> str:
    lines = ["| method | solved | median GPU-steps to solve (unsolved = over budget) | "
             "median wall to solve (solved seeds) | median exploits |", "|---|---|---|---|---|"]
    for method in METHODS:
        rs = [r for r in results if r.method == method]
        if not rs:
            continue
        solved = [r for r in rs if r.gpu_steps_to_solve is not None]
        med = statistics.median(r.gpu_steps_to_solve or scale.budget + 1 for r in rs)
        shown = f"> {scale.budget}" if med > scale.budget else f"{med:g}"
        walls = [r.wall_to_solve for r in solved if r.wall_to_solve is not None]
        wall = f"{statistics.median(walls):.0f} s" if walls else "-"
        lines.append(f"| {method} | {len(solved)}/{len(rs)} | {shown} | {wall} | "
                     f"{statistics.median(r.exploits for r in rs):g} |")
    return "\n".join(lines)


def main(seeds: int, scale: Scale | None = None, methods: Sequence[str] = METHODS) -> None:
    scale = scale or Scale()
    print(f"{scale.concurrency} GPUs; {scale.steps} steps per trial of "
          f"{scale.iterations_per_step} iterations, {scale.pace:g} s each; budget "
          f"{scale.budget} GPU-steps = {scale.budget * scale.iterations_per_step} "
          f"GPU-iterations per method", flush=True)
    print(HEADER, flush=True)
    results = run(range(seeds), scale, methods)
    print()
    print(HEADER)
    for r in results:
        print(row(r, scale))
    print()
    print(summary(results, scale))


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m benchmarks.pbt.devcluster")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--pace", type=float, default=Scale.pace, help="seconds per step")
    parser.add_argument("--steps", type=int, default=Scale.steps, help="steps per trial")
    args = parser.parse_args()
    main(args.seeds, Scale(steps=args.steps, pace=args.pace,
                           timeout=max(Scale.timeout, 2.0 * args.steps * args.pace + 120)),
         args.methods)
