"""A5/S11 machinery: the outbox, its relay, the sweep and the arq worker.

A job defined here stands in for the later areas' jobs: it inserts one row into a table
of its own per run, so the tests can count effects.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from arq import create_pool
from arq.connections import ArqRedis
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from accountgraph import embedded, outbox
from accountgraph.config import Settings
from accountgraph.runtime import redis_settings
from tests.conftest import free_port
from workers.settings import build_worker, close_worker

TOPIC = "test.effect"
FAILURES: dict[str, int] = {}


@outbox.handler(TOPIC)
async def _effect(
    conn: AsyncConnection, payload: dict[str, Any], context: outbox.JobContext
) -> None:
    """Records one effect; fails the first ``fail`` times it is run for a key (a crash)."""
    await conn.execute(
        text("INSERT INTO outbox_test_effects (key) VALUES (:key)"), {"key": payload["key"]}
    )
    if FAILURES.get(payload["key"], 0) > 0:
        FAILURES[payload["key"]] -= 1
        raise RuntimeError("worker died mid-job")


@pytest.fixture
async def effects(engine: AsyncEngine, clean: None) -> AsyncIterator[None]:
    async with engine.begin() as conn:
        await conn.execute(
            text("CREATE TABLE IF NOT EXISTS outbox_test_effects (id serial PRIMARY KEY, key text)")
        )
        await conn.execute(text("TRUNCATE outbox_test_effects"))
    yield
    FAILURES.clear()


async def effect_count(engine: AsyncEngine, key: str) -> int:
    async with engine.connect() as conn:
        count: int = (
            await conn.execute(
                text("SELECT count(*) FROM outbox_test_effects WHERE key = :key"), {"key": key}
            )
        ).scalar_one()
        return count


async def add_row(engine: AsyncEngine, key: str) -> int:
    async with engine.begin() as conn:
        return await outbox.add(conn, TOPIC, {"key": key})


async def row_state(engine: AsyncEngine, row_id: int) -> Any:
    async with engine.connect() as conn:
        return (
            await conn.execute(
                select(
                    outbox.outbox.c.sent_at, outbox.outbox.c.done_at, outbox.outbox.c.send_count
                ).where(outbox.outbox.c.id == row_id)
            )
        ).one()


async def drain(settings: Settings, engine: AsyncEngine, redis: ArqRedis) -> None:
    """Run a real arq worker in burst mode until the queue is empty."""
    worker = build_worker(settings, engine, redis, burst=True, relay=False)
    await worker.main()


async def test_a5_rolled_back_transaction_enqueues_nothing(
    engine: AsyncEngine, redis: ArqRedis, settings: Settings, effects: None
) -> None:
    with pytest.raises(RuntimeError):
        async with engine.begin() as conn:
            await outbox.add(conn, TOPIC, {"key": "rolled-back"})
            raise RuntimeError("the mutation failed after writing its outbox row")

    assert await outbox.relay_once(engine, redis, resend_after_s=60) == 0
    assert await redis.zcard(settings.queue_name) == 0
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM outbox"))).scalar_one() == 0


async def test_a5_committed_row_runs_once_through_a_real_worker(
    engine: AsyncEngine, redis: ArqRedis, settings: Settings, effects: None
) -> None:
    row_id = await add_row(engine, "committed")

    assert await outbox.relay_once(engine, redis, resend_after_s=60) == 1
    await drain(settings, engine, redis)

    assert await effect_count(engine, "committed") == 1
    state = await row_state(engine, row_id)
    assert state.sent_at is not None and state.done_at is not None and state.send_count == 1


async def test_a5_job_run_twice_has_one_effect(
    engine: AsyncEngine, redis: ArqRedis, settings: Settings, effects: None
) -> None:
    row_id = await add_row(engine, "twice")
    await outbox.relay_once(engine, redis, resend_after_s=60)
    await drain(settings, engine, redis)

    # arq may run a job again (a worker killed after the work, before the ack).
    assert await outbox.run_row(engine, row_id) is False
    assert await effect_count(engine, "twice") == 1


async def test_a5_job_that_crashed_mid_way_leaves_no_trace_and_reruns(
    engine: AsyncEngine, effects: None
) -> None:
    row_id = await add_row(engine, "crash")
    FAILURES["crash"] = 1

    with pytest.raises(RuntimeError):
        await outbox.run_row(engine, row_id)
    assert await effect_count(engine, "crash") == 0  # the half-done work rolled back
    assert (await row_state(engine, row_id)).done_at is None

    assert await outbox.run_row(engine, row_id) is True
    assert await effect_count(engine, "crash") == 1


async def test_a5_sweep_resends_a_row_redis_lost_without_doubling(
    engine: AsyncEngine, redis: ArqRedis, settings: Settings, effects: None
) -> None:
    row_id = await add_row(engine, "lost")
    await outbox.relay_once(engine, redis, resend_after_s=60)
    # The job is still in Redis: a sweep now must not make a second job of it.
    assert await outbox.relay_once(engine, redis, resend_after_s=0) == 1
    assert await redis.zcard(settings.queue_name) == 1

    await redis.flushdb()  # Redis restarted without persistence: the job is gone
    assert await outbox.relay_once(engine, redis, resend_after_s=0) == 1
    await drain(settings, engine, redis)

    assert await effect_count(engine, "lost") == 1
    assert (await row_state(engine, row_id)).done_at is not None
    assert await outbox.relay_once(engine, redis, resend_after_s=0) == 0


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[tuple[Any, str, int]]:
    """A Redis of this test's own, on a fixed port, which the test stops and restarts."""
    port = free_port()
    server = embedded.start_redis(tmp_path / "redis", port=port)
    holder = {"server": server}
    yield holder, server.url, port
    with contextlib.suppress(Exception):
        holder["server"].stop()


