"""Alembic environment: async engine over asyncpg, the project's one MetaData.

That MetaData is SQLModel's (``accountgraph.db``): every table model is imported by
``accountgraph.models``.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from accountgraph.db import to_async_url
from accountgraph.models import metadata

config = context.config
target_metadata = metadata


def _run(connection: Connection) -> None:
    # Types and server defaults are compared too, so `alembic check` (and autogenerate)
    # see a changed NUMERIC scale or default; tests/test_models_match_migrations.py runs
    # the same comparison on a fresh database.
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=True,
    )
    with context.begin_transaction():
        # Several processes may start at once (N gateways): one migrates, the others wait.
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(727274)")
        context.run_migrations()


async def _run_async() -> None:
    url = to_async_url(config.get_main_option("sqlalchemy.url") or "")
    engine = create_async_engine(url, poolclass=pool.NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
