"""Seconds of orchestration per trial: kubetune with its defaults, the floor, Ray Tune.

    python -m benchmarks.per_trial                          # 200 trials at 4 and 16 running
    python -m benchmarks.per_trial --concurrency 4 --skip-ray
    python -m benchmarks.per_trial --only ray --ray-trials 60

Orchestration per trial = (wall time - trial compute) / trials, where trial
compute is the training the trials did (steps x seconds per step, summed)
divided by the number running at once: the wall time the work itself needs
with every slot busy.

- **kubetune**: one TuneExperiment of `--trials` trivial trials of the
  reference trainer's simulated mode (ASHA, maxT 27, gracePeriod 1,
  reductionFactor 3), `--concurrency` running, on the local control plane with
  the operator's and the trial SDK's defaults (tick, linger; nothing set in
  the template but the command). Wall: experiment created -> Succeeded.
- **floor**: the same number of bare pods asking for one GPU and running
  `python -c pass` through the same runner, `--concurrency` at a time, a new
  one created the moment one is seen Succeeded (a watch): pod created,
  scheduled, started, its interpreter started and ended, its phase reported.
- **trainer floor**: the same bare pods running the trials' own program
  instead (the reference trainer's simulated mode for one step, its metrics
  port assigned as for a trial): what a trial costs without any operator, so
  the difference to kubetune is what the operator adds.
- **ray**: Ray Tune on this machine, a function trainable doing the same
  work (27 reports, the same sleep per step), the same ASHA, with
  `reuse_actors` off and on, `max_concurrent_trials` = `--concurrency`,
  local Ray started with `num_cpus` = concurrency. Wall: Tuner.fit().

The load average is printed with every figure: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
MAX_T = 27
GROUP, VERSION = "kubetune.io", "v1alpha1"


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def default_tick() -> float:
    from kubetune.controller.settings import OperatorSettings

    default: Any = next(f.default for f in fields(OperatorSettings) if f.name == "tick_seconds")
    return float(default)


def orchestration(wall: float, compute_seconds: float, concurrency: int, trials: int) -> float:
    """(wall - compute / concurrency) / trials."""
    return (wall - compute_seconds / concurrency) / trials


# -- kubetune --------------------------------------------------------------------------------
def trivial_experiment(name: str, trials: int, concurrency: int, seconds_per_step: float
                       ) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "TuneExperiment",
        "metadata": {"name": name},
        "spec": {
            "objective": {"metric": "accuracy", "mode": "max"},
            "searchSpace": {"lr": {"loguniform": [1.0e-4, 1.0]},
                            "hidden_size": {"choice": [16, 32, 64, 128, 256]},
                            "epochs": {"value": MAX_T}},
            "searchAlgorithm": {"type": "random", "seed": 7},
            "numSamples": trials,
            "maxConcurrentTrials": concurrency,
            "scheduler": {"type": "asha", "maxT": MAX_T, "gracePeriod": 1, "reductionFactor": 3},
            "trialTemplate": {"spec": {"containers": [{
                "name": "trainer", "image": "kubetune-trainer:0.1.0",
                "command": ["python", "-m", "kubetune_trainer", "--dataset", "simulated",
                            "--seconds-per-step", str(seconds_per_step), "--log-level", "WARNING"],
                "resources": {"limits": {"nvidia.com/gpu": "1"}},
            }]}},
        },
    }


@dataclass
class TrivialRun:
    """One run of `trivial_experiment` under an operator with its defaults."""

    operator: Any
    """The OperatorProcess, still running inside `trivial_run`."""
    phase: str
    wall: float
    """Seconds from the experiment's creation to its end (or the timeout)."""
    load_before: float


