"""The arq worker: outbox rows as jobs, the outbox relay beside them, the periodic sweeps.

Each job is a thin call into the library. ``accountgraph worker`` runs this worker as its
own process (M replicas); the embedded default (``accountgraph serve``) runs the same
worker inside the gateway process. The command line (the composition root) is the only
module of the library that imports this package.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis
from arq.cron import cron
from arq.worker import Worker, func
from sqlalchemy.ext.asyncio import AsyncEngine

from accountgraph import logs, outbox
from accountgraph.alerts import public as alerts
from accountgraph.audit import public as audit
from accountgraph.billing import public as billing
from accountgraph.config import Settings
from accountgraph.costs import public as costs
from accountgraph.funds import public as funds
from accountgraph.metrics import JOBS
from accountgraph.runtime import Backends, redis_settings

log = logging.getLogger("accountgraph.job")

JOB_TIMEOUT_S = 300
MAX_TRIES = 25


async def run_outbox_row(ctx: dict[str, Any], *, row_id: int) -> bool:
    """One outbox row's work, exactly once in effect (outbox.run_row). Every line logged
    meanwhile carries the job id and the row id, and one line says how it ended."""
    scope, token = logs.open_scope(job_id=ctx.get("job_id"), outbox_row_id=row_id)
    try:
        try:
            done = await outbox.run_row(ctx["engine"], row_id, ctx["job_context"])
        except Exception:
            JOBS.labels(outbox.JOB_FUNCTION, "error").inc()
            scope.outcome = "ERROR"
            log.warning("job failed", extra={"duration_ms": scope.duration_ms()})
            raise
        JOBS.labels(outbox.JOB_FUNCTION, "done" if done else "already_done").inc()
        scope.outcome = "OK" if done else "ALREADY_DONE"
        log.info("job done", extra={"duration_ms": scope.duration_ms()})
        return done
    finally:
        logs.close_scope(token)


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


def build_worker(
    settings: Settings,
    engine: AsyncEngine,
    redis: ArqRedis,
    *,
    burst: bool = False,
    relay: bool = True,
) -> Worker:
    """An arq worker bound to our engine; with ``relay`` it also runs the outbox relay."""
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
            cron(sweep_alerts, minute=set(range(0, 60, sweep_every)), timeout=JOB_TIMEOUT_S),
            cron(sweep_budgets, minute=set(range(0, 60, sweep_every)), timeout=JOB_TIMEOUT_S),
            cron(retry_top_ups, minute=set(range(0, 60, sweep_every)), timeout=JOB_TIMEOUT_S),
            cron(purge_idempotency_keys, hour={3}, minute={17}, timeout=JOB_TIMEOUT_S),
            cron(purge_audit_log, hour={3}, minute={41}, timeout=JOB_TIMEOUT_S),
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
    ``accountgraph serve``."""
    pool = await create_pool(
        redis_settings(found.redis_url), default_queue_name=found.settings.queue_name
    )
    worker = build_worker(found.settings, found.engine, pool, relay=relay)
    try:
        await worker.async_run()
    finally:
        with contextlib.suppress(Exception):
            await worker.close()


__all__ = ["FUNCTIONS", "build_worker", "run_worker"]
