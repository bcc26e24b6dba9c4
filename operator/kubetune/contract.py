"""The wire contract between a trial pod and the operator, in one place.

Imported by every process: the operator pod (labels it sets, env it writes,
series it queries, the termination message it reads), the trial pod (env it
reads, gauges it serves, the message it writes), the user's side (labels it
selects on, phases it waits for) and the dev cluster (env it injects, labels it
turns into Prometheus target labels). Pure stdlib, so the in-trial SDK can
import it with prometheus-client as its only dependency.

Changing a name here changes the contract for trials built against an older
kubetune; keep old names readable when you do.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypedDict

# -- labels and annotations ----------------------------------------------------------------
#: On TuneTrials and trial Pods, set by the operator: the owning experiment's name.
EXPERIMENT_LABEL = "kubetune.io/experiment"
#: On trial Pods (and TuneTrials), set by the operator: the TuneTrial's name.
TRIAL_LABEL = "kubetune.io/trial"
#: On trial Pods, set by the operator: the attempt number, 1 for the first pod of a trial.
ATTEMPT_LABEL = "kubetune.io/attempt"
#: Finalizer the operator puts on TuneExperiments (kopf's bookkeeping, under our domain).
FINALIZER = "kubetune.io/finalizer"
#: Prefix of the annotations where kopf keeps its progress and last-handled state.
ANNOTATIONS_PREFIX = "kubetune.io"
#: On a trial Pod (set in the trial template), read by the dev cluster's runner only: "true"
#: runs a simulated-trainer trial (`python -m kubetune_trainer --dataset simulated`) as a
#: thread of the runner's trial farm instead of a process of its own. Never set by the operator.
ANNOTATION_FARM = "kubetune.io/dev-farm"
#: On a multi-worker trial's Job, Service and Pods, set by the operator: the trial's worker
#: count (a one-worker trial is one Pod and has no such label).
WORKERS_LABEL = "kubetune.io/workers"
#: Set by the Job controller on an Indexed Job's pods (annotation and label): the pod's
#: completion index, which is the worker's rank (PET_NODE_RANK). A trial pod without it is
#: a one-worker trial's pod, rank 0.
JOB_COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"

# -- environment of a trial container (written by the operator, read by kubetune.trial) ------
#: The trial's config as JSON (nested spaces stay nested).
ENV_CONFIG = "KUBETUNE_CONFIG"
#: Prefix of one variable per flattened parameter (`KUBETUNE_PARAM_LR`).
ENV_PARAM_PREFIX = "KUBETUNE_PARAM_"
#: Name of the owning TuneExperiment.
ENV_EXPERIMENT = "KUBETUNE_EXPERIMENT"
#: Name of the TuneTrial.
ENV_TRIAL = "KUBETUNE_TRIAL"
#: Attempt number of this pod (1, 2, ...).
ENV_ATTEMPT = "KUBETUNE_ATTEMPT"
#: The objective's metric name: rung records keep only this metric.
ENV_METRIC = "KUBETUNE_METRIC"
#: Comma-separated scheduler milestones (steps) at which the trial records a rung value.
ENV_MILESTONES = "KUBETUNE_MILESTONES"
#: Port of the trial's /metrics endpoint.
ENV_METRICS_PORT = "KUBETUNE_METRICS_PORT"
#: Directory of this trial's checkpoints (kept across attempts).
ENV_CHECKPOINT_DIR = "KUBETUNE_CHECKPOINT_DIR"
#: A `step-<n>` checkpoint directory of another trial (a PBT donor's) this trial starts from
#: while its own checkpoint directory has none.
ENV_START_CHECKPOINT = "KUBETUNE_START_CHECKPOINT"
#: Comma-separated steps whose checkpoints are kept whatever save_checkpoint's `keep` says,
#: because other trials may clone them (PBT perturbation steps).
ENV_KEEP_CHECKPOINT_STEPS = "KUBETUNE_KEEP_CHECKPOINT_STEPS"
#: Set in the pod template by the user: the root under which trial checkpoint dirs go.
ENV_CHECKPOINT_ROOT = "KUBETUNE_CHECKPOINT_ROOT"
#: Where the termination message goes (default /dev/termination-log; the dev runner sets it).
ENV_TERMINATION_LOG = "KUBETUNE_TERMINATION_LOG"
#: Longest wait in finish() for a scrape after the last report, seconds (default 0: none).
ENV_LINGER_SECONDS = "KUBETUNE_LINGER_SECONDS"
#: Seconds between SIGTERM and the SDK's forced exit.
ENV_STOP_GRACE_SECONDS = "KUBETUNE_STOP_GRACE_SECONDS"
#: Worker count of the trial (pods of its Job; 1 for a one-worker trial).
ENV_NUM_WORKERS = "KUBETUNE_NUM_WORKERS"

# -- torchrun's environment in a multi-worker trial's pods (torch.distributed.run reads PET_<OPTION>
# as the default of --<option>; Kubeflow Trainer uses the same names) --------------------------
#: Number of pods (torchrun's --nnodes): the worker count.
ENV_PET_NNODES = "PET_NNODES"
#: Processes per pod (torchrun's --nproc-per-node).
ENV_PET_NPROC_PER_NODE = "PET_NPROC_PER_NODE"
#: This pod's rank among the pods (torchrun's --node-rank), from JOB_COMPLETION_INDEX.
ENV_PET_NODE_RANK = "PET_NODE_RANK"
#: Rank 0's DNS name, `<job>-0.<service>` (torchrun's --master-addr).
ENV_PET_MASTER_ADDR = "PET_MASTER_ADDR"
#: The rendezvous port on rank 0 (torchrun's --master-port); the dev cluster's runner
#: gives each trial a free local port instead, since its pods share one network.
ENV_PET_MASTER_PORT = "PET_MASTER_PORT"
#: Names a user's template may not set in a multi-worker trial: the operator writes them.
PET_ENV_NAMES = (ENV_PET_NNODES, ENV_PET_NPROC_PER_NODE, ENV_PET_NODE_RANK,
                 ENV_PET_MASTER_ADDR, ENV_PET_MASTER_PORT)
#: PET_MASTER_PORT's value (Kubeflow Trainer's and torchrun's default).
DEFAULT_MASTER_PORT = 29500

#: Default checkpoint root when the template does not set ENV_CHECKPOINT_ROOT.
DEFAULT_CHECKPOINT_ROOT = "/tmp/kubetune-checkpoints"
#: Where the operator mounts spec.storage's claim in every trial pod's main container;
#: the checkpoint directories (ENV_CHECKPOINT_DIR) are then under it.
STORAGE_MOUNT_PATH = "/var/run/kubetune/storage"
#: Name of that volume in the trial pod.
STORAGE_VOLUME = "kubetune-storage"
#: Default port of a trial's metrics endpoint (the pod port named `metrics`).
DEFAULT_METRICS_PORT = 9090
#: Name of the container port Prometheus scrapes.
METRICS_PORT_NAME = "metrics"
#: Where Kubernetes reads a container's termination message.
DEFAULT_TERMINATION_LOG = "/dev/termination-log"

# -- environment of the client and operator ----------------------------------------------------
#: Prometheus base URL, read by the operator's flags and by the CLI.
ENV_PROMETHEUS_URL = "KUBETUNE_PROMETHEUS_URL"
#: State directory of the local dev cluster (its admin kubeconfig lives there).
ENV_CLUSTER_DIR = "KUBETUNE_CLUSTER_DIR"

# -- Prometheus series a trial serves (names without labels) -------------------------------------
#: Step (time attribute) of the latest report.
METRIC_STEP = "kubetune_trial_step"
#: Latest value of each reported metric; label `metric`.
METRIC_VALUE = "kubetune_trial_metric"
#: Value at the first report at or past each milestone; labels `metric`, `milestone`.
METRIC_RUNG_VALUE = "kubetune_trial_rung_value"
#: Step of that report; label `milestone`.
METRIC_RUNG_STEP = "kubetune_trial_rung_step"
#: 1 once the trial called finish().
METRIC_FINISHED = "kubetune_trial_finished"
#: Unix time of the latest report.
METRIC_LAST_REPORT = "kubetune_trial_last_report_timestamp_seconds"
#: Target labels the scrape configuration takes from the pod, never from the trial.
TARGET_LABELS = ("namespace", "experiment", "trial", "attempt", "pod")


def worker_rank(labels: Mapping[str, str] | None, annotations: Mapping[str, str] | None) -> int:
    """A trial pod's worker rank: its Job completion index, 0 for a one-worker trial's pod."""
    for source in (annotations or {}, labels or {}):
        value = source.get(JOB_COMPLETION_INDEX)
        if value is not None and value.isdigit():
            return int(value)
    return 0


def worker_job_name(trial: str, attempt: int) -> str:
    """The Indexed Job of a multi-worker trial's attempt; its pods' hostnames are `<job>-<rank>`."""
    return f"{trial}-a{attempt}"


def worker_service_name(trial: str) -> str:
    """The headless Service (the pods' subdomain) of a multi-worker trial, one for all attempts."""
    return trial


def master_addr(trial: str, attempt: int, namespace: str | None = None) -> str:
    """Rank 0's DNS name, `<job>-0.<service>` (with `.<namespace>.svc` when given)."""
    name = f"{worker_job_name(trial, attempt)}-0.{worker_service_name(trial)}"
    return name if namespace is None else f"{name}.{namespace}.svc"


def serves_metrics(labels: Mapping[str, str] | None, annotations: Mapping[str, str] | None) -> bool:
    """Whether a trial pod is scraped: only rank 0 serves a trial's metrics and writes the
    termination message the operator reads (the chart's scrape config keeps the same pods)."""
    return worker_rank(labels, annotations) == 0


# -- phases -----------------------------------------------------------------------------------
#: TuneExperiment phases after which nothing more happens (until the spec changes).
EXPERIMENT_TERMINAL_PHASES = ("Succeeded", "Failed")
#: TuneTrial states, in the order users read them.
TRIAL_STATES = ("Pending", "Running", "Succeeded", "Pruned", "Failed")
#: TuneTrial states that never change again.
TRIAL_TERMINAL_STATES = ("Succeeded", "Pruned", "Failed")

# -- the termination message (trial writes, operator reads) -----------------------------------------
#: Kubernetes keeps at most this many bytes of a container's termination message.
TERMINATION_MESSAGE_LIMIT = 4096

# Non-finite floats in JSON: strings, because JSON has no NaN and `float()` reads them back.
_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


@dataclass(frozen=True)
class Rung:
    """The record for one milestone: the step and values of the first report at or past it."""

    milestone: int
    step: int
    values: Mapping[str, float]


class RungEntry(TypedDict, total=False):
    """One rung in a termination message: `value` (the objective) or `metrics` (all)."""

    step: int
    value: float
    metrics: dict[str, float]


class TerminationMessage(TypedDict, total=False):
    """A decoded termination message; floats are floats again (NaN included)."""

    step: int | None
    metrics: dict[str, float]
    rungs: dict[str, RungEntry]
    finished: bool
    truncated: bool


def encode_float(value: float) -> float | str:
    """JSON-safe float: non-finite values become "NaN", "Infinity" or "-Infinity"."""
    if math.isfinite(value):
        return value
    return _NON_FINITE[repr(float(value))]


def decode_float(value: object) -> float:
    """Inverse of `encode_float`."""
    if isinstance(value, str):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"not an encoded float: {value!r}")
    return float(value)


