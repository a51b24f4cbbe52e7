"""Real servers for the tests: embedded PostgreSQL and Redis (or TEST_DATABASE_URL /
TEST_REDIS_URL), a fresh migrated database per run, and the app served by a real uvicorn
on a loopback port, so every test goes through real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from arq import create_pool
from arq.connections import ArqRedis
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from accountgraph import embedded
from accountgraph.app import create_app
from accountgraph.config import Settings
from accountgraph.db import make_engine, to_async_url
from accountgraph.migrations import upgrade_async
from accountgraph.models import metadata
from accountgraph.runtime import redis_settings
from tests.helpers import OPERATOR_TOKEN, Api
from workers.settings import build_worker


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="session")
def server_url(state_dir: Path) -> Iterator[str]:
    """A PostgreSQL server: TEST_DATABASE_URL's, or an embedded one for this run."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield to_async_url(url)
        return
    postgres = embedded.start_postgres(state_dir)
    yield postgres.url
    postgres.stop()


@pytest.fixture(scope="session")
def redis_url(state_dir: Path) -> Iterator[str]:
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        yield url
        return
    server = embedded.start_redis(state_dir / "redis", port=free_port())
    yield server.url
    server.stop()


@contextlib.asynccontextmanager
async def new_database(server_url: str, prefix: str, *, migrate: bool) -> AsyncIterator[str]:
    """A database of its own on ``server_url`` (migrated with Alembic, never create_all,
    or left empty), dropped afterwards; its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = make_engine(server_url, pool_size=1)
    try:
        async with admin.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
        try:
            if migrate:
                await upgrade_async(url)
            yield url
        finally:
            async with admin.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


@pytest.fixture(scope="session")
async def database_url(server_url: str) -> AsyncIterator[str]:
    """A fresh database for this run, migrated."""
    async with new_database(server_url, "accountgraph_test", migrate=True) as url:
        yield url


class Mailbox:
    """A real SMTP server (aiosmtpd) on a loopback port, keeping what it receives."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.port = free_port()
        self.refuse = False  # answer every message with a temporary failure

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse:
            return "451 try again later"
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture(scope="session")
def mailbox() -> Iterator[Mailbox]:
    from aiosmtpd.controller import Controller

    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    yield box
    controller.stop()


@pytest.fixture(scope="session")
def settings(database_url: str, redis_url: str, mailbox: Mailbox) -> Settings:
    return Settings(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        ACCOUNTGRAPH_OPERATOR_TOKEN=OPERATOR_TOKEN,
        ACCOUNTGRAPH_QUEUE=f"accountgraph:test:{uuid.uuid4().hex[:8]}",
        ACCOUNTGRAPH_OUTBOX_POLL_S=0.2,
        ACCOUNTGRAPH_SMTP_HOST="127.0.0.1",
        ACCOUNTGRAPH_SMTP_PORT=mailbox.port,
        ACCOUNTGRAPH_WEBHOOK_SECRET="test-webhook-secret",
        ACCOUNTGRAPH_WEBHOOK_ALLOW_HTTP=True,  # the receivers are local HTTP servers
        ACCOUNTGRAPH_WEBHOOK_ALLOW_PRIVATE=True,
        ACCOUNTGRAPH_DELIVERY_ATTEMPTS=3,
        ACCOUNTGRAPH_DELIVERY_BACKOFF_S=0.01,
    )


class StatementCounter:
    """Counts SQL statements the engine sends (for the N+1 tests)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, *args: Any) -> None:
        self.count += 1


STATEMENTS = StatementCounter()


@pytest.fixture
def statements(engine: AsyncEngine) -> StatementCounter:
    """SQL statements sent by the app's engine (the tests share it with the app)."""
    return STATEMENTS


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    assert settings.database_url is not None
    engine = make_engine(settings.database_url, pool_size=5)
    event.listen(engine.sync_engine, "before_cursor_execute", STATEMENTS)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
async def redis(settings: Settings) -> AsyncIterator[ArqRedis]:
    assert settings.redis_url is not None
    pool = await create_pool(
        redis_settings(settings.redis_url), default_queue_name=settings.queue_name
    )
    yield pool
    await pool.aclose()


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app on a real uvicorn in this event loop; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
            proxy_headers=False,
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture(scope="session")
async def base_url(settings: Settings, engine: AsyncEngine, redis: ArqRedis) -> AsyncIterator[str]:
    """The app on a real uvicorn server in this event loop."""
    async with serving(create_app(settings, engine, redis)) as url:
        yield url


@pytest.fixture
async def clean(engine: AsyncEngine, redis: ArqRedis, settings: Settings) -> None:
    """Every test starts from an empty graph (settings row back to its default)."""
    tables = ", ".join(
        table.name for table in metadata.sorted_tables if table.name != "platform_settings"
    )
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        await conn.execute(text("UPDATE platform_settings SET billing_hierarchy_enabled = true"))
    await redis.flushdb()  # queued jobs and kept results (job ids restart with the ids)


@pytest.fixture
async def api(base_url: str, clean: None, engine: AsyncEngine) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        yield Api(client, engine)


@pytest.fixture
def run_jobs(engine: AsyncEngine, redis: ArqRedis, settings: Settings) -> Any:
    """Relay every committed outbox row and run the jobs with a real arq worker (burst)."""
    from accountgraph import outbox

    async def run() -> None:
        """Until quiet: jobs may write outbox rows of their own (deliveries, retries)."""
        for _ in range(50):
            relayed = 0
            while sent := await outbox.relay_once(engine, redis, resend_after_s=60):
                relayed += sent
            if not relayed:
                async with engine.connect() as conn:
                    waiting = (
                        await conn.execute(
                            text(
                                "SELECT count(*) FROM outbox WHERE done_at IS NULL "
                                "AND not_before > now()"
                            )
                        )
                    ).scalar_one()
                if not waiting:
                    return
                await asyncio.sleep(0.05)  # a retry waits for its backoff
                continue
            await build_worker(settings, engine, redis, burst=True, relay=False).main()
        raise AssertionError("jobs kept making jobs for 50 rounds")

    return run
