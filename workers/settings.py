"""The arq worker: outbox rows as jobs, the outbox relay beside them, the periodic sweeps.

Each job is a thin call into the library. ``accountgraph worker`` runs this worker as its
own process (M replicas); the embedded default (``accountgraph serve``) runs the same
worker inside the gateway process. The command line (the composition root) is the only
module of the library that imports this package.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis
from arq.cron import cron
from arq.typing import WorkerCoroutine
from arq.worker import Worker, func
from opentelemetry.trace import SpanKind
from prometheus_client import start_http_server
from sqlalchemy.ext.asyncio import AsyncEngine

from accountgraph import logs, outbox, tracing
from accountgraph.alerts import public as alerts
from accountgraph.audit import public as audit
from accountgraph.billing import public as billing
from accountgraph.config import Settings
from accountgraph.costs import public as costs
from accountgraph.funds import public as funds
from accountgraph.metrics import JOB_LATENCY, JOBS
from accountgraph.runtime import Backends, redis_settings

log = logging.getLogger("accountgraph.job")

JOB_TIMEOUT_S = 300
MAX_TRIES = 25


async def run_outbox_row(ctx: dict[str, Any], *, row_id: int) -> bool:
    """One outbox row's work, exactly once in effect (outbox.run_row). Every line logged
    meanwhile carries the job id, the row id and its topic (and the trace id of the job's
    span when tracing is on), and one line says how it ended."""
    scope, token = logs.open_scope(job_id=ctx.get("job_id"), outbox_row_id=row_id)
    try:
        try:
            done = await outbox.run_row(ctx["engine"], row_id, ctx["job_context"])
        except Exception:
            _count(scope, "error")
            scope.outcome = "ERROR"
            log.warning("job failed", extra={"duration_ms": scope.duration_ms()})
            raise
        _count(scope, "done" if done else "already_done")
        scope.outcome = "OK" if done else "ALREADY_DONE"
        log.info("job done", extra={"duration_ms": scope.duration_ms()})
        return done
    finally:
        logs.close_scope(token)


def _count(scope: logs.Scope, outcome: str) -> None:
    """The job in the metrics, by its topic (one with a handler here, else ``other``)."""
    topic = scope.topic if outbox.registered(scope.topic) or scope.topic in SWEEPS else "other"
    JOBS.labels(topic, outcome).inc()
    JOB_LATENCY.labels(topic).observe(scope.duration_ms() / 1000)


async def sweep_alerts(ctx: dict[str, Any]) -> int:
    """A2: the periodic sweep that catches a missed quota event."""
    return await alerts.sweep(ctx["engine"])


async def purge_audit_log(ctx: dict[str, Any]) -> int:
    """Issue 15: audit rows older than ACCOUNTGRAPH_AUDIT_RETENTION_DAYS are deleted."""
    async with ctx["engine"].begin() as conn:
        days = ctx["job_context"].settings.audit_retention_days
        return await audit.purge(conn, retention_days=days)


async def sweep_budgets(ctx: dict[str, Any]) -> int:
    """C4: the periodic sweep of budgets (a missed charge event, a forecast that crossed
    as the period went by)."""
    return await costs.sweep_budgets(ctx["engine"])


async def retry_top_ups(ctx: dict[str, Any]) -> int:
    """W3: the sweep that retries auto top-up orders whose payment was refused."""
    return await billing.retry_top_ups(ctx["engine"])


async def purge_idempotency_keys(ctx: dict[str, Any]) -> int:
    """F10: keys are kept 48 h (at least the promised 24 h), then forgotten."""
    async with ctx["engine"].begin() as conn:
        return await funds.purge_idempotency_keys(conn)


FUNCTIONS = [
    func(run_outbox_row, name=outbox.JOB_FUNCTION, timeout=JOB_TIMEOUT_S, max_tries=MAX_TRIES),
]
Sweep = Callable[[dict[str, Any]], Awaitable[int]]
SWEEPS = frozenset(
    {"sweep_alerts", "sweep_budgets", "retry_top_ups", "purge_idempotency_keys", "purge_audit_log"}
)


def _observed(sweep: Sweep) -> WorkerCoroutine:
    """A periodic job with its log scope (job id, its name as the topic), its metrics and,
    tracing on, its span (a trace of its own)."""

    @functools.wraps(sweep)
    async def run(ctx: dict[Any, Any], *args: Any, **kwargs: Any) -> int:
        scope, token = logs.open_scope(job_id=ctx.get("job_id"), topic=sweep.__name__)
        try:
            traced = (
                tracing.span(f"job {sweep.__name__}", kind=SpanKind.CONSUMER)
                if tracing.enabled()
                else contextlib.nullcontext()
            )
            with traced:
                scope.trace_id = tracing.trace_id() or scope.trace_id
                try:
                    found = await sweep(ctx)
                except Exception:
                    _count(scope, "error")
                    scope.outcome = "ERROR"
                    log.warning("job failed", extra={"duration_ms": scope.duration_ms()})
                    raise
            _count(scope, "done")
            return found
        finally:
            logs.close_scope(token)

    return run


def build_worker(
    settings: Settings,
    engine: AsyncEngine,
    redis: ArqRedis,
    *,
    burst: bool = False,
    relay: bool = True,
) -> Worker:
    """An arq worker bound to our engine; with ``relay`` it also runs the outbox relay.
    With OTEL_EXPORTER_OTLP_ENDPOINT set its jobs and their statements are traced."""
    tracing.configure(settings, service="accountgraph-worker")
    tracing.instrument_engine(engine)
    relay_task: dict[str, asyncio.Task[None]] = {}

    async def startup(ctx: dict[str, Any]) -> None:
        ctx["engine"] = engine
        ctx["job_context"] = outbox.JobContext(settings=settings, redis=redis)
        if relay:
            relay_task["task"] = asyncio.create_task(
                outbox.relay_forever(
                    engine,
                    redis,
                    poll_s=settings.outbox_poll_s,
                    resend_after_s=settings.outbox_resend_after_s,
                )
            )

    async def shutdown(ctx: dict[str, Any]) -> None:
        task = relay_task.pop("task", None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    sweep_every = settings.alert_sweep_minutes
    return Worker(
        functions=FUNCTIONS,
        cron_jobs=[
            cron(
                _observed(sweep_alerts),
                minute=set(range(0, 60, sweep_every)),
                timeout=JOB_TIMEOUT_S,
            ),
            cron(
                _observed(sweep_budgets),
                minute=set(range(0, 60, sweep_every)),
                timeout=JOB_TIMEOUT_S,
            ),
            cron(
                _observed(retry_top_ups),
                minute=set(range(0, 60, sweep_every)),
                timeout=JOB_TIMEOUT_S,
            ),
            cron(_observed(purge_idempotency_keys), hour={3}, minute={17}, timeout=JOB_TIMEOUT_S),
            cron(_observed(purge_audit_log), hour={3}, minute={41}, timeout=JOB_TIMEOUT_S),
        ],
        queue_name=settings.queue_name,
        redis_pool=redis,
        burst=burst,
        # A job waits up to one poll for a worker: 50 ms keeps a committed charge's alert
        # (two jobs: evaluate, then publish) near 100 ms from the commit.
        poll_delay=0.05,
        handle_signals=False,
        on_startup=startup,
        on_shutdown=shutdown,
        max_jobs=50,
        keep_result=60,
        job_timeout=JOB_TIMEOUT_S,
    )


async def run_worker(found: Backends, *, relay: bool = True) -> None:
    """An arq worker (and the outbox relay) on ``found``'s engine and its own Redis pool,
    until cancelled: ``accountgraph worker``, and the in-process worker of
    ``accountgraph serve``.

    Cancelled (SIGTERM), it takes no more jobs and lets the running ones finish for up to
    ACCOUNTGRAPH_SHUTDOWN_GRACE_S (arq's ``job_completion_wait``); those still running
    then are cancelled, their transactions roll back and arq puts them back in the queue
    for the next worker. A second cancel (signal) cuts the wait short."""
    _serve_metrics(found.settings.worker_metrics_port)
    pool = await create_pool(
        redis_settings(found.redis_url), default_queue_name=found.settings.queue_name
    )
    worker = build_worker(found.settings, found.engine, pool, relay=relay)
    try:
        await worker.async_run()
    except asyncio.CancelledError:
        # Cancelling us cancelled arq's poll loop (no job is taken any more), not the jobs.
        running = [task for task in worker.tasks.values() if not task.done()]
        if running:
            grace = found.settings.shutdown_grace_s
            log.info("stopping: waiting up to %s s for %d running job(s)", grace, len(running))
            await asyncio.wait(running, timeout=grace)
        raise
    finally:
        with contextlib.suppress(Exception):
            await close_worker(worker)


async def close_worker(worker: Worker) -> None:
    """arq's ``Worker.close``, safe after a cancel. ``close`` cancels the running jobs and
    gathers them; one that ended cancelled (a cancel landing outside arq's own handler)
    makes it raise CancelledError before it stops the outbox relay and closes its Redis
    pool, which then ran on, unseen. Here the jobs are cancelled and awaited first (each
    has put its job back for the next worker), then ``close`` runs to its end."""
    for task in worker.tasks.values():
        if not task.done():
            task.cancel()
    await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
    worker.tasks.clear()
    await worker.close()


_METRICS_SERVED: set[int] = set()


def _serve_metrics(port: int | None) -> None:
    """ACCOUNTGRAPH_WORKER_METRICS_PORT: this process's metrics (jobs, deliveries) on
    http://0.0.0.0:<port>/metrics, once per process."""
    if port is None or port in _METRICS_SERVED:
        return
    start_http_server(port)
    _METRICS_SERVED.add(port)
    log.info("worker metrics on port %s", port)


__all__ = ["FUNCTIONS", "build_worker", "close_worker", "run_worker"]
