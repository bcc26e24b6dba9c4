"""The operator's kopf handlers, registered on an explicit registry once settings are known.

Registration only: each handler hands its work to reconcile.py (one tick of one
experiment) or configures kopf and the per-operator context kept in kopf's memo.
With leader election on, main.py puts the process's `Leadership` in the memo
(`memo.leadership`): every API write of the operator first checks that the Lease
is still held, and Events name the replica that posted them (reportingInstance).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
from kubernetes import client, config
from prometheus_client import start_http_server

from kubetune import contract
from kubetune.api import EXPERIMENT_PLURAL, GROUP, TRIAL_PLURAL, VERSION
from kubetune.controller import view
from kubetune.controller.concurrent import WRITERS
from kubetune.controller.failures import ErrorHistory
from kubetune.controller.gateway import Gateway
from kubetune.controller.leader import Leadership
from kubetune.controller.metrics import OperatorMetrics
from kubetune.controller.prometheus import PrometheusSource
from kubetune.controller.reconcile import OperatorContext, reconcile_once
from kubetune.controller.settings import OperatorSettings

WORKERS = 32
"""kopf's worker threads, where the ticks of sync handlers run."""
CONNECTIONS = WORKERS + WRITERS
"""Pooled connections to the apiserver: one per worker plus the writes a tick sends at once.
The client's default (5 per CPU) is smaller than the workers, so connections beyond it
were dropped after each request and handshaken again."""


def register(registry: kopf.OperatorRegistry, settings: OperatorSettings) -> None:
    """Register every handler of the operator on `registry`, configured by `settings`.

    Handler ids are fixed (kopf keys its bookkeeping by them), not the nested names.
    """
    ours = settings  # kopf passes its own OperatorSettings to handlers as `settings`

    @kopf.on.login(registry=registry, id="login", errors=kopf.ErrorsMode.IGNORED)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # What kopf's default registry does: the kubernetes client's config, in-cluster or file.
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry, id="configure")
    def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger,
                  **_: Any) -> None:
        _configure_kopf(settings, ours)
        memo.kubetune = _context(ours, memo.get("leadership"))
        memo.executor = settings.execution.executor  # where the ticks run (kopf's workers)
        start_http_server(ours.metrics_port, registry=memo.kubetune.metrics.registry)
        logger.info("kubetune operator: Prometheus at %s, tick %.1fs", ours.prometheus_url,
                    ours.tick_seconds)

    @kopf.on.probe(registry=registry, id="prometheus")
    def prometheus_configured(memo: kopf.Memo, **_: Any) -> str:
        return str(memo.kubetune.settings.prometheus_url)

    # The watch-fed view (view.py): kopf lists each kind once at start, then follows its
    # watch, and starts the timers below only once both indices are filled.
    @kopf.index(GROUP, VERSION, TRIAL_PLURAL, registry=registry, id=view.TRIALS,
                labels={contract.EXPERIMENT_LABEL: kopf.PRESENT})
    def kubetune_trials(body: kopf.Body, **_: Any) -> dict[view.Key, dict[str, Any]]:
        return view.entry(body)

    @kopf.index("v1", "pods", registry=registry, id=view.PODS,
                labels={contract.EXPERIMENT_LABEL: kopf.PRESENT})
    def kubetune_pods(body: kopf.Body, **_: Any) -> dict[view.Key, dict[str, Any]]:
        return view.entry(body)

    @kopf.timer(GROUP, VERSION, EXPERIMENT_PLURAL, registry=registry, id="reconcile",
                interval=ours.tick_seconds, initial_delay=0, backoff=ours.retry_seconds)
    async def reconcile(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger,
                        **kwargs: Any) -> None:
        # kopf gives each object its own shallow copy of the memo: the history is this one's.
        ctx: OperatorContext = memo.kubetune
        if "errors" not in memo:
            memo.errors = ErrorHistory()
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        # Copied here, on the event loop that applies the watch events; the tick runs in a
        # worker thread, with the context kopf.event needs.
        trials = view.snapshot(kwargs.get(view.TRIALS), key)
        pods = view.snapshot(kwargs.get(view.PODS), key)
        observed = view.observe(ctx.writes, key, trials, pods)
        run = functools.partial(_timed_tick, ctx, body, memo.errors, logger, observed)
        await asyncio.get_running_loop().run_in_executor(
            memo.executor, contextvars.copy_context().run, run)

    @kopf.on.delete(GROUP, VERSION, EXPERIMENT_PLURAL, registry=registry, id="forget",
                    optional=True)
    def forget(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
        # Never raises: a deletion must go through whatever state the experiment is in.
        try:
            memo.kubetune.metrics.set_experiment(body["metadata"]["uid"], None, None)
            memo.kubetune.pace.forget(body["metadata"]["uid"])
        except Exception as e:
            logger.warning("forgetting the experiment's metrics failed: %s", e)


def _timed_tick(ctx: OperatorContext, body: kopf.Body, history: ErrorHistory,
                logger: kopf.Logger, observed: view.Observed) -> None:
    started = time.monotonic()
    try:
        reconcile_once(ctx, body, history, logger, observed)
    finally:
        ctx.metrics.reconcile.observe(time.monotonic() - started)
        ctx.metrics.ticks.inc()


def _configure_kopf(settings: kopf.OperatorSettings, ours: OperatorSettings | None = None) -> None:
    # Our own annotations and finalizer name, so kopf's bookkeeping reads as kubetune's.
    settings.persistence.finalizer = contract.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=contract.ANNOTATIONS_PREFIX)
    # No handler reacts to changes (the timer reads the whole object), so kopf's diff base
    # is kept empty: a copy of a large spec in an annotation (limited to 256 KiB in all)
    # would make every kopf patch fail, the finalizer's removal included.
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=contract.ANNOTATIONS_PREFIX, ignored_fields=["spec", "metadata"])
    # Every Event is posted explicitly (failures rate-limited, reconcile.py): kopf's own
    # log lines (a success or a retry per tick) never become Events.
    settings.posting.level = logging.CRITICAL
    # Events say which operator replica took the decision ("From" in kubectl describe).
    settings.posting.reporting_component = "kubetune-operator"
    if ours is not None and ours.identity:
        settings.posting.reporting_instance = ours.identity
    # Reconnect watches well before proxies and load balancers drop idle streams
    # (https://kopf.readthedocs.io/en/stable/configuration/#networking-timeouts).
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.execution.max_workers = WORKERS


def _context(settings: OperatorSettings, leadership: Leadership | None = None) -> OperatorContext:
    metrics = OperatorMetrics()
    writes = view.Writes()

    def count_write(verb: str, resource: str) -> None:
        if leadership is not None:
            leadership.check()  # exits the process when the Lease may be someone else's
        metrics.count_write(verb, resource)

    return OperatorContext(
        settings=settings, gateway=Gateway(
            api_client(settings), count_write=count_write,
            written=lambda kind, answer, created: writes.record(kind, answer, created=created)),
        prometheus=PrometheusSource(settings.prometheus_url, observe=metrics.observe_query),
        metrics=metrics, writes=writes,
        writers=ThreadPoolExecutor(WRITERS, thread_name_prefix="kubetune-write"),
    )


def api_client(settings: OperatorSettings) -> client.ApiClient:
    """A client of the apiserver: in-cluster first, as kopf's login does, so both talk to the
    same apiserver."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config(config_file=settings.kubeconfig)
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = CONNECTIONS
    return client.ApiClient(configuration)
