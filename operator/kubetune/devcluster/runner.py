"""The local runner: plays the kubelet for pods bound to the KWOK fake nodes.

Of the kubelet it imitates what an operator can observe through the API:

- start: each of a bound pod's containers runs as a local process in this
  Python environment (the image is ignored): command/args with `$(VAR)`
  expansion and the env the kubelet would build (`podenv`), each in a process
  group of its own. Like a container, it gets only the pod's env (plus PATH,
  a HOME of its own and this Python's path), never the runner's, and a working
  directory per pod outside the state dir that holds the admin kubeconfig and
  the PKI (`sandbox`);
- images: a reference that does not parse is InvalidImageName, and an image
  whose registry host ends in `.invalid` cannot be pulled (ErrImagePull, then
  ImagePullBackOff, for as long as the pod exists); an env reference to a
  ConfigMap or Secret that does not exist is CreateContainerConfigError, tried
  again every few seconds as the kubelet does (`containers`);
- status: the pod goes Running; a sidecar keeps it Running after the main
  container exits, and each container's terminated state (exit code, reason,
  termination message, `terminationMessagePolicy: FallbackToLogsOnError`
  included) is written as it exits; the pod is Succeeded when every container
  exited 0, else Failed (`podstatus`);
- memory: `resources.limits.memory` is enforced on each container's process
  group as the OOM killer would, and such a kill is reported as OOMKilled with
  exit code 137 (any other SIGKILL is an Error);
- deletion: SIGTERM to every process group, SIGKILL after the grace period,
  then the pod's deletion is completed; so a pod evicted through the Eviction
  API (the apiserver adds its DisruptionTarget condition and deletes it) ends as
  a real one does. As the kubelet's pod workers are one per pod, a deletion is
  acted on as soon as it is seen, never behind other pods' starts or statuses:
  starts have a queue of their own, statuses and deletions 16 lanes (`_send`);
- logs: the containers' output goes to one file (`contract.pod_log_path`),
  which `kubetune logs` reads (there is no kubelet API to stream it from);
- scraping: the pod's metrics port is registered with Prometheus through
  file-based service discovery with the chart's target labels: namespace and
  pod from the pod, experiment/trial/attempt from its kubetune labels only (a
  pod label `namespace` moves nothing), so a trial cannot speak for another;
  of a multi-worker trial, only rank 0 is scraped, as the chart does (`scrape`);
- cluster DNS: a master address (PET_MASTER_ADDR) naming a pod behind a
  headless Service resolves to 127.0.0.1, and each Job's pods share a free
  rendezvous port of their own in place of PET_MASTER_PORT (`clusterdns`);
- farm: a pod annotated `kubetune.io/dev-farm: "true"` (`contract.ANNOTATION_FARM`)
  that runs the simulated trainer is a thread of this runner, not a process (`farm`).

Not imitated: init containers, probes, restarts (restartPolicy is Never for
trials), volumes other than claims and configMaps (`podenv`) and CPU limits.
Pods share the host network here, so each pod's container port named `metrics`
is given a free local port, passed in KUBETUNE_METRICS_PORT. HOSTNAME is the
pod's `hostname`, else its name.
"""

from __future__ import annotations

import argparse
import functools
import logging
import queue
import signal
import sys
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubetune import contract
from kubetune.devcluster.clusterdns import PodNetwork
from kubetune.devcluster.containers import (
    LocalContainer,
    LocalPod,
    WaitingPod,
    back_off_message,
    image_problem,
    start_container,
)
from kubetune.devcluster.farm import farmed, start_farmed
from kubetune.devcluster.podenv import missing_ref_message, resolve_env
from kubetune.devcluster.podstatus import (
    container_entry,
    containers_status,
    now,
    terminated_status,
    waiting_status,
)
from kubetune.devcluster.podwatch import follow_bound_pods, pooled_client, sent
from kubetune.devcluster.processes import free_port
from kubetune.devcluster.sandbox import pods_root
from kubetune.devcluster.scrape import Targets