async def test_a5_row_committed_while_redis_is_down_runs_once_it_is_back(
    engine: AsyncEngine, settings: Settings, effects: None, own_redis: Any, tmp_path: Path
) -> None:
    holder, url, port = own_redis
    pool = await create_pool(redis_settings(url), default_queue_name=settings.queue_name)
    pool.connection_pool.connection_kwargs["socket_connect_timeout"] = 0.5
    try:
        holder["server"].stop()
        row_id = await add_row(engine, "redis-down")  # the commit does not need Redis

        with pytest.raises(Exception):  # noqa: B017 - whatever redis-py raises for "down"
            await outbox.relay_once(engine, pool, resend_after_s=60)
        assert (await row_state(engine, row_id)).sent_at is None  # waits, not lost

        # A fresh directory: the stopped server may not be reaped yet at the old socket.
        holder["server"] = embedded.start_redis(tmp_path / "redis-again", port=port)
        assert await outbox.relay_once(engine, pool, resend_after_s=60) == 1
        await drain(settings, engine, pool)
        assert await effect_count(engine, "redis-down") == 1
    finally:
        await pool.aclose()


async def test_a5_relay_and_worker_running_in_background_pick_up_a_commit(
    engine: AsyncEngine, redis: ArqRedis, settings: Settings, effects: None
) -> None:
    """The deployed shape: a worker process with its relay, woken by NOTIFY at commit."""
    pool = await create_pool(
        redis_settings(settings.redis_url or ""), default_queue_name=settings.queue_name
    )
    worker = build_worker(settings, engine, pool)
    task = asyncio.create_task(worker.async_run())
    try:
        await asyncio.sleep(0.3)
        await add_row(engine, "background")
        for _ in range(100):
            if await effect_count(engine, "background") == 1:
                break
            await asyncio.sleep(0.05)
        assert await effect_count(engine, "background") == 1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await close_worker(worker)


async def test_a5_a_stopped_worker_closes_fully_though_a_job_ended_cancelled(
    engine: AsyncEngine, settings: Settings
) -> None:
    """arq's ``close`` gives up with CancelledError when a job task ended cancelled, before
    it stops the relay and closes the pool (a relay left running took one CI run's later
    jobs); ``close_worker`` always gets to the end."""

    async def started() -> tuple[Any, asyncio.Task[None]]:
        pool = await create_pool(
            redis_settings(settings.redis_url or ""), default_queue_name=settings.queue_name
        )
        worker = build_worker(settings, engine, pool)
        task = asyncio.create_task(worker.async_run())
        await asyncio.sleep(0.3)  # started: its relay runs
        job = asyncio.create_task(asyncio.sleep(60))
        worker.tasks["cancelled-job"] = job  # a job whose task ends cancelled
        job.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return worker, job

    worker, _ = await started()
    with pytest.raises(asyncio.CancelledError):
        await worker.close()  # arq alone: the relay and the pool are left behind
    assert worker._pool is not None
    await close_worker(worker)

    worker, _ = await started()
    await close_worker(worker)
    assert worker._pool is None  # closed to the end: relay stopped, pool closed
