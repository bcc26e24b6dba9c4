"""One scale scenario from start to teardown, and the figures it yields.

The cluster is started once for all scenarios; each scenario gets its own
namespace(s) and a fresh operator process (so its counters and peak memory are
its own), and the apiserver's request counters are read before and after.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from kubernetes import client, config
from tests.support.operator import OperatorProcess, install_crds

from benchmarks.scale.measures import ApiserverSampler, largest_objects, lists_in_window, quantile
from benchmarks.scale.observe import (
    ClusterWatch,
    Sampler,
    apiserver_metrics,
    apiserver_requests,
    first_rung_samples,
    parse_metrics,
    profile_summary,
)
from kubetune import contract
from kubetune.devcluster import ClusterConfig, LocalCluster

if TYPE_CHECKING:
    from benchmarks.scale.__main__ import Scenario

GROUP, VERSION = "kubetune.io", "v1alpha1"


@dataclass(frozen=True)
class ClusterSettings:
    nodes: int = 32
    gpus_per_node: int = 8
    tick: float = 2.0
    scrape_interval: str = "1s"
    py_spy: str = ""
    """A py-spy binary: when set, the operator is sampled (20 Hz, idle included) throughout."""
    operator_root: str = ""
    """A checkout whose operator/ and crds/ to run instead of this one's (the old design's
    commit, for a side-by-side): its operator package goes first on the operator's
    PYTHONPATH and its CRDs are installed. The cluster, runner and trials stay this one's."""


FARM_ANNOTATION = getattr(contract, "ANNOTATION_SIMULATED_FARM", None) or getattr(
    contract, "ANNOTATION_FARM", None)
"""The pod annotation that asks the dev cluster's runner to farm a simulated trial (serve
its /metrics from one shared process) instead of starting a process for it."""


def simulated_experiment(name: str, s: Scenario, checkpoints: Path) -> dict[str, Any]:
    """A TuneExperiment of simulated trainer trials, each asking for one GPU."""
    env = [{"name": "KUBETUNE_CHECKPOINT_ROOT", "value": str(checkpoints)}]
    if s.linger_seconds is not None:
        env.insert(0, {"name": "KUBETUNE_LINGER_SECONDS", "value": f"{s.linger_seconds:g}"})
    template: dict[str, Any] = {}
    if s.farm:
        if FARM_ANNOTATION is None:
            raise SystemExit("--farm: this checkout's kubetune.contract names no farm annotation "
                             "(the dev cluster's runner cannot farm simulated trials here)")
        template["metadata"] = {"annotations": {FARM_ANNOTATION: "true"}}
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "TuneExperiment",
        "metadata": {"name": name},
        "spec": {
            "objective": {"metric": "accuracy", "mode": "max"},
            "searchSpace": {
                "lr": {"loguniform": [1.0e-4, 1.0]},
                "optimizer": {"choice": ["sgd", "adam"]},
                "hidden_size": {"choice": [16, 32, 64, 128, 256]},
                "layers": {"randint": [1, 4]},
                "dropout": {"uniform": [0.0, 0.5]},
                "batch_size": {"choice": [32, 64, 128, 256]},
                "momentum": {"uniform": [0.5, 0.99]},
                "epochs": {"value": s.max_t},
            },
            "searchAlgorithm": {"type": "random", "seed": 7},
            "numSamples": s.trials,
            "maxConcurrentTrials": s.concurrency,
            "scheduler": {"type": "asha", "maxT": s.max_t, "gracePeriod": 1, "reductionFactor": 3},
            "pruneGracePeriodSeconds": 5,
            "trialTemplate": {**template, "spec": {"containers": [{
                "name": "trainer", "image": "kubetune-trainer:0.1.0",
                "command": ["python", "-m", "kubetune_trainer", "--dataset", "simulated",
                            "--seconds-per-step", str(s.seconds_per_step), "--log-level", "WARNING"],
                "env": env,
                "resources": {"limits": {"nvidia.com/gpu": "1"}},
            }]}},
        },
    }