@contextmanager
def trivial_run(cluster: Any, api: Any, work: Path, namespace: str, trials: int,
                concurrency: int, seconds_per_step: float, timeout: float,
                operator_name: str, tick: float | None = None) -> Iterator[TrivialRun]:
    """Run the trivial experiment in a new `namespace` with an operator of the defaults
    (its tick `tick` when given), until it ends or `timeout` passes; the operator runs
    until the block ends."""
    from kubernetes import client
    from tests.support.operator import OperatorProcess

    custom = client.CustomObjectsApi(api)
    _namespace(client.CoreV1Api(api), namespace)
    operator = OperatorProcess(cluster, work, tick=default_tick() if tick is None else tick,
                               name=operator_name)
    operator.start()
    try:
        load0 = _load()
        started = time.time()
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "tuneexperiments",
            trivial_experiment("trivial", trials, concurrency, seconds_per_step))
        phase = ""
        while time.time() - started < timeout:
            obj: Any = custom.get_namespaced_custom_object(GROUP, VERSION, namespace,
                                                           "tuneexperiments", "trivial")
            phase = (obj.get("status") or {}).get("phase", "")
            if phase in ("Succeeded", "Failed"):
                break
            time.sleep(0.2)
        yield TrivialRun(operator, phase, time.time() - started, load0)
    finally:
        operator.kill()


def run_kubetune(cluster: Any, api: Any, work: Path, trials: int, concurrency: int,
                 seconds_per_step: float, timeout: float) -> dict[str, Any]:
    from kubernetes import client

    custom = client.CustomObjectsApi(api)
    namespace = f"per-trial-kt-{concurrency}-{int(time.time())}"
    tick = default_tick()
    with trivial_run(cluster, api, work, namespace, trials, concurrency, seconds_per_step,
                     timeout, f"operator-{concurrency}") as run:
        phase, wall, load0 = run.phase, run.wall, run.load_before
        listing: Any = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "tunetrials")
    steps = 0
    states: dict[str, int] = {}
    for t in listing["items"]:
        status = t.get("status") or {}
        states[status.get("state", "?")] = states.get(status.get("state", "?"), 0) + 1
        steps += int(status.get("step") or 0)
    compute = steps * seconds_per_step
    return {"system": "kubetune", "variant": f"defaults (tick {tick:g} s)", "trials": trials,
            "concurrency": concurrency, "phase": phase, "wall_seconds": round(wall, 2),
            "steps": steps, "compute_seconds": round(compute, 2), "trial_states": states,
            "orchestration_per_trial": round(orchestration(wall, compute, concurrency, trials), 3),
            "load_before": load0, "load_after": _load()}


# -- the floor: bare pods --------------------------------------------------------------------
BARE = {"name": "c", "image": "python:3.11", "command": ["python", "-c", "pass"]}
BARE_TRAINER = {"name": "trainer", "image": "kubetune-trainer:0.1.0",
                "command": ["python", "-m", "kubetune_trainer", "--dataset", "simulated",
                            "--epochs", "1", "--log-level", "WARNING"],
                "env": [{"name": "KUBETUNE_METRICS_PORT", "value": "0"}]}