def _rung_entry(rung: Rung, objective: str | None) -> dict[str, Any]:
    if objective is not None:
        return {"step": rung.step, "value": encode_float(rung.values[objective])}
    return {
        "step": rung.step,
        "metrics": {k: encode_float(v) for k, v in sorted(rung.values.items())},
    }


def compact_json(message: Mapping[str, Any]) -> str:
    """JSON without spaces and without NaN/Infinity (encode them with `encode_float` first)."""
    return json.dumps(message, allow_nan=False, separators=(",", ":"))


def encode_termination_message(
    *,
    step: int | None,
    metrics: Mapping[str, float],
    rungs: Mapping[int, Rung],
    finished: bool,
    objective: str | None,
    limit: int = TERMINATION_MESSAGE_LIMIT,
) -> str:
    """The JSON a trial writes to its termination log, at most `limit` bytes.

    If the whole message does not fit, it keeps the step, `finished`, the
    objective's latest value and the highest rungs (earlier rungs were most
    likely scraped already), drops the rest, and sets `"truncated": true`.
    """
    encoded = {k: encode_float(v) for k, v in sorted(metrics.items())}
    entries = {str(m): _rung_entry(rung, objective) for m, rung in sorted(rungs.items())}
    message: dict[str, Any] = {
        "step": step,
        "metrics": encoded,
        "rungs": entries,
        "finished": finished,
    }
    text = compact_json(message)
    if len(text.encode()) <= limit:
        return text
    message["truncated"] = True
    message["metrics"] = {k: v for k, v in encoded.items() if k == objective}
    for milestone in list(entries):  # lowest milestone first
        text = compact_json(message)
        if len(text.encode()) <= limit:
            return text
        del entries[milestone]
    text = compact_json(message)
    if len(text.encode()) <= limit:
        return text
    message["metrics"] = {}
    return compact_json(message)


