"""Where PostgreSQL and Redis come from: the configured URLs, or embedded servers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from arq import create_pool
from arq.connections import ArqRedis
from arq.worker import Worker
from sqlalchemy.ext.asyncio import AsyncEngine

from accountgraph import embedded
from accountgraph.config import Settings
from accountgraph.db import make_engine
from accountgraph.migrations import upgrade_async

log = logging.getLogger(__name__)


@dataclass
class Backends:
    settings: Settings
    database_url: str
    redis_url: str
    engine: AsyncEngine
    redis: ArqRedis | None


@contextlib.asynccontextmanager
async def backends(
    settings: Settings, *, migrate: bool, redis: bool = True
) -> AsyncIterator[Backends]:
    """Start what is not configured (embedded), migrate if asked, and clean up on exit.
    With ``redis=False`` (migrate, verify-ledger) no Redis is started or connected."""
    started: list[embedded.EmbeddedPostgres | embedded.EmbeddedRedis] = []
    try:
        database_url = settings.database_url
        if database_url is None:
            postgres = await asyncio.to_thread(embedded.start_postgres, settings.state_dir)
            started.append(postgres)
            database_url = postgres.url
        redis_url = settings.redis_url or ""
        if redis and settings.redis_url is None:
            redis_server = await asyncio.to_thread(embedded.start_redis, settings.state_dir)
            started.append(redis_server)
            redis_url = redis_server.url
        if migrate:
            await upgrade_async(database_url)
        engine = make_engine(database_url, pool_size=settings.db_pool_size)
        from workers.settings import redis_settings

        pool = (await create_pool(redis_settings(redis_url),
                                  default_queue_name=settings.queue_name) if redis else None)
        try:
            yield Backends(settings, database_url, redis_url, engine, pool)
        finally:
            if pool is not None:
                await pool.aclose()
            await engine.dispose()
    finally:
        for server in reversed(started):
            await asyncio.to_thread(server.stop)


async def run_worker(found: Backends, *, relay: bool = True) -> None:
    """An arq worker (and the outbox relay) on its own Redis pool, until cancelled."""
    from workers.settings import build_worker, redis_settings

    pool = await create_pool(redis_settings(found.redis_url),
                             default_queue_name=found.settings.queue_name)
    worker: Worker = build_worker(found.settings, found.engine, pool, relay=relay)
    try:
        await worker.async_run()
    finally:
        with contextlib.suppress(Exception):
            await worker.close()