log = logging.getLogger("kubetune.runner")
REPORT_LANES = 16  # threads that send pod statuses and deletions, each pod always on one


class Runner:
    """Watches the pods bound to any node and runs them here; one per dev cluster."""

    def __init__(self, api: client.CoreV1Api, state_dir: Path) -> None:
        self.api = api
        self.state_dir = state_dir
        self.sd_dir = state_dir / "sd"
        self.pods_dir = pods_root(state_dir)
        self.sd_dir.mkdir(parents=True, exist_ok=True)
        self.targets = Targets(self.sd_dir)
        self.pods_dir.mkdir(parents=True, exist_ok=True)
        self.network = PodNetwork(api, state_dir)
        self.local: dict[str, LocalPod] = {}
        self.waiting: dict[str, WaitingPod] = {}
        self.finished: set[str] = set()
        self.deleted: set[str] = set()  # deletions completed, until the watch says gone
        self.starting: set[str] = set()  # pods in the start queue, not started yet
        self.starts: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self.lanes: list[queue.SimpleQueue[Callable[[], None]]] = [
            queue.SimpleQueue() for _ in range(REPORT_LANES)]
        self.lock = threading.RLock()
        self.stopping = threading.Event()

    def _send(self, ns: str, name: str, request: Callable[[], None]) -> None:
        """A pod's status or deletion, sent from its lane (in order for each pod)."""
        self.lanes[zlib.crc32(f"{ns}/{name}".encode()) % len(self.lanes)].put(request)

    def _report(self, lane: queue.SimpleQueue[Callable[[], None]]) -> None:
        while not self.stopping.is_set():
            lane.get()()

    def _patch_status(self, ns: str, name: str, status: dict[str, Any]) -> None:
        self._send(ns, name, functools.partial(self._send_status, ns, name, status))

    def _send_status(self, ns: str, name: str, status: dict[str, Any]) -> None:
        try:  # the answers are not read into the client's models: they cost the runner's CPU
            sent(self.api.patch_namespaced_pod_status(name, ns, {"status": status}, _preload_content=False))
        except ApiException as e:
            if e.status != 404:
                log.warning("status update of %s/%s failed: %s", ns, name, e.reason)

    def _finish_deletion(self, ns: str, name: str, uid: str) -> None:
        """Complete a pod's deletion once, as the kubelet does (not at each later event)."""
        with self.lock:
            if uid in self.deleted:
                return
            self.deleted.add(uid)
        self._send(ns, name, functools.partial(self._send_delete, ns, name, uid))

    def _send_delete(self, ns: str, name: str, uid: str) -> None:
        try:
            sent(self.api.delete_namespaced_pod(name, ns, grace_period_seconds=0, body=client.V1DeleteOptions(
                grace_period_seconds=0, preconditions=client.V1Preconditions(uid=uid)),
                _preload_content=False))
        except ApiException as e:
            if e.status not in (404, 409):
                log.warning("deleting %s/%s failed: %s", ns, name, e.reason)
                self.deleted.discard(uid)  # asked again at the pod's next event or exit

    # -- pod lifecycle ------------------------------------------------------------------
    def reconcile(self, pod: dict[str, Any]) -> None:
        """Act on one watch event of a bound pod: a deletion at once (SIGTERM is a signal),
        a start through the start queue, so that deletions never wait behind starts."""
        meta, spec = pod["metadata"], pod["spec"]
        uid = meta["uid"]
        if not spec.get("nodeName"):
            return
        with self.lock:
            local = self.local.get(uid)
            if meta.get("deletionTimestamp"):
                self.waiting.pop(uid, None)
                if local is None:
                    self.finished.add(uid)  # a start still queued is skipped
                    self.starting.discard(uid)
                    self._finish_deletion(meta["namespace"], meta["name"], uid)
                elif not local.terminating:
                    grace = meta.get("deletionGracePeriodSeconds")
                    grace = 30 if grace is None else int(grace)
                    for c in local.containers:
                        c.signal(signal.SIGTERM)
                    local.terminating = True
                    local.kill_at = time.monotonic() + grace
                return
            phase = (pod.get("status") or {}).get("phase", "Pending")
            if (local is not None or uid in self.finished or uid in self.waiting
                    or uid in self.starting or phase in ("Succeeded", "Failed")):
                return
            if phase == "Running":
                # Running before this runner started: its process is gone.
                self._patch_status(meta["namespace"], meta["name"], terminated_status(
                    None, 137, "the local runner restarted and lost this pod's process",
                    "RunnerRestarted", meta["name"], now()))
                self.finished.add(uid)
                return
            self.starting.add(uid)
        self.starts.put(pod)

    def starter(self) -> None:
        """Start the queued pods in turn, each unless it was deleted while it waited."""
        while not self.stopping.is_set():
            pod = self.starts.get()
            uid = pod["metadata"]["uid"]
            try:
                with self.lock:
                    if uid not in self.starting:
                        continue
                    self.starting.discard(uid)
                    self._start(pod)
            except Exception:  # keep playing the kubelet whatever one pod did
                log.exception("starting %s failed", pod["metadata"]["name"])

    def _start(self, pod: dict[str, Any], started: str | None = None) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
        started = started or now()
        for container in spec["containers"]:
            problem = image_problem(container.get("image", ""))
            if problem is not None:
                self._wait(pod, container["name"], problem[0], problem[1], started, retry=False)
                return
        workdir = self.pods_dir / ns / f"{name}-{uid[:8]}"
        workdir.mkdir(parents=True, exist_ok=True)
        envs = []
        for container in spec["containers"]:
            try:
                envs.append(self.network.rewrite(pod, resolve_env(
                    self.api, pod, container, volumes_root=workdir / "volumes")))
            except ApiException as e:
                if e.status == 404:
                    self._wait(pod, container["name"], "CreateContainerConfigError",
                               missing_ref_message(e), started, retry=True)
                else:
                    self._fail_to_start(pod, f"cannot resolve env: {e.reason}")
                return
        log_file = contract.pod_log_path(self.state_dir, ns, name)
        metrics_port: int | None = None
        containers: list[LocalContainer] = []
        for i, (container, env) in enumerate(zip(spec["containers"], envs, strict=True)):
            ports = container.get("ports") or []
            if i == 0 and (any(p.get("name") == "metrics" for p in ports)
                           or contract.ENV_METRICS_PORT in env):
                metrics_port = free_port()
                env[contract.ENV_METRICS_PORT] = str(metrics_port)
            start = start_farmed if farmed(pod) else start_container
            started_container = start(container, env, workdir / container["name"], log_file,
                                      spec.get("hostname") or name, home=workdir / "home",
                                      state_dir=self.state_dir)
            if isinstance(started_container, str):
                for c in containers:
                    c.signal(signal.SIGKILL)
                self._fail_to_start(pod, started_container)
                return
            containers.append(started_container)
        scraped = self.targets.add(pod, metrics_port)
        local = self.local[uid] = LocalPod(uid=uid, namespace=ns, name=name,
                                           containers=containers, started_at=started,
                                           log_file=log_file, scraped=scraped)
        log.info("started %s/%s as pids %s", ns, name, [c.proc.pid for c in containers])
        self._patch_status(ns, name, self._status(local))

    def _wait(self, pod: dict[str, Any], container: str, reason: str, message: str,
              started: str, *, retry: bool) -> None:
        meta = pod["metadata"]
        # A config is tried again in 2s; a failed pull turns into a back-off in 2s.
        self.waiting[meta["uid"]] = WaitingPod(pod, started, reason, time.monotonic() + 2)
        log.info("%s/%s waits: %s: %s", meta["namespace"], meta["name"], reason, message)
        self._patch_status(meta["namespace"], meta["name"],
                           waiting_status(pod, container, reason, message, started))

    def _retry_waiting(self) -> None:
        """Pull back-off after a failed pull; another try for a container config."""
        with self.lock:
            items = [(u, w) for u, w in self.waiting.items()
                     if w.retry_at is not None and time.monotonic() >= w.retry_at]
        for uid, w in items:
            if w.reason == "ErrImagePull":
                w.reason, w.retry_at = "ImagePullBackOff", None
                meta, failing = w.pod["metadata"], next(
                    c for c in w.pod["spec"]["containers"] if image_problem(c.get("image", "")))
                self._patch_status(meta["namespace"], meta["name"], waiting_status(
                    w.pod, failing["name"], w.reason, back_off_message(failing.get("image", "")),
                    w.started_at))
            elif w.reason == "CreateContainerConfigError":
                with self.lock:
                    if self.waiting.pop(uid, None) is not None:
                        self._start(w.pod, w.started_at)
            else:
                w.retry_at = None

    def _fail_to_start(self, pod: dict[str, Any], message: str) -> None:
        meta, main = pod["metadata"], pod["spec"]["containers"][0]["name"]
        self.finished.add(meta["uid"])
        self._patch_status(meta["namespace"], meta["name"], terminated_status(
            None, 128, message, "StartError", main, now()))

    def _status(self, local: LocalPod) -> dict[str, Any]:
        entries = []
        for c in local.containers:
            if c.exit_code is None:
                state: dict[str, Any] = {"running": {"startedAt": c.started_at}}
            else:
                state = {"terminated": {"exitCode": c.exit_code, "reason": c.reason,
                    "message": c.termination_message(local.log_file), "startedAt": c.started_at,
                    "finishedAt": c.finished_at}}
            entries.append(container_entry(c.name, c.image, c.proc.pid, state))
        return containers_status(entries, local.started_at)

    def reap_once(self) -> None:
        self._retry_waiting()
        with self.lock:
            items = list(self.local.values())
        for local in items:
            changed = False
            for c in local.containers:
                if c.exit_code is not None:
                    continue
                c.over_memory()
                code = c.exited()
                if code is None:
                    continue
                # The container has exited: take its whole group down with it.
                c.signal(signal.SIGKILL)
                c.exit_code, c.finished_at = code, now()
                c.reason = ("Completed" if code == 0 else
                            "OOMKilled" if c.oom_killed else "Error")
                log.info("%s/%s container %s exited with %s", local.namespace, local.name,
                         c.name, code)
                changed = True
            if local.kill_at is not None and time.monotonic() >= local.kill_at:
                for c in local.containers:
                    c.signal(signal.SIGKILL)
                local.kill_at = None
            if not changed:
                continue
            done = all(c.exit_code is not None for c in local.containers)
            if done:
                with self.lock:
                    self.local.pop(local.uid, None)
                    self.finished.add(local.uid)
                if local.scraped:
                    self.targets.remove(local.uid)
                if local.terminating:
                    self._finish_deletion(local.namespace, local.name, local.uid)
                    continue
            if not local.terminating:
                self._patch_status(local.namespace, local.name, self._status(local))

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
            self.deleted.discard(uid)
            self.starting.discard(uid)
            self.waiting.pop(uid, None)
        if local is not None:
            local.terminating = True
            for c in local.containers:
                c.signal(signal.SIGKILL)

    def run(self) -> None:
        threading.Thread(target=self.reaper, name="reaper", daemon=True).start()
        threading.Thread(target=self.starter, name="starter", daemon=True).start()
        threading.Thread(target=self.targets.run, name="targets", daemon=True).start()
        for i, lane in enumerate(self.lanes):
            threading.Thread(target=self._report, args=(lane,), name=f"report-{i}",
                             daemon=True).start()
        follow_bound_pods(self.api, self.stopping, self.reconcile, self.forget)

    def shutdown(self) -> None:
        self.stopping.set()
        with self.lock:
            for local in self.local.values():
                for c in local.containers:
                    c.signal(signal.SIGKILL)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--state-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    api = client.CoreV1Api(pooled_client(args.kubeconfig, REPORT_LANES + 4))
    runner = Runner(api, args.state_dir)

    def stop(signum: int, _frame: Any) -> None:
        runner.shutdown()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    runner.run()


if __name__ == "__main__":
    main()

