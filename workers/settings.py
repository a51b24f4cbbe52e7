"""The arq worker: runs outbox rows as jobs and the outbox relay beside them.

``accountgraph worker`` runs it as its own process (M replicas); the embedded default runs
the same worker inside the gateway process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from arq.connections import ArqRedis, RedisSettings
from arq.cron import cron
from arq.worker import Worker, func
from sqlalchemy.ext.asyncio import AsyncEngine

from accountgraph import (
    jobs,  # noqa: F401  (registers every area's outbox handlers)
    outbox,
)
from accountgraph.config import Settings
from accountgraph.metrics import JOBS

log = logging.getLogger(__name__)

JOB_TIMEOUT_S = 300
MAX_TRIES = 25


async def run_outbox_row(ctx: dict[str, Any], *, row_id: int) -> bool:
    """One outbox row's work, exactly once in effect (outbox.run_row)."""
    try:
        done = await outbox.run_row(ctx["engine"], row_id, ctx["job_context"])
    except Exception:
        JOBS.labels(outbox.JOB_FUNCTION, "error").inc()
        raise
    JOBS.labels(outbox.JOB_FUNCTION, "done" if done else "already_done").inc()
    return done


async def sweep_alerts(ctx: dict[str, Any]) -> int:
    """A2: the periodic sweep that catches a missed quota event."""
    from accountgraph.alerts.service import sweep

    return await sweep(ctx["engine"])


async def purge_idempotency_keys(ctx: dict[str, Any]) -> int:
    """F10: keys are kept 48 h (at least the promised 24 h), then forgotten."""
    from accountgraph.funds.idempotency import purge

    async with ctx["engine"].begin() as conn:
        return await purge(conn)


FUNCTIONS = [
    func(run_outbox_row, name=outbox.JOB_FUNCTION, timeout=JOB_TIMEOUT_S, max_tries=MAX_TRIES),
]


def redis_settings(url: str) -> RedisSettings:
    settings = RedisSettings.from_dsn(url)
    settings.conn_retries = 30
    settings.conn_retry_delay = 1
    return settings


def build_worker(
    settings: Settings, engine: AsyncEngine, redis: ArqRedis, *, burst: bool = False,
    relay: bool = True,
) -> Worker:
    """An arq worker bound to our engine; with ``relay`` it also runs the outbox relay."""
    relay_task: dict[str, asyncio.Task[None]] = {}

    async def startup(ctx: dict[str, Any]) -> None:
        ctx["engine"] = engine
        ctx["job_context"] = outbox.JobContext(settings=settings, redis=redis)
        if relay:
            relay_task["task"] = asyncio.create_task(outbox.relay_forever(
                engine, redis, poll_s=settings.outbox_poll_s,
                resend_after_s=settings.outbox_resend_after_s,
            ))

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
            cron(purge_idempotency_keys, hour={3}, minute={17}, timeout=JOB_TIMEOUT_S),
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
