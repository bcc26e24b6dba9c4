"""Instruments for the scale benchmark: watches, /proc sampling, Prometheus and metrics reads.

Everything here only reads: watches record when each pod and TuneTrial changed
(time.time() on this machine, the clock Prometheus stamps its samples with), a
sampler reads CPU time and resident memory from /proc, and the scrapers parse
the Prometheus text format.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
from kubernetes import client
from kubernetes.watch.watch import iter_resp_lines
from prometheus_client.parser import text_string_to_metric_families

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# -- watches -------------------------------------------------------------------------------
@dataclass
class PodTimes:
    created: float | None = None
    running: float | None = None
    finished: float | None = None
    deleting: float | None = None
    gone: float | None = None
    phase: str = ""


@dataclass
class TrialTimes:
    events: Counter[str] = field(default_factory=Counter)
    """ADDED / MODIFIED seen for this TuneTrial: one per create and per status change."""
    state: str = ""
    pruned_at: dict[str, Any] | None = None
    terminal: float | None = None
    completion: float | None = None
    """status.completionTime: the operator's tick that decided the trial's end (to the second)."""


class ClusterWatch:
    """Watches the pods and TuneTrials of some namespaces from the start of a scenario."""

    def __init__(self, api: client.ApiClient, namespaces: Iterable[str]) -> None:
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.namespaces = list(namespaces)
        self.pods: dict[str, PodTimes] = defaultdict(PodTimes)
        self.trials: dict[str, TrialTimes] = defaultdict(TrialTimes)
        self.experiment_phases: dict[str, str] = {}
        self.lag: list[float] = []
        """Per pod deletion: when this watch saw it less when it was asked (whole seconds
        on the apiserver's side, so up to 1 s too much): how late the watch stamps."""
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._watch_pods, daemon=True),
                         threading.Thread(target=self._watch_trials, daemon=True),
                         threading.Thread(target=self._watch_experiments, daemon=True)]

    def start(self) -> ClusterWatch:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)

    def _loop(self, lister: Callable[..., Any], handle: Callable[[str, dict[str, Any], float], None],
              **kw: Any) -> None:
        """Follow one kind from the start: plain JSON (the client's models would cost this
        process more than the events' handling, and a watcher that falls behind stamps
        every event late), resumed from the last resourceVersion."""
        version = ""
        while not self._stop.is_set():
            try:
                resp = lister(resource_version=version, timeout_seconds=5, watch=True,
                              allow_watch_bookmarks=True, _preload_content=False, **kw)
                try:
                    for line in iter_resp_lines(resp):  # type: ignore[no-untyped-call]
                        if not line.strip():
                            continue
                        now = time.time()
                        event = json.loads(line)
                        obj = event["object"]
                        if event["type"] == "ERROR":
                            if obj.get("code") == 410:
                                version = ""
                            break
                        version = obj["metadata"].get("resourceVersion", version)
                        if event["type"] != "BOOKMARK":
                            handle(event["type"], obj, now)
                        if self._stop.is_set():
                            break
                finally:
                    resp.release_conn()
            except client.exceptions.ApiException as e:
                if e.status == 410:
                    version = ""
                time.sleep(0.2)
            except Exception:  # a dropped stream: resume from the last version
                time.sleep(0.2)

    def _watch_pods(self) -> None:
        self._loop(self.core.list_pod_for_all_namespaces, self._on_pod,
                   label_selector="kubetune.io/experiment")

    def _watch_trials(self) -> None:
        self._loop(self.custom.list_cluster_custom_object, self._on_trial,
                   group="kubetune.io", version="v1alpha1", plural="tunetrials")

    def _watch_experiments(self) -> None:
        self._loop(self.custom.list_cluster_custom_object, self._on_experiment,
                   group="kubetune.io", version="v1alpha1", plural="tuneexperiments")

    def _on_experiment(self, kind: str, obj: dict[str, Any], now: float) -> None:
        meta = obj["metadata"]
        if meta["namespace"] not in self.namespaces:
            return
        with self.lock:
            self.experiment_phases[meta["name"]] = (obj.get("status") or {}).get("phase") or "Pending"

    def _on_pod(self, kind: str, obj: dict[str, Any], now: float) -> None:
        meta = obj["metadata"]
        if meta["namespace"] not in self.namespaces:
            return
        key = f"{meta['namespace']}/{meta['name']}"
        with self.lock:
            p = self.pods[key]
            if p.created is None:
                p.created = now
            phase = (obj.get("status") or {}).get("phase", "")
            p.phase = phase or p.phase
            if phase == "Running" and p.running is None:
                p.running = now
            if phase in ("Succeeded", "Failed") and p.finished is None:
                p.finished = now
            if meta.get("deletionTimestamp") and p.deleting is None:
                p.deleting = now
                # The DELETE's own time, to the second: deletionTimestamp less the grace.
                asked = _rfc3339(meta["deletionTimestamp"]) - float(
                    meta.get("deletionGracePeriodSeconds") or 0)
                self.lag.append(now - asked)
            if kind == "DELETED":
                p.gone = now

    def _on_trial(self, kind: str, obj: dict[str, Any], now: float) -> None:
        meta = obj["metadata"]
        if meta["namespace"] not in self.namespaces:
            return
        key = f"{meta['namespace']}/{meta['name']}"
        status = obj.get("status") or {}
        with self.lock:
            t = self.trials[key]
            t.events[kind] += 1
            t.state = status.get("state", t.state)
            if status.get("prunedAt"):
                t.pruned_at = status["prunedAt"]
            if t.state in ("Succeeded", "Pruned", "Failed") and t.terminal is None:
                t.terminal = now
                if status.get("completionTime"):
                    t.completion = _rfc3339(status["completionTime"])