def _create_namespace(core: client.CoreV1Api, name: str) -> None:
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        accounts = core.list_namespaced_service_account(name).items
        if any(sa.metadata is not None and sa.metadata.name == "default" for sa in accounts):
            return
        time.sleep(0.2)
    raise RuntimeError(f"namespace {name} has no default ServiceAccount after 30s")


def run_scenarios(scenarios: Sequence[Scenario], settings: ClusterSettings, work: Path,
                  timeout: float) -> Iterator[dict[str, Any]]:
    cluster = LocalCluster(ClusterConfig(state_dir=work / "cluster", nodes=settings.nodes,
                                         gpus_per_node=settings.gpus_per_node,
                                         scrape_interval=settings.scrape_interval))
    try:
        up = cluster.up()
        print(f"local control plane up in {up:.1f}s: {settings.nodes} nodes x "
              f"{settings.gpus_per_node} GPUs", flush=True)
        api = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(cluster.kubeconfig))
        if settings.operator_root:
            install_crds_from(api, Path(settings.operator_root) / "crds")
        else:
            install_crds(api)
        for scenario in scenarios:
            yield run_scenario(cluster, api, scenario, settings, work, timeout)
    finally:
        cluster.down()


def run_scenario(cluster: LocalCluster, api: client.ApiClient, s: Scenario,
                 settings: ClusterSettings, work: Path, timeout: float) -> dict[str, Any]:
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    namespace = f"scale-{s.name}-{int(time.time())}"
    _create_namespace(core, namespace)
    log_dir = work / namespace
    log_dir.mkdir(parents=True)
    env = {}
    if settings.operator_root:
        root = Path(settings.operator_root)
        env["PYTHONPATH"] = os.pathsep.join([str(root / "operator"), str(root),
                                             os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    operator = OperatorProcess(cluster, log_dir, tick=settings.tick, env=env)
    watcher = ClusterWatch(api, [namespace])
    sampler: Sampler | None = None
    api_sampler: ApiserverSampler | None = None
    profiler: subprocess.Popen[bytes] | None = None
    profile_file = log_dir / "operator-profile.txt"
    metrics_text = ""
    names = [f"x{i:02d}" if s.experiments > 1 else "big" for i in range(s.experiments)]
    try:
        operator.start()
        assert operator.proc is not None
        pids = {"operator": operator.proc.pid, **cluster.state.pids}
        watcher.start()
        if settings.py_spy:
            profiler = subprocess.Popen(
                [settings.py_spy, "record", "--idle", "--nonblocking", "--rate", "20",
                 "--format", "raw", "--output", str(profile_file), "--pid", str(operator.proc.pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def counters() -> dict[str, float]:
            m = parse_metrics(operator.metrics())
            return {"queries": m.get("kubetune_prometheus_queries_total", 0.0),
                    "ticks": m.get("kubetune_reconcile_ticks_total", 0.0),
                    "writes": sum(v for k, v in m.items()
                                  if k.startswith("kubetune_api_writes_total")),
                    "trials": float(len(watcher.trials))}

        sampler = Sampler(pids, period=1.0, counters=counters).start()
        api_sampler = ApiserverSampler(
            lambda: apiserver_requests(apiserver_metrics(api)),
            lambda: parse_metrics(operator.metrics()).get("kubetune_reconcile_ticks_total", -1.0),
            period=5.0).start()
        api_before = api_sampler.samples[-1].requests if api_sampler.samples else \
            apiserver_requests(apiserver_metrics(api))
        started = time.time()
        print(f"[{s.name}] {s.experiments} experiment(s) x {s.trials} trials, "
              f"{s.concurrency} concurrent each, in {namespace}", flush=True)
        for name in names:
            custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, "tuneexperiments",
                simulated_experiment(name, s, work / "checkpoints"))
        finished = _wait(custom, namespace, names, started, timeout, watcher)
        ended = time.time()
        time.sleep(3 * settings.tick)  # let the last ticks and deletions land
        with contextlib.suppress(Exception):
            metrics_text = operator.metrics()
    finally:
        if sampler is not None:
            sampler.stop()
        if api_sampler is not None:
            api_sampler.stop()
        watcher.stop()
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                profiler.wait(timeout=60)
            if profiler.poll() is None:
                profiler.kill()
        operator.kill()
    api_after = apiserver_requests(apiserver_metrics(api))
    events = core.list_namespaced_event(namespace).items
    experiments = _items(custom.list_namespaced_custom_object(GROUP, VERSION, namespace,
                                                              "tuneexperiments"))
    objects = largest_objects(api, namespace)
    window = int(time.time() - started) + 120
    rung_first: dict[tuple[str, int], float] = {}
    for name in names:
        rung_first.update(first_rung_samples(cluster.prometheus_url, namespace, name, window))
    assert sampler is not None and api_sampler is not None
    result = summarise(s, settings, namespace, started, ended, finished, watcher, sampler,
                       parse_metrics(metrics_text) if metrics_text else {},
                       api_before, api_after, events, experiments, rung_first)
    created = [p.created for p in watcher.pods.values() if p.created is not None]
    result["steady_state_lists"] = lists_in_window(api_sampler.samples, created, s.experiments)
    result["largest_objects"] = objects
    result["largest_object_bytes"] = max((v.get("largest_bytes", 0) for v in objects.values()),
                                         default=0)
    result["operator_root"] = settings.operator_root
    result["operator_commit"] = _commit(settings.operator_root or str(Path(__file__).parents[2]))
    result["farm_annotation"] = FARM_ANNOTATION if s.farm else None
    if profile_file.exists():
        result["operator_profile"] = profile_summary(profile_file.read_text())
    print(f"[{s.name}] done in {ended - started:.0f}s: {json_line(result)}", flush=True)
    with contextlib.suppress(Exception):
        core.delete_namespace(namespace)
    return result


def _commit(root: str) -> str:
    """The commit the operator ran from (short hash, '+changes' when its tree differed)."""
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "operator"],
                               capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def install_crds_from(api: client.ApiClient, directory: Path) -> None:
    """install_crds, from another checkout's crds/."""
    import yaml

    ext = client.ApiextensionsV1Api(api)
    for path in sorted(directory.glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        with contextlib.suppress(client.exceptions.ApiException):
            ext.create_custom_resource_definition(body)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            crd = ext.read_custom_resource_definition(body["metadata"]["name"])
            if any(c.type == "Established" and c.status == "True"
                   for c in ((crd.status and crd.status.conditions) or [])):
                break
            time.sleep(0.1)


def _wait(custom: client.CustomObjectsApi, namespace: str, names: Sequence[str], started: float,
          timeout: float, watcher: ClusterWatch) -> bool:
    last_report = 0.0
    # From the watch: a LIST every few seconds here would show in the apiserver's counters.
    while time.time() - started < timeout:
        with watcher.lock:
            phases = Counter(watcher.experiment_phases.get(n, "Pending") for n in names)
        if phases["Succeeded"] + phases["Failed"] == len(names):
            return True
        if time.time() - last_report > 30:
            with watcher.lock:
                states = Counter(t.state or "Pending" for t in watcher.trials.values())
            print(f"  {time.time() - started:5.0f}s trials {dict(states)} experiments "
                  f"{dict(phases)}", flush=True)
            last_report = time.time()
        time.sleep(2)
    return False


def _items(listing: object) -> list[dict[str, Any]]:
    return list(cast(dict[str, Any], listing)["items"])


def json_line(result: dict[str, Any]) -> str:
    keys = ("trials_started_per_second", "decision_latency_p50", "decision_latency_p99",
            "decision_tick_p99", "decision_recorded_p99", "decisions_after_pod_end",
            "decision_after_pod_end_p99", "decision_while_running_p99",
            "recorded_to_deletion_p99", "pod_running_after_create_p99", "watch_lag_p99",
            "api_writes_per_trial", "queries_per_experiment_tick", "operator_peak_rss_mib",
            "operator_cpu_seconds")
    return ", ".join(f"{k}={result.get(k)}" for k in keys)


_quantile = quantile


def summarise(s: Scenario, settings: ClusterSettings, namespace: str, started: float,
              ended: float, finished: bool, watcher: ClusterWatch, sampler: Sampler,
              op_metrics: dict[str, float], api_before: dict[tuple[str, str, str], float],
              api_after: dict[tuple[str, str, str], float], events: list[Any],
              experiments: list[dict[str, Any]], rung_first: dict[tuple[str, int], float],
              ) -> dict[str, Any]:
    pods = dict(watcher.pods)
    trials = dict(watcher.trials)
    total_trials = s.experiments * s.trials
    created = sorted(p.created for p in pods.values() if p.created is not None)
    states = Counter(t.state for t in trials.values())
    # Per-trial figures are over the trials that ended: a run cut off by its timeout still
    # gives a fair per-trial cost (its unfinished trials are left out of both sides).
    done_trials = sum(states[k] for k in ("Succeeded", "Pruned", "Failed")) if not finished \
        else total_trials
    per = max(1, done_trials)

    # Decision latency: rung value's first sample in Prometheus -> the pod's deletionTimestamp.
    latency_delete: list[float] = []
    to_decision: list[float] = []  # rung sample -> the trial seen Pruned
    to_delete: list[float] = []  # the trial seen Pruned -> its pod seen deleting
    decided: list[float] = []  # rung sample -> the deciding tick's time (whole seconds)
    latency_gone: list[float] = []
    gone_after_decision: list[float] = []
    gone_when: list[tuple[float, float]] = []  # (seconds into the run, pod gone after decision)
    # (seconds into the run of the rung sample, decision latency, decided after the pod's end)
    decided_when: list[tuple[float, float, bool]] = []
    # Which decisions came after the pod had ended (its trainer exited first): those waited
    # for the pod's end to reach the operator, the others for a tick that read the rung.
    after_end: list[float] = []
    while_running: list[float] = []
    missing = 0
    for key, t in trials.items():
        if t.state != "Pruned" or not t.pruned_at:
            continue
        trial = key.split("/", 1)[1]
        first = rung_first.get((trial, int(t.pruned_at["milestone"])))
        pod = next((p for name, p in pods.items()
                    if name.startswith(f"{namespace}/{trial}-") and p.deleting is not None), None)
        if first is None or pod is None or pod.deleting is None:
            missing += 1
            continue
        latency_delete.append(pod.deleting - first)
        ended_first = pod.finished is not None and t.terminal is not None and pod.finished <= t.terminal
        (after_end if ended_first else while_running).append(pod.deleting - first)
        decided_when.append((round(first - started, 1), round(pod.deleting - first, 3), ended_first))
        if t.terminal is not None:  # the split: deciding, then deleting
            to_decision.append(t.terminal - first)
            if t.completion is not None:
                decided.append(t.completion - first)
            to_delete.append(pod.deleting - t.terminal)
        if pod.gone is not None:
            latency_gone.append(pod.gone - first)
            gone_after_decision.append(pod.gone - pod.deleting)
            gone_when.append((round(pod.deleting - started, 1), round(pod.gone - pod.deleting, 3)))

    # API writes: the operator's own counters, plus the Events it posted.
    writes = {k.split("{", 1)[1].rstrip("}"): v for k, v in op_metrics.items()
              if k.startswith("kubetune_api_writes_total")}
    ours = ("kubetune-operator", "kopf")  # the reporting component, and what it was before
    operator_events = [e for e in events if (e.source and e.source.component in ours)
                       or (e.reporting_component or "") in ours]
    # An aggregated Event updated in place is one write per count (its PATCH or POST).
    event_count = sum(max(1, e.count or 1) for e in (operator_events or events))
    write_total = sum(writes.values()) + event_count
    per_trial_status = [t.events.get("MODIFIED", 0) for t in trials.values()]
    # Per trial: its create, its status patches (each changed the object, so each is a
    # MODIFIED event), its pods' creates and the operator's deletes, and its Events.
    events_per_object = Counter(e.involved_object.name for e in operator_events
                                if e.involved_object is not None)
    pods_per_trial: Counter[str] = Counter()
    deletes_per_trial: Counter[str] = Counter()
    for name, p in pods.items():
        trial = name.split("/", 1)[1].rsplit("-", 1)[0]
        pods_per_trial[trial] += 1
        deletes_per_trial[trial] += p.deleting is not None
    per_trial_writes = []
    for key, t in trials.items():
        trial = key.split("/", 1)[1]
        per_trial_writes.append(t.events.get("ADDED", 0) + t.events.get("MODIFIED", 0)
                                + pods_per_trial[trial] + deletes_per_trial[trial]
                                + events_per_object[trial])
    api_delta = {f"{verb} {res}{('/' + sub) if sub else ''}": api_after.get((verb, res, sub), 0.0)
                 - api_before.get((verb, res, sub), 0.0)
                 for (verb, res, sub) in api_after
                 if api_after.get((verb, res, sub), 0.0) - api_before.get((verb, res, sub), 0.0) > 0}

    # The operator's process: CPU time, memory, over time.
    samples = sampler.samples
    op_cpu = [x.cpu["operator"] for x in samples if "operator" in x.cpu]
    first_s, last_s = samples[0], samples[-1]
    wall = last_s.t - first_s.t
    components = {name: round(last_s.cpu.get(name, 0.0) - first_s.cpu.get(name, 0.0), 1)
                  for name in last_s.cpu}
    busy = (last_s.system_busy - first_s.system_busy) / max(1.0, last_s.system_total - first_s.system_total)
    queries = op_metrics.get("kubetune_prometheus_queries_total", 0.0)
    ticks = op_metrics.get("kubetune_reconcile_ticks_total", 0.0)
    rec_sum = op_metrics.get("kubetune_reconcile_duration_seconds_sum", 0.0)
    rec_count = op_metrics.get("kubetune_reconcile_duration_seconds_count", 0.0)
    buckets = sorted((float(k.split('le="')[1].split('"')[0]), v) for k, v in op_metrics.items()
                     if k.startswith("kubetune_reconcile_duration_seconds_bucket"))
    window = [t for t in created if t <= ended]
    rate_10s = 0.0
    j = 0
    for i in range(len(window)):
        while window[i] - window[j] > 10.0:
            j += 1
        rate_10s = max(rate_10s, (i - j + 1) / 10.0)
    phases = Counter((e.get("status") or {}).get("phase") for e in experiments)
    return {
        "scenario": asdict(s), "cluster": asdict(settings), "namespace": namespace,
        "finished": finished, "duration_seconds": round(ended - started, 1),
        "experiment_phases": dict(phases),
        "trials_total": total_trials, "trials_done": done_trials, "trial_states": dict(states), "pods_created": len(created),
        "trials_started_per_second": round(len(created) / max(1e-9, created[-1] - started), 2)
        if created else None,
        "trials_started_peak_10s": rate_10s,
        "seconds_to_first_pod": round(created[0] - started, 2) if created else None,
        "decision_latency_samples": len(latency_delete), "decision_latency_missing": missing,
        "decision_latency_p50": _round(_quantile(latency_delete, 0.5)),
        "decision_latency_p90": _round(_quantile(latency_delete, 0.9)),
        "decision_latency_p99": _round(_quantile(latency_delete, 0.99)),
        "decision_latency_max": _round(max(latency_delete, default=None)),
        # How late the benchmark's own watch stamped the deletions (an overstatement of the
        # latencies above when large): receipt less the apiserver's second of the DELETE.
        "decision_tick_p50": _round(_quantile(decided, 0.5)),
        "decision_tick_p99": _round(_quantile(decided, 0.99)),
        "decision_tick_list": [round(x, 2) for x in decided],
        "decisions_after_pod_end": len(after_end),
        "decision_after_pod_end_p99": _round(_quantile(after_end, 0.99)),
        "decision_while_running_p99": _round(_quantile(while_running, 0.99)),
        "decision_recorded_p50": _round(_quantile(to_decision, 0.5)),
        "decision_recorded_p99": _round(_quantile(to_decision, 0.99)),
        "recorded_to_deletion_p50": _round(_quantile(to_delete, 0.5)),
        "recorded_to_deletion_p99": _round(_quantile(to_delete, 0.99)),
        # Pod created -> seen Running: the scheduler, the runner's start and its status.
        "pod_running_after_create_p50": _round(_quantile(
            [p.running - p.created for p in pods.values() if p.running and p.created], 0.5)),
        "pod_running_after_create_p99": _round(_quantile(
            [p.running - p.created for p in pods.values() if p.running and p.created], 0.99)),
        "reconcile_errors": {k.split("{", 1)[1].rstrip("}"): v for k, v in op_metrics.items()
                             if k.startswith("kubetune_reconcile_errors_total")},
        "watch_lag_p50": _round(_quantile(watcher.lag, 0.5)),
        "watch_lag_p99": _round(_quantile(watcher.lag, 0.99)),
        "pod_gone_latency_p50": _round(_quantile(latency_gone, 0.5)),
        "pod_gone_latency_p99": _round(_quantile(latency_gone, 0.99)),
        "pod_gone_after_decision_p50": _round(_quantile(gone_after_decision, 0.5)),
        "pod_gone_after_decision_p99": _round(_quantile(gone_after_decision, 0.99)),
        "event_objects": len(operator_events),
        "apiserver_cpu_seconds": components.get("kube-apiserver"),
        "apiserver_cpu_per_trial_s": round(components.get("kube-apiserver", 0.0) / per, 4),
        "loadavg_mean": round(statistics.fmean(x.loadavg for x in samples), 2),
        "loadavg_max": round(max(x.loadavg for x in samples), 2),
        "decision_latency_list": [round(x, 3) for x in latency_delete],
        "pod_gone_after_decision_list": sorted(gone_when),
        "decision_latency_when": sorted(decided_when),
        "api_writes": writes, "operator_events": event_count,
        "api_writes_per_trial": round(write_total / per, 2),
        "api_writes_per_trial_without_events": round(sum(writes.values()) / per, 2),
        "trial_status_changes_per_trial": {
            "mean": round(statistics.fmean(per_trial_status), 2) if per_trial_status else None,
            "max": max(per_trial_status, default=None),
            "histogram": dict(sorted(Counter(per_trial_status).items()))},
        "writes_per_trial_distribution": {
            "mean": round(statistics.fmean(per_trial_writes), 2) if per_trial_writes else None,
            "p99": _quantile(per_trial_writes, 0.99), "max": max(per_trial_writes, default=None),
            "histogram": dict(sorted(Counter(per_trial_writes).items()))},
        "apiserver_requests_delta": dict(sorted(api_delta.items())),
        "prometheus_queries": queries, "reconcile_ticks": ticks,
        "queries_per_experiment_tick": round(queries / ticks, 3) if ticks else None,
        "reconcile_seconds_mean": round(rec_sum / rec_count, 4) if rec_count else None,
        "reconcile_duration_buckets": buckets,
        "operator_cpu_seconds": round(op_cpu[-1] - op_cpu[0], 1) if len(op_cpu) > 1 else None,
        "operator_cpu_per_trial_ms": round(1000 * (op_cpu[-1] - op_cpu[0]) / per, 1)
        if len(op_cpu) > 1 else None,
        "operator_peak_rss_mib": round(sampler.peak_rss.get("operator", 0) / 2**20, 1),
        "component_cpu_seconds": components,
        "component_peak_rss_mib": {k: round(v / 2**20, 1) for k, v in sampler.peak_rss.items()},
        "machine_busy_fraction": round(busy, 3), "machine_cpus": _cpus(),
        "wall_seconds_sampled": round(wall, 1),
        "peak_trial_processes": max((x.trial_processes for x in samples), default=0),
        "peak_trial_rss_mib": round(max((x.trial_rss for x in samples), default=0) / 2**20, 1),
        "timeline": [{"t": round(x.t - started, 1), "operator_cpu": x.cpu.get("operator"),
                      "operator_rss_mib": round(x.rss.get("operator", 0) / 2**20, 1),
                      "trial_processes": x.trial_processes, "loadavg": x.loadavg,
                      "busy": x.system_busy, "total": x.system_total, **x.counters}
                     for x in samples],
    }


def _round(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(x, digits)


def _cpus() -> int:
    import os

    return os.cpu_count() or 0
