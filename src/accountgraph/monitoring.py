"""What the platform polls: /healthz (the process answers), /readyz (PostgreSQL and Redis
answer, each within ``READY_TIMEOUT_S``, and the outbox is moving: its oldest row due to
be sent has waited at most ``ACCOUNTGRAPH_READY_MAX_OUTBOX_AGE_S``) and /metrics
(Prometheus, with the queue depth, the outbox backlog and the DB pool read at scrape time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from arq.connections import ArqRedis
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from accountgraph.config import Settings
from accountgraph.metrics import (
    DB_POOL_IN_USE,
    DB_POOL_LIMIT,
    DB_POOL_WAITING,
    OUTBOX_OLDEST_UNSENT_AGE,
    OUTBOX_PENDING,
    OUTBOX_UNSENT,
    QUEUE_DEPTH,
)

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 2.0

# One statement, each part on its partial index (ix_outbox_unsent, ix_outbox_sent_not_done).
# A row waiting for its not_before (a retry's backoff) is not due yet: it counts in the
# backlog, not as unsent.
OUTBOX_STATE = text(
    """
    SELECT
      (SELECT count(*) FROM outbox
        WHERE sent_at IS NULL AND (not_before IS NULL OR not_before <= now())) AS unsent,
      (SELECT count(*) FROM outbox WHERE sent_at IS NULL) AS never_sent,
      (SELECT count(*) FROM outbox
        WHERE sent_at IS NOT NULL AND done_at IS NULL) AS sent_not_done,
      (SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(COALESCE(not_before, created_at))), 0)
         FROM outbox
        WHERE sent_at IS NULL AND (not_before IS NULL OR not_before <= now())) AS oldest_s
    """
)


@dataclass(frozen=True, slots=True)
class OutboxState:
    unsent: int
    pending: int
    oldest_unsent_age_s: float


async def outbox_state(engine: AsyncEngine) -> OutboxState:
    """The outbox's backlog now: rows due and unsent, rows not done, the oldest due row's
    wait in seconds (0 when none waits)."""
    async with engine.connect() as conn:
        row = (await conn.execute(OUTBOX_STATE)).one()
    return OutboxState(
        unsent=int(row.unsent),
        pending=int(row.never_sent) + int(row.sent_not_done),
        oldest_unsent_age_s=max(0.0, float(row.oldest_s)),
    )


def monitoring_routes(settings: Settings, engine: AsyncEngine, redis: ArqRedis) -> list[Route]:
    """/healthz, /readyz and /metrics for the gateway on ``engine`` and ``redis``."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        checks = await _checks(engine, redis)
        down = [name for name, ok in checks.items() if not ok]
        answer: dict[str, Any] = {}
        if "postgresql" not in down and settings.ready_max_outbox_age_s > 0:
            stuck = await _outbox_stuck(engine, settings.ready_max_outbox_age_s)
            if stuck is not None:
                down.append("outbox")
                answer["outbox"] = stuck
        if down:
            return JSONResponse({"status": "unavailable", "down": down, **answer}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def metrics(request: Request) -> Response:
        _pool_metrics(engine)
        with contextlib.suppress(Exception):  # a metric we cannot read stays at its last value
            QUEUE_DEPTH.set(await redis.zcard(settings.queue_name))
        with contextlib.suppress(Exception):
            state = await asyncio.wait_for(outbox_state(engine), READY_TIMEOUT_S)
            OUTBOX_PENDING.set(state.pending)
            OUTBOX_UNSENT.set(state.unsent)
            OUTBOX_OLDEST_UNSENT_AGE.set(state.oldest_unsent_age_s)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return [Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)]


async def _outbox_stuck(engine: AsyncEngine, max_age_s: float) -> dict[str, Any] | None:
    """Why the outbox makes this gateway unready (its oldest due row waits too long, or
    the backlog cannot be read), or None."""
    try:
        state = await asyncio.wait_for(outbox_state(engine), READY_TIMEOUT_S)
    except Exception as error:
        log.warning("readiness check outbox failed: %s", error)
        return {"reason": "the outbox backlog could not be read"}
    if state.oldest_unsent_age_s <= max_age_s:
        return None
    log.warning(
        "readiness: the oldest unsent outbox row has waited %.0f s (over %.0f s)",
        state.oldest_unsent_age_s,
        max_age_s,
    )
    return {
        "reason": "the oldest unsent outbox row is older than the maximum age",
        "oldest_unsent_age_s": round(state.oldest_unsent_age_s, 1),
        "max_age_s": max_age_s,
        "unsent": state.unsent,
    }


def _pool_metrics(engine: AsyncEngine) -> None:
    """The pool's connections in use, its limit and the tasks waiting for one (asyncio's
    queue of waiters; read, not changed)."""
    pool: Any = engine.sync_engine.pool
    with contextlib.suppress(Exception):
        DB_POOL_IN_USE.set(pool.checkedout())
        DB_POOL_LIMIT.set(pool.size() + max(0, getattr(pool, "_max_overflow", 0)))
        queue = getattr(pool, "_pool", None)
        waiters = vars(queue).get("_queue") if queue is not None else None  # made on first use
        DB_POOL_WAITING.set(len(getattr(waiters, "_getters", ()) or ()))


async def _checks(engine: AsyncEngine, redis: ArqRedis) -> dict[str, bool]:
    async def postgres() -> bool:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True

    async def redis_ping() -> bool:
        return bool(await redis.ping())

    results: dict[str, bool] = {}
    for name, check in (("postgresql", postgres), ("redis", redis_ping)):
        try:
            results[name] = await asyncio.wait_for(check(), READY_TIMEOUT_S)
        except Exception as error:  # any failure means: not ready
            log.warning("readiness check %s failed: %s", name, error)
            results[name] = False
    return results


__all__ = ["OUTBOX_STATE", "READY_TIMEOUT_S", "OutboxState", "monitoring_routes", "outbox_state"]
