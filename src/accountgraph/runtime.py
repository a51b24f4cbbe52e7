"""The process runtime: where PostgreSQL and Redis come from (the configured URLs, or
embedded servers). The arq worker that uses them is ``workers/settings.py``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from sqlalchemy.ext.asyncio import AsyncEngine

from accountgraph import (
    embedded,
    jobs,  # noqa: F401  (registers every area's outbox handlers and ports)
)
from accountgraph.config import Settings
from accountgraph.db import make_engine
from accountgraph.migrations import upgrade_async

log = logging.getLogger(__name__)


@dataclass
class Backends:
    """The servers found or started, with the gateway's connections to them."""

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
        pool = (
            await create_pool(redis_settings(redis_url), default_queue_name=settings.queue_name)
            if redis
            else None
        )
        try:
            yield Backends(settings, database_url, redis_url, engine, pool)
        finally:
            if pool is not None:
                await pool.aclose()
            await engine.dispose()
    finally:
        for server in reversed(started):
            await asyncio.to_thread(server.stop)


def redis_settings(url: str) -> RedisSettings:
    """arq's connection settings for ``url``, retrying for about 30 s while Redis starts."""
    settings = RedisSettings.from_dsn(url)
    settings.conn_retries = 30
    settings.conn_retry_delay = 1
    return settings


__all__ = ["Backends", "backends", "redis_settings"]
