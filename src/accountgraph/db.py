"""Engine, connections and the transaction helper.

Services are plain async functions taking an ``AsyncConnection`` inside a transaction;
the read path opens short connections per batch, so concurrent loaders never share one.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Table, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlmodel import SQLModel

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# The project's one MetaData is SQLModel's own: every table model (``SQLModel, table=True``)
# lands in it, and Alembic and the tests read it as ``accountgraph.models.metadata``. The
# naming convention is applied when a constraint is attached to its table, so it is set
# here, before any model module (they all import this one) declares a table.
SQLModel.metadata.naming_convention = NAMING
metadata = SQLModel.metadata


def table_of(model: type[SQLModel]) -> Table:
    """The Core table of a table model: what the services' queries are written against."""
    table = model.__table__  # type: ignore[attr-defined]
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not a table model")
    return table


# A pooled connection idle for longer than this is pinged before use (PostgreSQL may have
# restarted meanwhile); one in steady use is not. SQLAlchemy's pool_pre_ping pings every
# checkout, and on asyncpg a ping is three round trips (BEGIN, an empty query, ROLLBACK):
# most of a small read.
PING_AFTER_IDLE_S = 2.0


def make_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    engine = create_async_engine(
        to_async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
    )
    event.listen(engine.sync_engine.pool, "checkin", _idle_from)
    event.listen(engine.sync_engine.pool, "checkout", _ping_if_idle)
    return engine


def _idle_from(dbapi_connection: Any, record: Any) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """A connection back from a long rest proves it is alive; a dead one is replaced (the
    pool retries the checkout with a fresh connection)."""
    since = record.info.get("idle_since")
    if since is None or time.monotonic() - since < PING_AFTER_IDLE_S:
        return
    try:
        dbapi_connection.ping()
    except Exception as error:
        raise DisconnectionError(f"a pooled connection was dead: {error}") from error


@asynccontextmanager
async def reading(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for reads: no transaction around them (no BEGIN and ROLLBACK round
    trips). At READ COMMITTED each statement sees its own snapshot either way."""
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn


def to_async_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs (as docker and the embedded server give them)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One transaction: commits on success, rolls back on any exception."""
    async with engine.begin() as conn:
        yield conn