def decode_termination_message(text: str) -> TerminationMessage:
    """Read a termination message back, decoding non-finite floats to floats.

    Raises ValueError when `text` is not a message written by kubetune.trial (a
    crashing program's traceback, say): callers that read pods treat that as
    "no message".
    """
    try:
        raw = json.loads(text)
    except ValueError as e:
        raise ValueError(f"not a kubetune termination message: {e}") from None
    if not isinstance(raw, dict):
        raise ValueError("not a kubetune termination message: not a JSON object")
    try:
        message: TerminationMessage = {
            "step": None if raw.get("step") is None else int(raw["step"]),
            "metrics": {str(k): decode_float(v) for k, v in (raw.get("metrics") or {}).items()},
            "rungs": {},
            "finished": bool(raw.get("finished", False)),
        }
        for key, entry in (raw.get("rungs") or {}).items():
            rung: RungEntry = {"step": int(entry["step"])}
            if "value" in entry:
                rung["value"] = decode_float(entry["value"])
            if "metrics" in entry:
                rung["metrics"] = {str(k): decode_float(v) for k, v in entry["metrics"].items()}
            message["rungs"][str(int(key))] = rung
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise ValueError(f"not a kubetune termination message: {e!r}") from None
    if raw.get("truncated"):
        message["truncated"] = True
    return message


