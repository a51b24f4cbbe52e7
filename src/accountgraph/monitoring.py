"""What the platform polls: /healthz (the process answers), /readyz (PostgreSQL and Redis
answer, each within ``READY_TIMEOUT_S``) and /metrics (Prometheus, with the queue depth
and the pending outbox rows read at scrape time)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from arq.connections import ArqRedis
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from accountgraph.config import Settings
from accountgraph.metrics import OUTBOX_PENDING, QUEUE_DEPTH
from accountgraph.outbox import outbox

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 2.0


def monitoring_routes(settings: Settings, engine: AsyncEngine, redis: ArqRedis) -> list[Route]:
    """/healthz, /readyz and /metrics for the gateway on ``engine`` and ``redis``."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        down = [name for name, ok in (await _checks(engine, redis)).items() if not ok]
        if down:
            return JSONResponse({"status": "unavailable", "down": down}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def metrics(request: Request) -> Response:
        with contextlib.suppress(Exception):  # a metric we cannot read stays at its last value
            QUEUE_DEPTH.set(await redis.zcard(settings.queue_name))
        with contextlib.suppress(Exception):
            async with engine.connect() as conn:
                OUTBOX_PENDING.set(
                    (
                        await conn.execute(select(func.count()).where(outbox.c.done_at.is_(None)))
                    ).scalar_one()
                )
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return [Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)]


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


__all__ = ["READY_TIMEOUT_S", "monitoring_routes"]
