"""``uvicorn --factory accountgraph.asgi:app`` (and ``uvicorn.run(..., workers=N)``): the
gateway with Settings from the environment. DATABASE_URL and REDIS_URL are required (each
worker process connects to the same servers; nothing embedded, no migrations, no
in-process worker: run ``accountgraph migrate`` and ``accountgraph worker`` beside it)."""

from __future__ import annotations

from arq.connections import ArqRedis
from redis.asyncio import ConnectionPool
from starlette.applications import Starlette

from accountgraph.app import create_app
from accountgraph.config import Settings
from accountgraph.db import make_engine


def app() -> Starlette:
    settings = Settings()
    if settings.database_url is None or settings.redis_url is None:
        raise RuntimeError("accountgraph.asgi:app needs DATABASE_URL and REDIS_URL")
    engine = make_engine(settings.database_url, pool_size=settings.db_pool_size)
    redis = ArqRedis(
        ConnectionPool.from_url(settings.redis_url), default_queue_name=settings.queue_name
    )
    return create_app(settings, engine, redis)
