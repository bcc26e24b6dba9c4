"""The local runner: plays the kubelet for pods bound to the KWOK fake nodes.

Of the kubelet it imitates what an operator can observe through the API:

- start: a bound pod's first container runs as a local process in this Python
  environment (the image is ignored): command/args with `$(VAR)` expansion and
  the env the kubelet would build (`podenv`), in a process group of its own;
- status: the pod goes Running, then Succeeded/Failed with the exit code, the
  reason and the termination message (`terminationMessagePolicy:
  FallbackToLogsOnError` included), as a kubelet writes them (`podstatus`);
- deletion: SIGTERM to the process group, SIGKILL after the grace period, then
  the pod's deletion is completed;
- logs: the container's output goes to a file (`contract.pod_log_path`), which
  `kubetune logs` reads, since there is no kubelet API to stream it from;
- scraping: the pod's metrics port is registered with Prometheus through
  file-based service discovery, with the pod's namespace and labels as target
  labels (so a trial cannot speak for another).

Not imitated: images, init and sidecar containers, probes, restarts
(restartPolicy is Never for trials), volumes and resource limits. Pods share
the host network here, so each pod's container port named `metrics` is given a
free local port, passed in KUBETUNE_METRICS_PORT.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from kubetune import contract
from kubetune.devcluster.podenv import expand, resolve_env
from kubetune.devcluster.podstatus import now, running_status, target_labels, terminated_status
from kubetune.devcluster.processes import free_port

log = logging.getLogger("kubetune.runner")


@dataclass
class LocalPod:
    """A pod the runner started: its process and the files it writes."""

    uid: str
    namespace: str
    name: str
    proc: subprocess.Popen[bytes]
    started_at: str
    message_file: Path
    log_file: Path
    sd_file: Path | None
    container: str
    terminating: bool = False
    kill_at: float | None = None
    fallback_to_logs: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class Runner:
    """Watches the pods bound to any node and runs them here; one per dev cluster."""

    def __init__(self, api: client.CoreV1Api, state_dir: Path) -> None:
        self.api = api
        self.state_dir = state_dir
        self.sd_dir = state_dir / "sd"
        self.pods_dir = state_dir / "pods"
        self.sd_dir.mkdir(parents=True, exist_ok=True)
        self.pods_dir.mkdir(parents=True, exist_ok=True)
        self.local: dict[str, LocalPod] = {}
        self.finished: set[str] = set()
        self.lock = threading.RLock()
        self.stopping = threading.Event()

    # -- API helpers ------------------------------------------------------------------
    def _patch_status(self, ns: str, name: str, status: dict[str, Any]) -> None:
        try:
            self.api.patch_namespaced_pod_status(name, ns, {"status": status})
        except ApiException as e:
            if e.status != 404:
                log.warning("status update of %s/%s failed: %s", ns, name, e.reason)

    def _finish_deletion(self, ns: str, name: str, uid: str) -> None:
        try:
            self.api.delete_namespaced_pod(
                name, ns, grace_period_seconds=0,
                body=client.V1DeleteOptions(grace_period_seconds=0,
                                            preconditions=client.V1Preconditions(uid=uid)),
            )
        except ApiException as e:
            if e.status not in (404, 409):
                log.warning("deleting %s/%s failed: %s", ns, name, e.reason)

    # -- pod lifecycle ------------------------------------------------------------------
    def reconcile(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        uid = meta["uid"]
        if not spec.get("nodeName"):
            return
        with self.lock:
            local = self.local.get(uid)
            if meta.get("deletionTimestamp"):
                if local is None:
                    self._finish_deletion(meta["namespace"], meta["name"], uid)
                elif not local.terminating:
                    grace = meta.get("deletionGracePeriodSeconds")
                    grace = 30 if grace is None else int(grace)
                    self._signal(local, signal.SIGTERM)
                    local.terminating = True
                    local.kill_at = time.monotonic() + grace
                return
            phase = (pod.get("status") or {}).get("phase", "Pending")
            if local is not None or uid in self.finished or phase in ("Succeeded", "Failed"):
                return
            if phase == "Running":
                # Running before this runner started: its process is gone.
                self._patch_status(meta["namespace"], meta["name"], terminated_status(
                    None, 137, "the local runner restarted and lost this pod's process",
                    "RunnerRestarted", meta["name"], now()))
                self.finished.add(uid)
                return
            self._start(pod)

    def _start(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
        container = spec["containers"][0]
        workdir = self.pods_dir / ns / f"{name}-{uid[:8]}"
        workdir.mkdir(parents=True, exist_ok=True)
        log_file = contract.pod_log_path(self.state_dir, ns, name)
        message_file = workdir / "termination-log"
        try:
            env = resolve_env(self.api, pod, container)
        except ApiException as e:
            self._fail_to_start(pod, f"cannot resolve env: {e.reason}")
            return
        ports = container.get("ports") or []
        metrics_port: int | None = None
        if any(p.get("name") == "metrics" for p in ports) or contract.ENV_METRICS_PORT in env:
            metrics_port = free_port()
            env[contract.ENV_METRICS_PORT] = str(metrics_port)
        env[contract.ENV_TERMINATION_LOG] = str(message_file)
        env.setdefault("HOSTNAME", name)
        argv = [expand(a, env) for a in (container.get("command") or []) + (container.get("args") or [])]
        if not container.get("command"):
            self._fail_to_start(pod, "the local runner needs an explicit command: "
                                     "it cannot read the image's entrypoint")
            return
        if argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        cwd = container.get("workingDir")
        if not cwd or not Path(cwd).is_dir():
            cwd = str(workdir)
        full_env = {**os.environ, **env}
        with open(log_file, "ab") as out:
            try:
                proc = subprocess.Popen(argv, env=full_env, cwd=cwd, stdout=out,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
            except OSError as e:
                self._fail_to_start(pod, f"cannot start {argv[0]}: {e.strerror}")
                return
        started = now()
        sd_file = None
        if metrics_port is not None:
            sd_file = self.sd_dir / f"{ns}_{name}_{uid[:8]}.json"
            tmp = sd_file.with_suffix(".tmp")
            tmp.write_text(json.dumps([{"targets": [f"127.0.0.1:{metrics_port}"],
                                        "labels": target_labels(pod)}]))
            tmp.rename(sd_file)
        self.local[uid] = LocalPod(
            uid=uid, namespace=ns, name=name, proc=proc, started_at=started,
            message_file=message_file, log_file=log_file, sd_file=sd_file,
            container=container["name"],
            fallback_to_logs=container.get("terminationMessagePolicy") == "FallbackToLogsOnError",
        )
        log.info("started %s/%s as pid %s", ns, name, proc.pid)
        self._patch_status(ns, name, running_status(container, proc.pid, started))

    def _fail_to_start(self, pod: dict[str, Any], message: str) -> None:
        meta = pod["metadata"]
        container = pod["spec"]["containers"][0]["name"]
        self.finished.add(meta["uid"])
        self._patch_status(meta["namespace"], meta["name"], terminated_status(
            None, 128, message, "StartError", container, now()))

    def _signal(self, local: LocalPod, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(local.proc.pid, sig)

    def _message(self, local: LocalPod, code: int) -> str:
        text = ""
        with contextlib.suppress(OSError):
            text = local.message_file.read_text(errors="replace")
        if not text and code != 0 and local.fallback_to_logs:
            with contextlib.suppress(OSError):
                text = "\n".join(local.log_file.read_text(errors="replace").splitlines()[-80:])
                text = text[-2048:]
        return text[:contract.TERMINATION_MESSAGE_LIMIT]

    def reap_once(self) -> None:
        with self.lock:
            items = list(self.local.values())
        for local in items:
            code = local.proc.poll()
            if code is None:
                if local.kill_at is not None and time.monotonic() >= local.kill_at:
                    self._signal(local, signal.SIGKILL)
                    local.kill_at = None
                continue
            # The container has exited: take the whole group down with it, like a container.
            self._signal(local, signal.SIGKILL)
            with self.lock:
                self.local.pop(local.uid, None)
                self.finished.add(local.uid)
            if local.sd_file is not None:
                with contextlib.suppress(OSError):
                    local.sd_file.unlink()
            exit_code = code if code >= 0 else 128 - code
            log.info("%s/%s exited with %s", local.namespace, local.name, exit_code)
            if local.terminating:
                self._finish_deletion(local.namespace, local.name, local.uid)
                continue
            reason = "Completed" if exit_code == 0 else ("OOMKilled" if exit_code == 137 else "Error")
            self._patch_status(local.namespace, local.name, terminated_status(
                local.proc.pid, exit_code, self._message(local, exit_code), reason, local.container,
                local.started_at))

    def reaper(self) -> None:
        while not self.stopping.is_set():
            try:
                self.reap_once()
            except Exception:  # keep playing the kubelet whatever one pod did
                log.exception("reaper pass failed")
            time.sleep(0.1)

    def forget(self, uid: str) -> None:
        with self.lock:
            local = self.local.get(uid)
            self.finished.discard(uid)
        if local is not None:
            local.terminating = True
            self._signal(local, signal.SIGKILL)

    def run(self) -> None:
        threading.Thread(target=self.reaper, name="reaper", daemon=True).start()
        resource_version = ""
        while not self.stopping.is_set():
            try:
                if not resource_version:
                    pods = self.api.list_pod_for_all_namespaces(field_selector="spec.nodeName!=")
                    resource_version = str(pods.metadata.resource_version)  # type: ignore[union-attr]
                    for pod in pods.items:
                        self.reconcile(self.api.api_client.sanitize_for_serialization(pod))
                w = watch.Watch()
                for event in w.stream(self.api.list_pod_for_all_namespaces,
                                      field_selector="spec.nodeName!=",
                                      resource_version=resource_version,
                                      timeout_seconds=60, allow_watch_bookmarks=True):
                    obj = event["raw_object"]
                    resource_version = obj["metadata"].get("resourceVersion", resource_version)
                    if event["type"] == "BOOKMARK":
                        continue
                    if event["type"] == "DELETED":
                        self.forget(obj["metadata"]["uid"])
                    else:
                        self.reconcile(obj)
            except ApiException as e:
                if e.status == 410:
                    resource_version = ""
                else:
                    log.warning("watch failed: %s", e.reason)
                    time.sleep(0.5)
            except Exception:
                log.exception("watch loop failed")
                time.sleep(0.5)

    def shutdown(self) -> None:
        self.stopping.set()
        with self.lock:
            for local in self.local.values():
                self._signal(local, signal.SIGKILL)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--state-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    api = client.CoreV1Api(config.new_client_from_config(config_file=args.kubeconfig))
    runner = Runner(api, args.state_dir)

    def stop(signum: int, _frame: Any) -> None:
        runner.shutdown()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    runner.run()


if __name__ == "__main__":
    main()
