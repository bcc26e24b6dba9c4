"""The operator's kopf handlers, registered on an explicit registry once settings are known.

Registration only: each handler hands its work to reconcile.py (one tick of one
experiment), to wake.py (one loop per experiment, woken by the changes of its trial
pods and TuneTrials) or configures kopf and the per-operator context kept in kopf's memo.
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
from typing import Any, cast

import kopf
from kubernetes import client, config
from prometheus_client import start_http_server

from kubetune import contract
from kubetune.api import EXPERIMENT_PLURAL, GROUP, TRIAL_PLURAL, VERSION
from kubetune.controller import view, wake
from kubetune.controller.concurrent import WRITERS, Writers
from kubetune.controller.context import OperatorContext
from kubetune.controller.creations import Creations
from kubetune.controller.failures import ErrorHistory
from kubetune.controller.gateway import Gateway
from kubetune.controller.leader import Leadership
from kubetune.controller.metrics import OperatorMetrics
from kubetune.controller.prometheus import PrometheusSource
from kubetune.controller.reconcile import reconcile_once
from kubetune.controller.settings import OperatorSettings

WORKERS = 32
"""kopf's worker threads, where the ticks of sync handlers run."""
CONNECTIONS = WORKERS + WRITERS
"""Pooled connections to the apiserver: one per worker plus the writes sent at once.
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
        memo.wakes = wake.Wakes()  # shared: each object's memo is a shallow copy of this one
        memo.kubetune = _context(ours, memo.get("leadership"), memo.wakes)
        memo.executor = settings.execution.executor  # where the ticks run (kopf's workers)
        start_http_server(ours.metrics_port, registry=memo.kubetune.metrics.registry)
        logger.info("kubetune operator: Prometheus at %s, tick %.1fs", ours.prometheus_url,
                    ours.tick_seconds)

    @kopf.on.probe(registry=registry, id="prometheus")
    def prometheus_configured(memo: kopf.Memo, **_: Any) -> str:
        return str(memo.kubetune.settings.prometheus_url)

    # The watch-fed view (view.py): kopf lists each kind once at start, then follows its
    # watch, and starts the loops below only once every index is filled. The indexers are
    # coroutines so that kopf runs them on its event loop: a sync one is handed to a worker
    # thread for every watch event (a few per trial), which cost more than the indexing.
    @kopf.index(GROUP, VERSION, TRIAL_PLURAL, registry=registry, id=view.TRIALS,
                labels={contract.EXPERIMENT_LABEL: kopf.PRESENT})
    async def kubetune_trials(body: kopf.Body, **_: Any) -> dict[view.Key, dict[str, Any]]:
        return view.entry(body)

    @kopf.index("v1", "pods", registry=registry, id=view.PODS,
                labels={contract.EXPERIMENT_LABEL: kopf.PRESENT})
    async def kubetune_pods(body: kopf.Body, **_: Any) -> dict[view.Key, dict[str, Any]]:
        return view.entry(body)

    @kopf.index("batch", "v1", "jobs", registry=registry, id=view.JOBS,
                labels={contract.EXPERIMENT_LABEL: kopf.PRESENT})
    async def kubetune_jobs(body: kopf.Body, **_: Any) -> dict[view.Key, dict[str, Any]]:
        return view.entry(body)  # a multi-worker trial's attempts (distributed.py)

    # A change that frees a slot or ends a trial wakes its experiment's loop (wake.py). These
    # run after kopf has put the event into the indices above, so the woken tick sees it.
    @kopf.on.event("v1", "pods", registry=registry, id="wake-pods",
                   labels={contract.EXPERIMENT_LABEL: kopf.PRESENT},
                   when=lambda type, body, memo, **_: memo.wakes.matters("pods", type, body))
    async def pod_changed(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        memo.wakes.changed("pods", type, body)

    @kopf.on.event(GROUP, VERSION, TRIAL_PLURAL, registry=registry, id="wake-trials",
                   labels={contract.EXPERIMENT_LABEL: kopf.PRESENT},
                   when=lambda type, body, memo, **_: memo.wakes.matters("trials", type, body))
    async def trial_changed(type: str | None, body: kopf.Body, memo: kopf.Memo,
                            **_: Any) -> None:
        memo.wakes.changed("trials", type, body)

    # One loop per experiment: a tick at once, then at each wake or every tick, never two at
    # once. `body` is kopf's live view of the experiment, the indices are live too.
    @kopf.daemon(GROUP, VERSION, EXPERIMENT_PLURAL, registry=registry, id="reconcile",
                 initial_delay=0, backoff=ours.retry_seconds)
    async def reconcile(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger,
                        stopped: kopf.DaemonStopped, **kwargs: Any) -> None:
        # kopf gives each object its own shallow copy of the memo: the history is this one's.
        ctx: OperatorContext = memo.kubetune
        if "errors" not in memo:
            memo.errors = ErrorHistory()
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        wakes: wake.Wakes = memo.wakes
        waiter = wakes.waiter(key)
        idle_generation: list[int | None] = [None]  # finished at this generation, tick done

        async def tick() -> bool:
            generation = _finished(body)
            if generation is not None and generation == idle_generation[0]:
                return False  # a finished experiment stays as it is until its spec changes
            # Copied here, on the event loop that applies the watch events; the tick runs in
            # a worker thread, with the context kopf.event needs.
            trials = view.snapshot(kwargs.get(view.TRIALS), key)
            pods = view.snapshot(kwargs.get(view.PODS), key)
            worker_jobs = view.snapshot(kwargs.get(view.JOBS), key)
            creating = ctx.creations.creating(key) if ctx.creations is not None else None
            observed = view.observe(ctx.writes, key, trials, pods, worker_jobs, creating)
            run = functools.partial(_timed_tick, ctx, body, memo.errors, logger, observed)
            again = await asyncio.get_running_loop().run_in_executor(
                memo.executor, contextvars.copy_context().run, run)
            idle_generation[0] = generation
            return bool(again)

        try:
            await wake.run_loop(stopped, waiter, tick, interval=ours.tick_seconds,
                                retry=ours.retry_seconds)
        finally:
            wakes.release(key, waiter)

    @kopf.on.delete(GROUP, VERSION, EXPERIMENT_PLURAL, registry=registry, id="forget",
                    optional=True)
    def forget(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
        # Never raises: a deletion must go through whatever state the experiment is in.
        try:
            memo.kubetune.metrics.set_experiment(body["metadata"]["uid"], None, None)
            memo.kubetune.pace.forget(body["metadata"]["uid"])
            memo.kubetune.decision_events.forget(body["metadata"]["uid"])
            memo.kubetune.schedulers.forget_experiment(body["metadata"]["namespace"],
                                                       body["metadata"]["name"])
            memo.kubetune.trial_views.forget_experiment((body["metadata"]["namespace"],
                                                         body["metadata"]["name"]))
            if memo.kubetune.creations is not None:
                memo.kubetune.creations.forget((body["metadata"]["namespace"],
                                                body["metadata"]["name"]))
        except Exception as e:
            logger.warning("forgetting the experiment's metrics failed: %s", e)


def _finished(body: kopf.Body) -> int | None:
    """The generation of an experiment that ended at its current spec, else None (the tick's
    own early return, read on the loop so that a finished experiment costs no tick)."""
    meta, status = body["metadata"], body.get("status") or {}
    generation = int(meta.get("generation", 1))
    if status.get("phase") in contract.EXPERIMENT_TERMINAL_PHASES and \
            status.get("observedGeneration") == generation:
        return generation
    return None


def _timed_tick(ctx: OperatorContext, body: kopf.Body, history: ErrorHistory,
                logger: kopf.Logger, observed: view.Observed) -> bool:
    started = time.monotonic()
    try:
        return reconcile_once(ctx, body, history, logger, observed)
    finally:
        ctx.metrics.reconcile.observe(time.monotonic() - started)
        ctx.metrics.ticks.inc()


DIFF_IGNORED = ("spec", "metadata")
"""What kopf's diff base leaves out: with the status (always left out), everything."""


class EmptyDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf's annotation diff base, whose essence of an object is empty, as the stock one's
    is with `DIFF_IGNORED` left out, built without the stock one's deep copy of the whole
    body first (kopf builds it for every watch event of every kind it watches, a few per
    trial). A handler on a field (none here), or an object with a top-level field of its
    own besides spec and status, gets the stock build."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        if extra_fields or set(self.ignored_fields) != set(DIFF_IGNORED) or \
                set(body) - {"apiVersion", "kind", "metadata", "spec", "status"}:
            return super().build(body=body, extra_fields=extra_fields)
        return cast(kopf.BodyEssence, {})


def _configure_kopf(settings: kopf.OperatorSettings, ours: OperatorSettings | None = None) -> None:
    # Our own annotations and finalizer name, so kopf's bookkeeping reads as kubetune's.
    settings.persistence.finalizer = contract.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=contract.ANNOTATIONS_PREFIX)
    # No handler reacts to changes (the loop reads the whole object), so kopf's diff base
    # is kept empty: a copy of a large spec in an annotation (limited to 256 KiB in all)
    # would make every kopf patch fail, the finalizer's removal included.
    settings.persistence.diffbase_storage = EmptyDiffBase(
        prefix=contract.ANNOTATIONS_PREFIX, ignored_fields=DIFF_IGNORED)
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


def _context(settings: OperatorSettings, leadership: Leadership | None = None,
             wakes: wake.Wakes | None = None) -> OperatorContext:
    metrics = OperatorMetrics()
    writes = view.Writes()

    def written(kind: str, answer: dict[str, Any], created: bool) -> None:
        writes.record(kind, answer, created=created)
        if wakes is not None:
            wakes.written(kind, answer)

    def count_write(verb: str, resource: str) -> None:
        if leadership is not None:
            leadership.check()  # exits the process when the Lease may be someone else's
        metrics.count_write(verb, resource)

    writers = Writers(WRITERS)
    return OperatorContext(
        settings=settings, gateway=Gateway(
            api_client(settings), count_write=count_write,
            written=written),
        prometheus=PrometheusSource(settings.prometheus_url, observe=metrics.observe_query),
        metrics=metrics, writes=writes, writers=writers,
        creations=Creations(writers, wake=wakes.wake if wakes is not None else None),
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
