"""The SQLModel models and the Alembic migrations describe one schema.

A fresh database is built with the project's migrations (never ``create_all``), and
Alembic's autogenerate compares it with ``accountgraph.models.metadata``: tables,
columns, types, nullability, server defaults, indexes, unique constraints and foreign
keys. Any difference is a model that no longer says what the database is (or a missing
migration), so the list of differences must be empty.

Autogenerate does not look at check constraints nor at the predicates of partial
indexes, so a second comparison asks PostgreSQL itself: a scratch database made by
``create_all`` from the models must have the same columns, defaults, constraints and
index definitions, as PostgreSQL prints them, as the migrated one. Triggers and
functions (migration 0002) are not part of the models and are not compared.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import CheckConstraint, Column, MetaData, Numeric, String, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from accountgraph.db import NAMING, make_engine
from accountgraph.migrations import upgrade_async
from accountgraph.models import metadata

# Alembic's PostgreSQL implementation compares server defaults on the server
# (``SELECT <reflected> = <model's>``), so ``now()`` and ``func.now()``, or ``'ACTIVE'`` and
# ``'ACTIVE'::character varying``, are equal without any textual normalisation.
OPTIONS = {"compare_type": True, "compare_server_default": True}

# What PostgreSQL says of every table of the public schema (alembic_version aside).
COLUMNS = text("""
    SELECT c.relname, row_number() OVER (PARTITION BY c.relname ORDER BY a.attnum),
           a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity::text,
           pg_get_expr(d.adbin, d.adrelid)
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname <> 'alembic_version'
      AND a.attnum > 0 AND NOT a.attisdropped""")
CONSTRAINTS = text("""
    SELECT c.relname, con.conname, con.contype::text, pg_get_constraintdef(con.oid)
    FROM pg_constraint con
    JOIN pg_class c ON c.oid = con.conrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relname <> 'alembic_version'
      AND con.contype <> 't'  -- constraint triggers are the migrations' own
""")
INDEXES = text("""
    SELECT tablename, indexname, indexdef FROM pg_indexes
    WHERE schemaname = 'public' AND tablename <> 'alembic_version'""")


@asynccontextmanager
async def scratch_database(server_url: str, prefix: str) -> AsyncIterator[tuple[str, AsyncEngine]]:
    """A database of its own on the suite's server, dropped afterwards.

    Not the suite's shared database: other tests add tables of their own to that one
    (``outbox_test_effects``), which would show up here as differences.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = make_engine(server_url, pool_size=1)
    async with admin.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url, pool_size=1)
    try:
        yield url, engine
    finally:
        await engine.dispose()
        async with admin.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture(scope="module")
async def migrated(server_url: str) -> AsyncIterator[AsyncEngine]:
    """A fresh database built by the project's Alembic migrations only."""
    async with scratch_database(server_url, "accountgraph_migrated") as (url, engine):
        await upgrade_async(url)
        yield engine


@pytest.fixture(scope="module")
async def created(server_url: str) -> AsyncIterator[AsyncEngine]:
    """A fresh database built from the models (what they say, for PostgreSQL to print)."""
    async with scratch_database(server_url, "accountgraph_models") as (_, engine):
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        yield engine


async def differences(engine: AsyncEngine, target: MetaData) -> list[Any]:
    def compare(sync_conn: Connection) -> list[Any]:
        context = MigrationContext.configure(sync_conn, opts=OPTIONS)
        return list(compare_metadata(context, target))

    async with engine.connect() as conn:
        return await conn.run_sync(compare)


async def catalog(engine: AsyncEngine) -> dict[str, set[tuple[Any, ...]]]:
    async with engine.connect() as conn:
        return {
            name: {tuple(row) for row in await conn.execute(query)}
            for name, query in (
                ("column", COLUMNS),
                ("constraint", CONSTRAINTS),
                ("index", INDEXES),
            )
        }


def copy_of_metadata() -> MetaData:
    """The models' tables in a MetaData of their own, to change without touching them."""
    copy = MetaData(naming_convention=NAMING)
    for table in metadata.sorted_tables:
        table.to_metadata(copy)
    return copy


def render(diffs: list[Any]) -> str:
    return "\n".join(f"  {diff!r}" for diff in diffs)


async def test_models_equal_the_migrated_database(migrated: AsyncEngine) -> None:
    """A difference: change the model or add a migration (`alembic revision --autogenerate`)."""
    diffs = await differences(migrated, metadata)
    assert diffs == [], "models and migrations differ:\n" + render(diffs)


async def test_postgres_prints_the_same_schema_for_models_and_migrations(
    migrated: AsyncEngine, created: AsyncEngine
) -> None:
    """Check constraints, partial and functional indexes, column order, identities."""
    from_migrations, from_models = await catalog(migrated), await catalog(created)
    diffs = [
        f"{kind} {side}: {row}"
        for kind in from_migrations
        for side, rows in (
            ("only in the migrations", from_migrations[kind] - from_models[kind]),
            ("only in the models", from_models[kind] - from_migrations[kind]),
        )
        for row in sorted(rows, key=repr)
    ]
    assert diffs == [], "models and migrations differ:\n" + "\n".join(diffs)
    assert len(from_models["column"]) > 200  # it did read the tables


async def test_the_comparison_reports_a_difference(migrated: AsyncEngine) -> None:
    """The check can fail: an extra column and a changed type in a copy of the metadata."""
    changed = copy_of_metadata()
    changed.tables["accounts"].append_column(Column("nickname", String(50)))
    amount = changed.tables["charges"].c.amount
    amount.type = Numeric(12, 4)

    diffs = await differences(migrated, changed)

    added = [d for d in diffs if isinstance(d, tuple) and d[0] == "add_column"]
    assert [(d[2], d[3].name) for d in added] == [("accounts", "nickname")], render(diffs)
    modified = [d[0] for d in diffs if isinstance(d, list)]
    assert [(m[0], m[2], m[3]) for m in modified] == [("modify_type", "charges", "amount")], render(
        diffs
    )
    assert len(diffs) == 2, render(diffs)


async def test_the_catalog_comparison_reports_a_difference(
    server_url: str, migrated: AsyncEngine
) -> None:
    """... and so can the second one: a check constraint autogenerate would not see."""
    changed = copy_of_metadata()
    changed.tables["charges"].append_constraint(CheckConstraint("amount < 1000", name="cap"))
    assert await differences(migrated, changed) == []  # autogenerate is blind to it

    async with scratch_database(server_url, "accountgraph_changed") as (_, engine):
        async with engine.begin() as conn:
            await conn.run_sync(changed.create_all)
        from_migrations, from_changed = await catalog(migrated), await catalog(engine)

    extra = from_changed["constraint"] - from_migrations["constraint"]
    assert extra == {("charges", "ck_charges_cap", "c", "CHECK ((amount < (1000)::numeric))")}
    assert from_migrations["constraint"] - from_changed["constraint"] == set()