def _rfc3339(stamp: str) -> float:
    """Unix time of an RFC 3339 timestamp as the apiserver writes it (seconds, `Z`)."""
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


# -- /proc -----------------------------------------------------------------------------------
def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of one process, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def proc_memory(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) in bytes: resident now, and the peak."""
    values: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(rest.split()[0]) * 1024
    except OSError:
        return None
    if "VmRSS" not in values:
        return None
    return values["VmRSS"], values.get("VmHWM", values["VmRSS"])


def system_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return float(sum(parts) - idle), float(sum(parts))


def trial_processes() -> list[int]:
    """PIDs of running simulated trials (the trainer's command line)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError), open(f"/proc/{entry}/cmdline", "rb") as f:
            cmd = f.read()
            if b"kubetune_trainer" in cmd and b"simulated" in cmd:
                pids.append(int(entry))
    return pids


@dataclass
class Sample:
    t: float
    cpu: dict[str, float]
    """Cumulative CPU seconds per component."""
    rss: dict[str, int]
    system_busy: float
    system_total: float
    trial_processes: int
    trial_rss: int
    loadavg: float
    counters: dict[str, float] = field(default_factory=dict)


class Sampler:
    """Every `period` seconds: component CPU and RSS, machine CPU, trial processes, counters."""

    def __init__(self, pids: dict[str, int], period: float = 1.0,
                 counters: Callable[[], dict[str, float]] | None = None) -> None:
        self.pids = pids
        self.period = period
        self.counters = counters
        self.samples: list[Sample] = []
        self.peak_rss: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._take()

    def _take(self) -> None:
        cpu: dict[str, float] = {}
        rss: dict[str, int] = {}
        for name, pid in self.pids.items():
            c = proc_cpu_seconds(pid)
            m = proc_memory(pid)
            if c is not None:
                cpu[name] = c
            if m is not None:
                rss[name] = m[0]
                self.peak_rss[name] = max(self.peak_rss.get(name, 0), m[1])
        trials = trial_processes()
        trial_rss = 0
        for pid in trials:
            m = proc_memory(pid)
            trial_rss += m[0] if m else 0
        busy, total = system_cpu()
        counters: dict[str, float] = {}
        if self.counters is not None:
            with contextlib.suppress(Exception):
                counters = self.counters()
        self.samples.append(Sample(time.time(), cpu, rss, busy, total, len(trials), trial_rss,
                                   os.getloadavg()[0], counters))

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            with contextlib.suppress(Exception):
                self._take()


# -- metrics text ----------------------------------------------------------------------------
def parse_metrics(text: str) -> dict[str, float]:
    """Flatten a /metrics page: 'name{a="x",b="y"}' -> value (counters keep their _total name)."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = float(s.value)
    return out


def apiserver_metrics(api: client.ApiClient) -> str:
    """The apiserver's own /metrics, read with the admin credentials."""
    cfg = api.configuration
    response = requests.get(f"{cfg.host}/metrics", cert=(cfg.cert_file, cfg.key_file),
                            verify=cfg.ssl_ca_cert, timeout=30)
    response.raise_for_status()
    return response.text


REQUESTS = "apiserver_request_total"


def apiserver_requests(text: str) -> dict[tuple[str, str, str], float]:
    """apiserver_request_total summed over codes: (verb, group/resource, subresource) -> count.

    Only that family's lines are parsed: the whole page (2.2 MB, 16,580 samples at 2,000
    trials) took this process 0.65-0.97 CPU-seconds to parse, every 5 s of a run, on the
    cores the cluster and the operator share, and held up this process's own watch stamps."""
    wanted = "\n".join(line for line in text.splitlines()
                       if line.startswith((REQUESTS, f"# TYPE {REQUESTS} ", f"# HELP {REQUESTS} ")))
    out: dict[tuple[str, str, str], float] = defaultdict(float)
    for family in text_string_to_metric_families(wanted + "\n"):
        if family.name != "apiserver_request":
            continue
        for s in family.samples:
            if not s.name.endswith("_total"):
                continue
            lb = s.labels
            resource = f"{lb.get('group', '')}/{lb.get('resource', '')}".lstrip("/")
            out[(lb.get("verb", ""), resource, lb.get("subresource", ""))] += s.value
    return dict(out)


def first_rung_samples(prometheus: str, namespace: str, experiment: str,
                       window_seconds: int) -> dict[tuple[str, int], float]:
    """(trial, milestone) -> timestamp of the first sample of its rung value in Prometheus."""
    query = (f'kubetune_trial_rung_value{{namespace="{namespace}",experiment="{experiment}"}}'
             f"[{window_seconds}s]")
    response = requests.get(f"{prometheus}/api/v1/query", params={"query": query}, timeout=120)
    response.raise_for_status()
    out: dict[tuple[str, int], float] = {}
    for series in response.json()["data"]["result"]:
        labels = series["metric"]
        key = (labels["trial"], int(labels["milestone"]))
        first = min(float(v[0]) for v in series["values"])
        out[key] = min(first, out.get(key, first))
    return out


# -- profiling the operator ------------------------------------------------------------------
PROFILE_CATEGORIES = (
    # (category, a function name in the stack); the first match wins, deepest concern first.
    ("read: list TuneTrials", "list_trials"),
    ("read: list Pods", "list_pods"),
    ("read: Prometheus snapshot", "snapshot"),
    ("write: TuneTrial status patches", "patch_trial_status"),
    ("write: pod deletions", "delete_pod"),
    ("write: TuneTrial creates", "create_trial"),
    ("write: pod creates", "create_pod"),
    ("write: experiment status patch", "patch_experiment_status"),
    ("plan: plan_tick (scheduler restore, decisions)", "plan_tick"),
    ("build: pod manifests", "build_pod"),
    ("parse: TrialView/PodView", "from_body"),
)


def profile_summary(raw: str, handler: str = "reconcile") -> dict[str, Any]:
    """Shares of the reconcile handler's samples (on CPU or waiting) by what it was doing.

    `raw` is py-spy's collapsed-stack output (`--format raw --idle`): one
    'frame;frame;... count' line per distinct stack.
    """
    totals: Counter[str] = Counter()
    on_cpu: Counter[str] = Counter()
    samples = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or f"{handler} (" not in stack:
            continue
        count = int(count_text)
        samples += count
        category = next((c for c, fn in PROFILE_CATEGORIES if f"{fn} (" in stack), "other")
        totals[category] += count
        leaf = stack.rsplit(";", 1)[-1]
        waiting = any(w in leaf for w in ("recv_into", "read (ssl", "_read_status", "wait (",
                                          "select (", "readinto", "do_handshake"))
        if not waiting:
            on_cpu[category] += count
    return {"samples": samples,
            "share": {k: round(v / samples, 3) for k, v in totals.most_common()} if samples else {},
            "share_on_cpu": {k: round(v / samples, 3) for k, v in on_cpu.most_common()} if samples else {}}