def run_floor(api: Any, trials: int, concurrency: int, timeout: float,
              container: dict[str, Any] | None = None) -> dict[str, Any]:
    from kubernetes import client, watch

    core = client.CoreV1Api(api)
    namespace = f"per-trial-floor-{concurrency}-{int(time.time())}"
    _namespace(core, namespace)
    done = threading.Semaphore(0)
    finished: set[str] = set()
    stop = threading.Event()

    def watcher() -> None:
        version = ""
        while not stop.is_set():
            try:
                for event in watch.Watch().stream(  # type: ignore[no-untyped-call]
                        core.list_namespaced_pod, namespace,
                                                  resource_version=version, timeout_seconds=5):
                    obj = event["object"]
                    version = obj.metadata.resource_version
                    if obj.status.phase in ("Succeeded", "Failed") and \
                            obj.metadata.name not in finished:
                        finished.add(obj.metadata.name)
                        done.release()
            except Exception:
                time.sleep(0.1)

    thread = threading.Thread(target=watcher, daemon=True)
    thread.start()
    time.sleep(1.0)  # the watch is open before the first pod

    def pod(i: int) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"bare-{i}"},
                "spec": {"restartPolicy": "Never", "containers": [{
                    **(container or BARE), "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}

    load0 = _load()
    started = time.time()
    created = 0
    for _ in range(min(concurrency, trials)):
        core.create_namespaced_pod(namespace, pod(created))  # type: ignore[arg-type]
        created += 1
    ended = 0
    while ended < trials and time.time() - started < timeout:
        if not done.acquire(timeout=1.0):
            continue
        ended += 1
        if created < trials:
            core.create_namespaced_pod(namespace, pod(created))  # type: ignore[arg-type]
            created += 1
    wall = time.time() - started
    stop.set()
    failed = ended - sum(1 for _ in finished) if ended < trials else 0
    variant = ("bare pods, python -c pass" if container is None else
               "bare pods, the trainer's simulated mode for one step")
    system = "floor" if container is None else "trainer floor"
    return {"system": system, "variant": variant, "trials": trials,
            "concurrency": concurrency, "finished": ended, "failed": failed,
            "wall_seconds": round(wall, 2), "compute_seconds": 0.0,
            "orchestration_per_trial": round(wall / max(1, ended), 3),
            "load_before": load0, "load_after": _load()}


def _namespace(core: Any, name: str) -> None:
    from kubernetes import client

    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(sa.metadata.name == "default"
               for sa in core.list_namespaced_service_account(name).items):
            return
        time.sleep(0.2)


# -- Ray Tune --------------------------------------------------------------------------------
RAY_DRIVER = r"""
import json, os, sys, time
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler

import socket
from ray._private import parameter

# On a loaded 2-core machine the metrics agent can take longer to start than the raylet
# waits for the file in which it publishes its port (a dynamic port): fixed ports skip it.
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

_params_init = parameter.RayParams.__init__

def _with_ports(self, *args, **kwargs):
    _params_init(self, *args, **kwargs)
    self.metrics_agent_port = self.metrics_agent_port or _free_port()
    self.metrics_export_port = self.metrics_export_port or _free_port()
    self.runtime_env_agent_port = self.runtime_env_agent_port or _free_port()
    self.dashboard_agent_listen_port = self.dashboard_agent_listen_port or _free_port()

parameter.RayParams.__init__ = _with_ports

trials, concurrency, reuse, sps, storage = (int(sys.argv[1]), int(sys.argv[2]),
                                            sys.argv[3] == "1", float(sys.argv[4]), sys.argv[5])

def trivial(config):
    # the simulated trainer's shape: a rising curve whose height depends on the config
    for i in range(1, 28):
        if sps > 0:
            time.sleep(sps)
        tune.report({"accuracy": 1.0 - 1.0 / (i + 1) - abs(config["lr"] - 0.01)})

ray.init(num_cpus=concurrency, include_dashboard=False, log_to_driver=False,
         configure_logging=False)
started = time.time()
tuner = tune.Tuner(
    trivial,
    param_space={"lr": tune.loguniform(1e-4, 1.0), "hidden_size": tune.choice([16, 32, 64, 128, 256])},
    tune_config=tune.TuneConfig(
        metric="accuracy", mode="max", num_samples=trials, max_concurrent_trials=concurrency,
        scheduler=ASHAScheduler(max_t=27, grace_period=1, reduction_factor=3), reuse_actors=reuse),
    run_config=tune.RunConfig(storage_path=storage, verbose=0))
grid = tuner.fit()
wall = time.time() - started
steps = sum(int(r.metrics.get("training_iteration", 0)) for r in grid)
print("RESULT " + json.dumps({"wall": wall, "steps": steps, "errors": grid.num_errors}))
"""


def run_ray(trials: int, concurrency: int, reuse: bool, seconds_per_step: float,
            timeout: float) -> dict[str, Any]:
    import subprocess

    storage = tempfile.mkdtemp(prefix="ray-per-trial-")
    load0 = _load()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", RAY_DRIVER, str(trials), str(concurrency), "1" if reuse else "0",
             str(seconds_per_step), storage],
            capture_output=True, text=True, timeout=timeout,
            # On a loaded 2-core machine the raylet's default wait for the metrics agent
            # (agent_register_timeout_ms) runs out before the agent starts.
            env={**os.environ, "RAY_AIR_NEW_OUTPUT": "0", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
                 "RAY_agent_register_timeout_ms": "300000",
                 "RAY_enable_metrics_collection": "0"})
    except subprocess.TimeoutExpired:
        return {"system": "ray", "variant": f"reuse_actors={reuse}", "trials": trials,
                "concurrency": concurrency, "error": f"did not finish in {timeout:.0f} s"}
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        return {"system": "ray", "variant": f"reuse_actors={reuse}", "trials": trials,
                "concurrency": concurrency, "error": (proc.stderr or proc.stdout)[-600:]}
    r = json.loads(line[len("RESULT "):])
    compute = r["steps"] * seconds_per_step
    return {"system": "ray", "variant": f"reuse_actors={reuse}", "trials": trials,
            "concurrency": concurrency, "wall_seconds": round(r["wall"], 2), "steps": r["steps"],
            "errors": r["errors"], "compute_seconds": round(compute, 2),
            "orchestration_per_trial": round(orchestration(r["wall"], compute, concurrency, trials), 3),
            "load_before": load0, "load_after": _load()}


# -- table -----------------------------------------------------------------------------------
def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| running | system | trials | wall | compute / running | orchestration per trial | "
             "vs floor | over the trainer floor | load average before / after |",
             "|---|---|---|---|---|---|---|---|---|"]
    floors = {r["concurrency"]: r["orchestration_per_trial"] for r in rows
              if r["system"] == "floor" and "orchestration_per_trial" in r}
    trainer_floors = {r["concurrency"]: r["orchestration_per_trial"] for r in rows
                      if r["system"] == "trainer floor" and "orchestration_per_trial" in r}
    order = ["floor", "trainer floor", "kubetune"]
    for r in sorted(rows, key=lambda r: (r["concurrency"], order.index(r["system"])
                                         if r["system"] in order else len(order),
                                         r.get("variant", ""))):
        name = f"{r['system']} ({r['variant']})"
        if "error" in r:
            lines.append(f"| {r['concurrency']} | {name} | {r['trials']} | - | - | "
                         f"failed: {r['error'][:200]!r} | - | - | - |")
            continue
        per = r["orchestration_per_trial"]
        floor = floors.get(r["concurrency"])
        ratio = f"{per / floor:.2f}x" if floor else "-"
        trainer = trainer_floors.get(r["concurrency"])
        over = f"{per - trainer:+.3f} s" if trainer is not None and r["system"] == "kubetune" \
            else "-"
        lines.append(f"| {r['concurrency']} | {name} | {r['trials']} | {r['wall_seconds']:.1f} s | "
                     f"{r['compute_seconds'] / r['concurrency']:.1f} s | {per:.3f} s | {ratio} | "
                     f"{over} | {r['load_before']} / {r['load_after']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--ray-trials", type=int, help="trials per Ray run (default --trials)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--seconds-per-step", type=float, default=0.01)
    parser.add_argument("--only", choices=["floor", "trainer-floor", "kubetune", "ray"],
                        action="append")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    parser.add_argument("--out", type=Path, default=RESULTS / "issue18" / "per_trial.json")
    args = parser.parse_args(argv)
    only = set(args.only or ["floor", "trainer-floor", "kubetune", "ray"])
    rows: list[dict[str, Any]] = []

    def record(row: dict[str, Any]) -> None:
        rows.append(row)
        print(json.dumps(row), flush=True)

    if only & {"floor", "trainer-floor", "kubetune"}:
        from kubernetes import config
        from tests.support.operator import install_crds

        from kubetune.devcluster import ClusterConfig, LocalCluster

        base = "/dev/shm" if Path("/dev/shm").is_dir() else None
        work = Path(tempfile.mkdtemp(prefix="kubetune-per-trial-", dir=base))
        gpus = max(args.concurrency)
        cluster = LocalCluster(ClusterConfig(state_dir=work / "cluster", nodes=max(1, gpus // 8),
                                             gpus_per_node=8))
        try:
            cluster.up()
            api = config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
            install_crds(api)
            for c in args.concurrency:
                if "floor" in only:
                    record(run_floor(api, args.trials, c, args.timeout))
                if "trainer-floor" in only:
                    record(run_floor(api, args.trials, c, args.timeout, BARE_TRAINER))
                if "kubetune" in only:
                    record(run_kubetune(cluster, api, work, args.trials, c,
                                        args.seconds_per_step, args.timeout))
        finally:
            cluster.down()
            shutil.rmtree(work, ignore_errors=True)
    if "ray" in only:
        for c in args.concurrency:
            for reuse in (False, True):
                record(run_ray(args.ray_trials or args.trials, c, reuse, args.seconds_per_step,
                               args.timeout))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(args.out.read_text()) if args.out.exists() else []
    args.out.write_text(json.dumps(previous + rows, indent=1))
    sys.stdout.write(table(rows))


if __name__ == "__main__":
    main()
