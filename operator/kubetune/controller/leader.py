"""One operator acts at a time: leader election on a coordination.k8s.io Lease.

Part of the operator pod. With leader election on (the chart's default), the
process first waits, as a standby, until it holds the Lease; only then does it
start kopf, so a standby never reconciles, writes or posts an Event. A leader
that cannot renew the Lease within the renew deadline exits at once, and its
Deployment restarts it as a standby, as controller-runtime's managers do.

Why not kopf's peering: its own docs say there are no locks between operators
(kopf/_core/engines/peering.py: "only one operator should be functional... it
will print a warning ... but will continue to function"); two replicas of the
same priority both pause, and one of higher priority wins only after a
keep-alive round, so it pauses rather than excludes.

The election itself is the kubernetes client's (kubernetes.leaderelection, the
port of client-go's): a standby takes the Lease only after seeing it unchanged
for a whole lease duration on its own clock, and every write replaces the Lease
read just before, with its resourceVersion, so of two candidates one gets 409.
What it lacks is added here, without changing its rules:

- a timeout on every Lease call (its calls have none, so a hung request could
  keep a leader in its renew loop past the lease duration);
- `Leadership.check()`, which the operator calls before each of its writes and
  a watchdog calls every 100 ms: when the last successful renewal *started*
  more than the renew deadline ago, the process exits. A standby cannot take
  over earlier than a lease duration after it saw that renewal, which is later
  than its start, and the lease duration exceeds the renew deadline;
- `/healthz` while standing by (kopf's endpoint starts only with kopf), so a
  standby's liveness probe passes;
- `release()` on a clean shutdown: the Lease is left without holder, so a
  rolling update hands over at once instead of after a lease duration.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

from kubetune.controller.settings import OperatorSettings

log = logging.getLogger("kubetune.leader")

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
WATCHDOG_SECONDS = 0.1
"""How often the watchdog checks the last renewal."""


def replica_identity(settings: OperatorSettings) -> str:
    """This process's name in the Lease: the pod's (or host's) name and a random suffix, as
    client-go names its candidates, so a restarted container is a new candidate."""
    base = settings.identity or socket.gethostname() or "kubetune"
    return f"{base}_{uuid.uuid4().hex[:8]}"


def lease_namespace(settings: OperatorSettings, sa_file: Path = SERVICE_ACCOUNT_NAMESPACE) -> str:
    """The Lease's namespace: the setting, else the pod's own namespace, else `default`."""
    if settings.lease_namespace:
        return settings.lease_namespace
    with contextlib.suppress(OSError):
        text = sa_file.read_text().strip()
        if text:
            return text
    return "default"


class _TimedLeases:
    """The three Lease calls the elector makes, each with a timeout."""

    def __init__(self, api: client.CoordinationV1Api, timeout: float) -> None:
        self.api, self.timeout = api, timeout

    def read_namespaced_lease(self, name: str, namespace: str) -> Any:
        return self.api.read_namespaced_lease(name, namespace, _request_timeout=self.timeout)

    def create_namespaced_lease(self, namespace: str, body: Any) -> Any:
        return self.api.create_namespaced_lease(namespace, body, _request_timeout=self.timeout)

    def replace_namespaced_lease(self, name: str, namespace: str, body: Any) -> Any:
        return self.api.replace_namespaced_lease(name=name, namespace=namespace, body=body,
                                                 _request_timeout=self.timeout)


class _RecordingLeaseLock(LeaseLock):
    """The client's LeaseLock, telling `written` when a write of ours went through (with the
    time the write started) and refusing to write once the process is releasing."""

    def __init__(self, name: str, namespace: str, identity: str, leases: _TimedLeases,
                 written: Callable[[float], None], clock: Callable[[], float]) -> None:
        super().__init__(name, namespace, identity)
        self.api_instance = leases  # type: ignore[assignment]  # the same three calls
        self.written, self.clock = written, clock
        self.closed = False

    def create(self, name: str, namespace: str, election_record: Any) -> bool:
        started = self.clock()
        ok = not self.closed and bool(super().create(name, namespace, election_record))
        if ok:
            self.written(started)
        return ok

    def update(self, name: str, namespace: str, updated_record: Any) -> bool:
        started = self.clock()
        ok = not self.closed and bool(super().update(name, namespace, updated_record))
        if ok:
            self.written(started)
        return ok


class Leadership:
    """This process's candidacy for the Lease, and the rule that stops it acting without it."""

    def __init__(self, api: client.ApiClient, settings: OperatorSettings, identity: str, *,
                 clock: Callable[[], float] = time.monotonic,
                 exit_process: Callable[[int], Any] = os._exit) -> None:
        self.settings = settings
        self.identity = identity
        self.namespace = lease_namespace(settings)
        self.clock = clock
        self.exit_process = exit_process
        self.renewed_at: float | None = None
        """When the last successful write of the Lease started (monotonic seconds)."""
        self.leading = threading.Event()
        self.releasing = False
        self.coordination = client.CoordinationV1Api(api)
        self.lock = _RecordingLeaseLock(
            settings.lease_name, self.namespace, identity,
            _TimedLeases(self.coordination, settings.renew_deadline_seconds / 2),
            self._written, clock)

    def _written(self, started: float) -> None:
        self.renewed_at = started

    # -- the rule ---------------------------------------------------------------------
    def expired(self) -> bool:
        """True when this process led but has not renewed within the renew deadline."""
        return (self.leading.is_set() and not self.releasing and self.renewed_at is not None
                and self.clock() - self.renewed_at > self.settings.renew_deadline_seconds)

    def check(self) -> None:
        """Exit the process now if it may no longer act (called before every write)."""
        if self.expired():
            self._stop(f"the Lease {self.namespace}/{self.settings.lease_name} was not renewed "
                       f"for {self.settings.renew_deadline_seconds}s")

    def _stop(self, why: str) -> None:
        log.error("%s: %s stops leading and exits, to be restarted as a standby", why,
                  self.identity)
        logging.shutdown()
        self.exit_process(1)

    # -- the election -----------------------------------------------------------------
    def _stopped_leading(self) -> None:
        if not self.releasing:
            self._stop(f"the Lease {self.namespace}/{self.settings.lease_name} was lost")

    def _elect(self) -> None:
        s = self.settings
        config = electionconfig.Config(
            self.lock, lease_duration=s.lease_duration_seconds,
            renew_deadline=s.renew_deadline_seconds, retry_period=s.retry_period_seconds,
            onstarted_leading=self.leading.set, onstopped_leading=self._stopped_leading)
        try:
            leaderelection.LeaderElection(config).run()
        except Exception:  # an elector that died cannot renew: never act on without it
            log.exception("the leader election failed")
            self._stopped_leading()

    def _watchdog(self) -> None:
        while True:
            time.sleep(WATCHDOG_SECONDS)
            self.check()

    def run_until_leading(self, health_port: int | None = None) -> None:
        """Stand by (answering /healthz on `health_port`) until this process holds the Lease."""
        log.info("%s stands by for the Lease %s/%s", self.identity, self.namespace,
                 self.settings.lease_name)
        health = standby_health(health_port) if health_port else None
        threading.Thread(target=self._elect, name="leader-election", daemon=True).start()
        try:
            self.leading.wait()
        finally:
            if health is not None:
                health.shutdown()
                health.server_close()
        threading.Thread(target=self._watchdog, name="lease-watchdog", daemon=True).start()
        log.info("%s leads (Lease %s/%s)", self.identity, self.namespace, self.settings.lease_name)

    def release(self) -> None:
        """Leave the Lease without holder (a clean shutdown), if this process still holds it."""
        if not self.leading.is_set() or self.expired():
            return
        self.releasing = True
        self.lock.closed = True
        try:
            lease = self.coordination.read_namespaced_lease(
                self.settings.lease_name, self.namespace, _request_timeout=5)
            if lease.spec is None or lease.spec.holder_identity != self.identity:
                return
            lease.spec.holder_identity = None
            lease.spec.lease_duration_seconds = 1
            lease.spec.renew_time = datetime.now(UTC)
            self.coordination.replace_namespaced_lease(
                self.settings.lease_name, self.namespace, lease, _request_timeout=5)
            log.info("%s released the Lease", self.identity)
        except (ApiException, OSError) as e:
            log.warning("releasing the Lease failed (a standby takes it when it expires): %s", e)


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ok = self.path.split("?")[0] == "/healthz"
        self.send_response(200 if ok else 404)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"standby: waiting for the Lease\n" if ok else b"not found\n")

    def log_message(self, format: str, *args: Any) -> None:
        return  # a probe every few seconds is not worth a log line


def standby_health(port: int) -> ThreadingHTTPServer:
    """A /healthz endpoint for a standby (kopf's own starts once it leads)."""
    server = ThreadingHTTPServer(("0.0.0.0", port), _Health)
    threading.Thread(target=server.serve_forever, name="standby-health", daemon=True).start()
    return server