# -- the local dev cluster's state directory (the dev cluster writes it, the client reads it) -----
# `kubetune cluster up` records the cluster it started in its state directory; the CLI and
# the Tuner read that record to find a running local cluster's admin kubeconfig, its
# Prometheus and its pods' log files, without importing the dev cluster's code.

#: The record of a running local cluster in its state directory: `ClusterState` as JSON.
CLUSTER_STATE_FILE = "state.json"


def default_cluster_dir() -> Path:
    """$KUBETUNE_CLUSTER_DIR, else kubetune-$UID/cluster in /dev/shm (or $TMPDIR, or /tmp).

    Read at call time, so a test or a shell can point it elsewhere.
    """
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() else Path(os.environ.get("TMPDIR", "/tmp"))
    return Path(os.environ.get(ENV_CLUSTER_DIR, base / f"kubetune-{os.getuid()}" / "cluster"))


@dataclass
class ClusterState:
    """Everything needed to reach, stop or restart a running local cluster (its state.json)."""

    state_dir: str
    #: The admin user's kubeconfig (system:masters).
    kubeconfig: str
    apiserver_url: str
    prometheus_url: str
    #: Local port of each component, by component name.
    ports: dict[str, int]
    #: PID of each running component; each leads its own process group.
    pids: dict[str, int] = field(default_factory=dict)
    #: The argv each component was started with, so a stopped one can start again.
    commands: dict[str, list[str]] = field(default_factory=dict)
    nodes: list[str] = field(default_factory=list)
    gpus_per_node: int = 0

    def save(self) -> None:
        Path(self.state_dir, CLUSTER_STATE_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, state_dir: Path) -> ClusterState:
        """Read state_dir's record; OSError when there is none, ValueError/TypeError if garbled."""
        return cls(**json.loads((state_dir / CLUSTER_STATE_FILE).read_text()))


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (a zombie child of ours counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def running_cluster_state(state_dir: Path | None = None) -> ClusterState | None:
    """The record of the local cluster running in state_dir (default: `default_cluster_dir()`),
    or None when none is recorded there or one of its processes has exited."""
    directory = default_cluster_dir() if state_dir is None else state_dir
    if not (directory / CLUSTER_STATE_FILE).exists():
        return None
    try:
        state = ClusterState.load(directory)
    except (OSError, ValueError, TypeError):
        return None
    return state if all(pid_alive(pid) for pid in state.pids.values()) else None


def component_log_path(state_dir: Path | str, component: str) -> Path:
    """The log of one of the cluster's processes (etcd, runner, ...; `kubetune dev`'s operator)."""
    return Path(state_dir) / "logs" / f"{component}.log"


def pod_log_path(state_dir: Path | str, namespace: str, pod: str) -> Path:
    """Where the local runner writes a pod's output (a pod made again under its name appends)."""
    return Path(state_dir) / "pods" / namespace / f"{pod}.log"
