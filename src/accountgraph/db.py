"""Engine, connections and the transaction helper.

Services are plain async functions taking an ``AsyncConnection`` inside a transaction;
the read path opens short connections per batch, so concurrent loaders never share one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import Table
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


def make_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        to_async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
    )


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
